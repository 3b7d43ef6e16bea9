package proxy

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the request path's Prometheus series. Per-backend gauges are
// not here, nor the retry counts: the admin collector reads them from the
// pool and the RetryBudget at scrape time, so the request path pays nothing
// for them.
type Metrics struct {
	Requests  *prometheus.CounterVec
	Duration  prometheus.Histogram
	QueueWait prometheus.Histogram
	Rejected  *prometheus.CounterVec
	// Conns counts the long-lived connections open through this balancer
	// (upgrades, event streams, bodies open past STREAM_AFTER): they hold
	// no request slot, so the in-flight gauges do not show them.
	Conns prometheus.Gauge
}

// NewMetrics registers the series with reg (nil: a private registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lbscale_balancer_requests_total", Help: "Requests answered, by status code.",
		}, []string{"code"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lbscale_balancer_request_duration_seconds", Help: "Time from arrival to the end of the response, queueing included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		QueueWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "lbscale_balancer_queue_wait_seconds", Help: "Time requests spent queued because every backend was at MAX_INFLIGHT.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		Rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lbscale_balancer_rejected_total", Help: "Requests not placed on a backend, by reason (queue_full, queue_timeout, client_gone).",
		}, []string{"reason"}),
		Conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lbscale_balancer_connections_open", Help: "Long-lived connections open through this balancer (upgrades, event streams, bodies open past STREAM_AFTER); they hold no request slot and count against MAX_CONNECTIONS.",
		}),
	}
	reg.MustRegister(m.Collectors()...)
	return m
}

// codeLabels holds every status code's label, made once: strconv.Itoa
// allocates for numbers past 99, which is every status code.
var codeLabels = func() (l [600]string) {
	for i := range l {
		l[i] = strconv.Itoa(i)
	}
	return l
}()

func codeLabel(code int) string {
	if code >= 0 && code < len(codeLabels) {
		return codeLabels[code]
	}
	return strconv.Itoa(code)
}

func (m *Metrics) observe(code int, d time.Duration) {
	m.Requests.WithLabelValues(codeLabel(code)).Inc()
	if d > 0 {
		m.Duration.Observe(d.Seconds())
	}
}

// Unregister takes the series out of reg again, when their pool is removed
// by a reload (reg is the Registerer NewMetrics was given).
func (m *Metrics) Unregister(reg prometheus.Registerer) {
	for _, c := range m.Collectors() {
		reg.Unregister(c)
	}
}

// Collectors are the series, for a caller that registers them itself.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Requests, m.Duration, m.QueueWait, m.Rejected, m.Conns}
}
