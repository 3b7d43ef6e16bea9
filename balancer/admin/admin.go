// Package admin serves the balancer's admin port: /healthz for probes,
// /status (JSON: the replica count and every backend's counts, the contract
// loadtest and users rely on) and /metrics (Prometheus). With ADMIN_TOKEN
// set, /status and /metrics want "Authorization: Bearer <token>". With
// DEBUG_PPROF, Go's profiles are served under /debug/pprof/ behind the same
// check.
package admin

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"lbscale/balancer/pool"
	"lbscale/internal/adminauth"
	"lbscale/internal/state"
)

// Source is what the admin port reports on.
type Source interface {
	Set() *pool.Set
	State(id string) state.Status
	StoreUp() bool
	Peers() int
}

// Status is the /status document. Its top-level figures cover every
// pool (replicas, queue depth and retries summed, backends listed with
// their pool), so that a single-pool reader (loadtest --status) reads the
// whole balancer; Pools gives each pool alone.
type Status struct {
	Balancer string `json:"balancer"`
	// Policy is the first pool's LB_POLICY.
	Policy string `json:"policy"`
	Totals
	// Pools are the pools this balancer serves, in the pool file's order
	// (one, named by POOL, without a pool file).
	Pools []PoolStatus `json:"pools"`
	// Dashboard is the live dashboard's URL (DASHBOARD_URL; the scaler
	// serves it, and only the deployment knows where it is published).
	Dashboard string `json:"dashboard,omitempty"`
}

// PoolStatus is one pool in /status.
type PoolStatus struct {
	Name   string `json:"name"`
	Policy string `json:"policy"`
	Totals
}

// Totals are the figures of one pool, or summed over every pool.
type Totals struct {
	// Replicas is the number of ready backends (routable, not draining).
	Replicas   int   `json:"replicas"`
	QueueDepth int64 `json:"queue_depth"`
	StoreUp    bool  `json:"store_up"`
	Balancers  int   `json:"balancers"`
	// Retries made, and retries not made because the retry budget was
	// spent, since start. RetriesByReason splits Retries by the failure
	// retried: connect, timeout (UPSTREAM_TIMEOUT, per try), reset, status
	// (an answer in RETRY_ON).
	Retries         uint64            `json:"retries"`
	RetriesByReason map[string]uint64 `json:"retries_by_reason"`
	RetriesRefused  uint64            `json:"retries_refused"`
	// EjectionOverflows counts backends that reached the failure threshold
	// but stayed in: OUTLIER_MAX_EJECTION_PERCENT, or the last pickable one.
	EjectionOverflows uint64          `json:"ejection_overflows"`
	Backends          []BackendStatus `json:"backends"`
}

// add sums p into t (StoreUp: all up; Balancers: the most any pool sees).
func (t *Totals) add(p Totals) {
	t.Replicas += p.Replicas
	t.QueueDepth += p.QueueDepth
	t.StoreUp = t.StoreUp && p.StoreUp
	t.Balancers = max(t.Balancers, p.Balancers)
	t.Retries += p.Retries
	t.RetriesRefused += p.RetriesRefused
	t.EjectionOverflows += p.EjectionOverflows
	for r, n := range p.RetriesByReason {
		t.RetriesByReason[r] += n
	}
	t.Backends = append(t.Backends, p.Backends...)
}

// BackendStatus is one backend in /status.
type BackendStatus struct {
	Pool            string     `json:"pool"`
	ID              string     `json:"id"`
	Addr            string     `json:"addr"`
	State           string     `json:"state"`
	Healthy         bool       `json:"healthy"`
	InflightLocal   int64      `json:"inflight_local"`
	InflightCluster int64      `json:"inflight_cluster"`
	Grant           int64      `json:"grant"`
	Limit           int64      `json:"limit"`
	LastSeen        *time.Time `json:"last_seen"`
	Served          uint64     `json:"served"`
	// Failures counts failed attempts since start: 5xx answers (retried
	// or not), connect errors, resets and upstream timeouts.
	// ConsecutiveFailures is the current run of them, which ejects the
	// backend at OUTLIER_CONSECUTIVE_5XX.
	Failures            uint64  `json:"failures"`
	ConsecutiveFailures int64   `json:"consecutive_failures"`
	Load                float64 `json:"load"`
	// Ejected is true while outlier detection keeps the backend out, until
	// EjectedUntil (null: not ejected); Ejections counts its ejections
	// since start.
	Ejected      bool       `json:"ejected"`
	EjectedUntil *time.Time `json:"ejected_until"`
	Ejections    uint64     `json:"ejections"`
	// Conns is this balancer's open long-lived connections on the backend
	// (upgrades, event streams, bodies open past STREAM_AFTER), which hold
	// no request slot; ConnsCluster adds the other balancers' as they last
	// reported them, the count MAX_CONNECTIONS bounds.
	Conns        int64 `json:"conns"`
	ConnsCluster int64 `json:"conns_cluster"`
}

// Pool is one pool the admin port reports on.
type Pool struct {
	Name   string
	Policy string
	Src    Source
	Queue  func() int64
	// Retries reports retries made, by reason, and refused (nil: none).
	Retries func() (byReason map[string]uint64, refused uint64)
	// Overflows reports ejections refused by the pool share (nil: none).
	Overflows func() uint64
}

// Server is the admin handler.
type Server struct {
	ID    string
	Token string
	// Pools returns the pools served now (they change with the pool file).
	Pools  func() []Pool
	Gather prometheus.Gatherer
	// Pprof serves Go's profiles under /debug/pprof/ (DEBUG_PPROF), behind
	// the same token as /status: a profile of the running balancer is how
	// its request path is measured, and it tells about the process.
	Pprof bool
	// Dashboard is named in /status (DASHBOARD_URL; "" for none).
	Dashboard string
}

// Handler returns the admin router.
func (s *Server) Handler() http.Handler {
	r := chi.NewRouter()
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	r.Group(func(r chi.Router) {
		r.Use(s.auth)
		r.Get("/status", s.status)
		r.Handle("/metrics", promhttp.HandlerFor(s.Gather, promhttp.HandlerOpts{}))
		if s.Pprof {
			r.HandleFunc("/debug/pprof/*", pprof.Index)
			r.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			r.HandleFunc("/debug/pprof/profile", pprof.Profile)
			r.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			r.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
	})
	return r
}

func (s *Server) auth(next http.Handler) http.Handler { return adminauth.Bearer(s.Token)(next) }

// Snapshot builds the /status document.
func (s *Server) Snapshot() Status {
	st := Status{Balancer: s.ID, Pools: []PoolStatus{}, Dashboard: s.Dashboard,
		Totals: Totals{Backends: []BackendStatus{}, RetriesByReason: map[string]uint64{}, StoreUp: true}}
	for i, p := range s.Pools() {
		ps := p.snapshot()
		if i == 0 {
			st.Policy = ps.Policy
		}
		st.add(ps.Totals)
		st.Pools = append(st.Pools, ps)
	}
	return st
}

func (p Pool) snapshot() PoolStatus {
	st := PoolStatus{Name: p.Name, Policy: p.Policy, Totals: Totals{QueueDepth: p.Queue(), StoreUp: p.Src.StoreUp(), Balancers: p.Src.Peers(), Backends: []BackendStatus{}}}
	st.RetriesByReason, st.RetriesRefused = retries(p.Retries)
	for _, n := range st.RetriesByReason {
		st.Retries += n
	}
	st.EjectionOverflows = call1(p.Overflows)
	now := time.Now()
	for _, b := range p.Src.Set().Backends {
		state := string(p.Src.State(b.ID))
		if state == "" {
			state = "ready"
		}
		if b.Draining() {
			state = "draining"
		}
		bs := BackendStatus{
			Pool: p.Name, ID: b.ID, Addr: b.Addr, State: state, Healthy: b.Healthy(),
			InflightLocal: b.Local(), InflightCluster: b.Inflight(), Grant: b.Grant(), Limit: b.Limit(),
			Served: b.Served(), Failures: b.Failures(), ConsecutiveFailures: b.ConsecutiveFailures(),
			Load: b.Load(), Ejections: b.Ejections(), Conns: b.Conns(), ConnsCluster: b.ClusterConns(),
		}
		if t := b.LastSeen(); !t.IsZero() {
			bs.LastSeen = &t
		}
		if b.Ejected(now) {
			t := b.EjectedUntil()
			bs.Ejected, bs.EjectedUntil = true, &t
		}
		if b.Routable() {
			st.Replicas++
		}
		st.Backends = append(st.Backends, bs)
	}
	return st
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(s.Snapshot())
}

// Collector exports per-backend gauges read from one pool, and its retry
// and ejection counts, at scrape time; each pool's is registered under a
// pool label.
type Collector struct {
	Src       Source
	Queue     func() int64
	Retries   func() (byReason map[string]uint64, refused uint64)
	Overflows func() uint64
}

var (
	descInflight = prometheus.NewDesc("lbscale_balancer_backend_inflight", "Requests in flight to a backend; scope local (this balancer, exact) or cluster (all balancers, as of the last sync).", []string{"backend", "scope"}, nil)
	descGrant    = prometheus.NewDesc("lbscale_balancer_backend_grant", "Slots of the backend's MAX_INFLIGHT this balancer holds.", []string{"backend"}, nil)
	descServed   = prometheus.NewDesc("lbscale_balancer_backend_served_total", "Requests this balancer completed on the backend.", []string{"backend"}, nil)
	descFailures = prometheus.NewDesc("lbscale_balancer_backend_failures_total", "Failed attempts on the backend: 5xx answers, connect errors, resets, upstream timeouts.", []string{"backend"}, nil)
	descHealthy  = prometheus.NewDesc("lbscale_balancer_backend_healthy", "1 when the backend passes its health checks.", []string{"backend"}, nil)
	descReplicas = prometheus.NewDesc("lbscale_balancer_replicas", "Ready backends.", nil, nil)
	descQueue    = prometheus.NewDesc("lbscale_balancer_queue_depth", "Requests waiting for a backend slot.", nil, nil)
	descStoreUp  = prometheus.NewDesc("lbscale_balancer_store_up", "1 when the last sync reached the shared store.", nil, nil)

	descEjected        = prometheus.NewDesc("lbscale_balancer_backend_ejected", "1 while the backend is ejected by outlier detection.", []string{"backend"}, nil)
	descEjections      = prometheus.NewDesc("lbscale_balancer_backend_ejections_total", "Outlier ejections of the backend.", []string{"backend"}, nil)
	descOverflows      = prometheus.NewDesc("lbscale_balancer_ejection_overflows_total", "Backends that reached OUTLIER_CONSECUTIVE_5XX but stayed in (OUTLIER_MAX_EJECTION_PERCENT, or the last pickable backend).", nil, nil)
	descRetries        = prometheus.NewDesc("lbscale_balancer_retries_total", "Idempotent requests retried on another backend, by the failure retried (connect, timeout, reset, status).", []string{"reason"}, nil)
	descRetriesRefused = prometheus.NewDesc("lbscale_balancer_retries_refused_total", "Retries not made because the retry budget (RETRY_BUDGET_PERCENT) was spent.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInflight, descGrant, descServed, descFailures, descHealthy, descReplicas, descQueue, descStoreUp,
		descEjected, descEjections, descOverflows, descRetries, descRetriesRefused} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	replicas := 0
	now := time.Now()
	for _, b := range c.Src.Set().Backends {
		ch <- prometheus.MustNewConstMetric(descInflight, prometheus.GaugeValue, float64(b.Local()), b.ID, "local")
		ch <- prometheus.MustNewConstMetric(descInflight, prometheus.GaugeValue, float64(b.Inflight()), b.ID, "cluster")
		ch <- prometheus.MustNewConstMetric(descGrant, prometheus.GaugeValue, float64(b.Grant()), b.ID)
		ch <- prometheus.MustNewConstMetric(descServed, prometheus.CounterValue, float64(b.Served()), b.ID)
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(b.Failures()), b.ID)
		ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, b2f(b.Healthy()), b.ID)
		ch <- prometheus.MustNewConstMetric(descEjected, prometheus.GaugeValue, b2f(b.Ejected(now)), b.ID)
		ch <- prometheus.MustNewConstMetric(descEjections, prometheus.CounterValue, float64(b.Ejections()), b.ID)
		if b.Routable() {
			replicas++
		}
	}
	ch <- prometheus.MustNewConstMetric(descReplicas, prometheus.GaugeValue, float64(replicas))
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(c.Queue()))
	ch <- prometheus.MustNewConstMetric(descStoreUp, prometheus.GaugeValue, b2f(c.Src.StoreUp()))
	byReason, refused := retries(c.Retries)
	for reason, n := range byReason {
		ch <- prometheus.MustNewConstMetric(descRetries, prometheus.CounterValue, float64(n), reason)
	}
	ch <- prometheus.MustNewConstMetric(descRetriesRefused, prometheus.CounterValue, float64(refused))
	ch <- prometheus.MustNewConstMetric(descOverflows, prometheus.CounterValue, float64(call1(c.Overflows)))
}

func call1(f func() uint64) uint64 {
	if f == nil {
		return 0
	}
	return f()
}

func retries(f func() (map[string]uint64, uint64)) (map[string]uint64, uint64) {
	if f == nil {
		return map[string]uint64{}, 0
	}
	return f()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
