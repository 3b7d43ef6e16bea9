package control

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"lbscale/internal/state"
	"lbscale/scaler/decide"
)

// processMetrics holds the Go runtime's and the process's collectors,
// once per process: a scaler of several pools has one Controller per pool,
// each with its own registry, and a scrape of them all together must not
// see go_goroutines twice.
var processMetrics = sync.OnceValue(func() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
})

// ProcessGatherer gathers the Go runtime's and the process's metrics: an
// admin endpoint serves it once beside the controllers' Gatherers.
func ProcessGatherer() prometheus.Gatherer { return processMetrics() }

// metrics is the scaler's Prometheus output for one pool. Each Controller
// has its own registry, its series labelled with its pool, so that one
// process may run a controller per pool (and tests two scalers) and serve
// them together (prometheus.Gatherers).
type metrics struct {
	reg       *prometheus.Registry
	coldStart prometheus.Histogram
	events    *prometheus.CounterVec
	desired   prometheus.Gauge
	replicas  *prometheus.GaugeVec
	leader    prometheus.Gauge
	failures  *prometheus.CounterVec
	errors    *prometheus.CounterVec
	flaps     prometheus.Counter
	demandG   *prometheus.GaugeVec
	deploys   *prometheus.CounterVec
	deployG   *prometheus.GaugeVec
	conns     prometheus.Gauge
}

func newMetrics(pool string) *metrics {
	reg := prometheus.NewRegistry()
	pl := prometheus.Labels{"pool": pool}
	m := &metrics{
		reg: reg,
		coldStart: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "lbscale_scaler_cold_start_seconds",
			Help:        "Time from container create to its first 200 on HEALTH_PATH.",
			ConstLabels: pl,
			Buckets:     []float64{.05, .1, .2, .3, .5, .75, 1, 1.5, 2, 3, 5, 10, 20, 30, 60},
		}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "lbscale_scaler_scale_events_total",
			Help:        "Replica changes by direction (up, down) and reason; incremented by the number of containers.",
			ConstLabels: pl,
		}, []string{"direction", "reason"}),
		desired: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "lbscale_scaler_desired_replicas",
			Help:        "Replicas the current demand needs (steady concurrency by Little's law plus the backlog's share, over TARGET_INFLIGHT, within MIN..MAX).",
			ConstLabels: pl,
		}),
		replicas: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name:        "lbscale_scaler_replicas",
			Help:        "Containers of the pool by phase (starting, ready, draining) as the leader sees them.",
			ConstLabels: pl,
		}, []string{"state"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name:        "lbscale_scaler_leader",
			Help:        "1 while this scaler holds the lease and acts, else 0.",
			ConstLabels: pl,
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "lbscale_scaler_start_failures_total",
			Help:        "Containers that failed to start or never became healthy.",
			ConstLabels: pl,
		}, []string{"reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "lbscale_scaler_errors_total",
			Help:        "Failed calls to Docker or Redis by operation.",
			ConstLabels: pl,
		}, []string{"op"}),
	}
	m.flaps = prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "lbscale_scaler_flaps_total",
		Help:        "Scale-ups that came within STABLE_WINDOW of a scale-down.",
		ConstLabels: pl,
	})
	m.demandG = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name:        "lbscale_scaler_demand",
		Help:        "The leader's latest demand reading: arrivals (req/s), service_seconds (mean), steady (arrivals × service), panic_mean and stable_max (of steady over PANIC_WINDOW and STABLE_WINDOW), down (replicas the stable window allows).",
		ConstLabels: pl,
	}, []string{"figure"})
	m.deploys = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "lbscale_scaler_deploys_total",
		Help:        "Deploys finished, by outcome: done (every container on the new image) or rolled-back (the canary or a new container failed; every container on the previous image again).",
		ConstLabels: pl,
	}, []string{"outcome"})
	m.deployG = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name:        "lbscale_scaler_deploy_phase",
		Help:        "1 for the phase the pool's latest deploy is in (canary, rolling, done, rolling-back, rolled-back), 0 for the others.",
		ConstLabels: pl,
	}, []string{"phase"})
	m.conns = prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "lbscale_scaler_connections",
		Help:        "Open long-lived connections (WebSocket, event streams) on the pool's containers, summed over the balancers' latest reports.",
		ConstLabels: pl,
	})
	reg.MustRegister(m.coldStart, m.events, m.desired, m.replicas, m.leader, m.failures, m.errors, m.flaps, m.demandG, m.deploys, m.deployG, m.conns)
	for _, o := range []state.DeployPhase{state.DeployDone, state.DeployRolledBack} {
		m.deploys.WithLabelValues(string(o))
	}
	for _, s := range []string{"starting", "ready", "draining"} {
		m.replicas.WithLabelValues(s)
	}
	for dir, rs := range reasons {
		for _, r := range rs {
			m.events.WithLabelValues(dir, string(r))
		}
	}
	return m
}

// deployPhase sets the phase gauge from the latest deploy (none: all 0).
func (m *metrics) deployPhase(d state.Deploy, ok bool) {
	for _, p := range []state.DeployPhase{state.DeployCanary, state.DeployRolling, state.DeployDone, state.DeployRollingBack, state.DeployRolledBack} {
		v := 0.0
		if ok && d.Phase == p {
			v = 1
		}
		m.deployG.WithLabelValues(string(p)).Set(v)
	}
}

// reasons lists every decide.Reason, so the scale-event counter exists with
// a zero for each before the first event (dashboards then show a flat 0
// rather than "no data").
var reasons = map[string][]decide.Reason{
	"up":   {decide.ReasonMinReplicas, decide.ReasonReplace, decide.ReasonDemand, decide.ReasonFromZero, decide.ReasonReclaim},
	"down": {decide.ReasonSurplus, decide.ReasonIdle, decide.ReasonAboveMax, decide.ReasonExited, decide.ReasonUnhealthy},
}

// Event is one scale event in /status.
type Event struct {
	Time      time.Time     `json:"time"`
	Direction string        `json:"direction"`
	Reason    decide.Reason `json:"reason"`
	Count     int           `json:"count"`
	IDs       []string      `json:"ids,omitempty"`
	// Desired, Inflight, Queued, Arrivals (req/s) and ServiceMs are the
	// figures the decision saw.
	Desired   int     `json:"desired"`
	Inflight  int64   `json:"inflight"`
	Queued    int64   `json:"queued"`
	Arrivals  float64 `json:"arrivals"`
	ServiceMs float64 `json:"service_ms"`
	// Flap marks a scale-up within STABLE_WINDOW of a scale-down.
	Flap bool `json:"flap,omitempty"`
	// From and To are the replicas (ready and starting) before and after.
	From int `json:"from"`
	To   int `json:"to"`
	// TookMs is how long the event took: until every container it started
	// was healthy, or every one it drained or removed was gone (0: under
	// way, or an event with nothing to wait for).
	TookMs float64 `json:"took_ms"`
	// pending are the ids the event still waits for.
	pending map[string]bool
}

// Demand is the leader's latest demand reading, in /status and /metrics.
type Demand struct {
	// Arrivals is the cluster's offered rate (req/s); ServiceMs the mean
	// backend service time.
	Arrivals  float64 `json:"arrivals"`
	ServiceMs float64 `json:"service_ms"`
	// Steady is Arrivals × service (Little's law); PanicMean and StableMax
	// are its mean over PANIC_WINDOW and its maximum over STABLE_WINDOW.
	Steady    float64 `json:"steady"`
	PanicMean float64 `json:"panic_mean"`
	StableMax float64 `json:"stable_max"`
	// Down is the fewest replicas the stable window allows.
	Down int `json:"down"`
}

func (m *metrics) demand(d Demand) {
	m.demandG.WithLabelValues("arrivals").Set(d.Arrivals)
	m.demandG.WithLabelValues("service_seconds").Set(d.ServiceMs / 1000)
	m.demandG.WithLabelValues("steady").Set(d.Steady)
	m.demandG.WithLabelValues("panic_mean").Set(d.PanicMean)
	m.demandG.WithLabelValues("stable_max").Set(d.StableMax)
	m.demandG.WithLabelValues("down").Set(float64(d.Down))
}

// eventLog keeps the last cap events, oldest first.
type eventLog struct {
	mu  sync.Mutex
	cap int
	evs []Event
}

func (l *eventLog) add(e Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, e)
	if over := len(l.evs) - l.cap; over > 0 {
		l.evs = append(l.evs[:0:0], l.evs[over:]...)
	}
}

func (l *eventLog) list() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]Event(nil), l.evs...)
	for i := range out {
		out[i].pending = nil
	}
	return out
}

// finish marks container id's part of its latest event done at t; the
// event's TookMs is set when its last part is.
func (l *eventLog) finish(id string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.evs) - 1; i >= 0; i-- {
		e := &l.evs[i]
		if !e.pending[id] {
			continue
		}
		delete(e.pending, id)
		if len(e.pending) == 0 {
			e.TookMs = float64(t.Sub(e.Time).Microseconds()) / 1000
		}
		return
	}
}

// seed puts evs (an earlier leader's log) before this log's own events, so
// the log goes on across a change of leader. Their pending parts are not
// carried over: this leader cannot tell when the earlier one's ended.
func (l *eventLog) seed(evs []Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	merged := append(append([]Event(nil), evs...), l.evs...)
	if over := len(merged) - l.cap; over > 0 {
		merged = merged[over:]
	}
	l.evs = merged
}
