package front

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"lbscale/balancer/accesslog"
	"lbscale/balancer/admin"
	"lbscale/balancer/cluster"
	"lbscale/balancer/config"
	"lbscale/balancer/flow"
	"lbscale/balancer/health"
	"lbscale/balancer/outlier"
	"lbscale/balancer/policy"
	"lbscale/balancer/proxy"
	"lbscale/balancer/tracing"
	"lbscale/internal/state"
)

// Deps are what every pool of one balancer shares: the store each pool's
// own view is made from, the metrics registry, the log.
type Deps struct {
	// Store returns the pool's store (its keys carry the pool's hash tag)
	// and where its reports go (nil without a shared store).
	Store func(pool string) (state.Store, state.Reports)
	// Shared tells whether Store is shared with other balancers (Redis).
	Shared bool
	// Registerer takes each pool's series, under a pool label.
	Registerer prometheus.Registerer
	Log        *slog.Logger
	// AccessLog and Tracer are the process's (nil: off), shared by its
	// pools; the door logs what no pool serves.
	AccessLog *accesslog.Logger
	Tracer    *tracing.Tracer
	// BalancerID is this replica's id in the store; a pool rebuilt by a
	// reload takes it with a generation suffix, so that the old and the
	// new copy of the pool hold their slots apart while the old drains.
	BalancerID string
}

// Pool is one pool as this balancer serves it: its backends and their
// slots (the syncer), its queue, policy, outlier detector, retry budget,
// health checks and metrics. New builds it, Start runs its loops, Close
// drains and stops it; nothing of it is global or keyed by name elsewhere.
type Pool struct {
	Name string
	Cfg  config.Config

	store    state.Store
	syncer   *cluster.Syncer
	queue    *proxy.Queue
	detector *outlier.Detector
	budget   *proxy.RetryBudget
	metrics  *proxy.Metrics
	coll     *admin.Collector
	reg      prometheus.Registerer
	handler  http.Handler
	log      *slog.Logger

	// active counts requests routed to this pool and not yet answered:
	// Close waits for it to reach 0, so a request already routed keeps
	// the pool it got through a reload.
	active atomic.Int64

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewPool builds a pool from its configuration (cfg.Pool is its name);
// gen > 0 marks a rebuild by a reload. Nothing runs until Start.
func NewPool(d Deps, cfg config.Config, gen int) (*Pool, error) {
	pol, err := policy.New(cfg.Policy, policy.Options{
		HashKey: cfg.HashKey, HashLoadFactor: cfg.HashLoadFactor, TrustForwardedFor: cfg.TrustForwarded,
		StickyCookie: cfg.StickyCookie, Seed: uint64(time.Now().UnixNano()), LatencyDecay: cfg.LatencyDecay,
	})
	if err != nil {
		return nil, err
	}
	id := d.BalancerID
	if gen > 0 {
		id += "~" + strconv.Itoa(gen)
	}
	p := &Pool{Name: cfg.Pool, Cfg: cfg, log: d.Log.With("pool", cfg.Pool)}
	var reports state.Reports
	p.store, reports = d.Store(cfg.Pool)
	counter := &flow.Counter{}
	p.queue = proxy.NewQueue(cfg.QueueMax, cfg.QueueTimeout, func() { p.syncer.Kick() })
	var static []cluster.Static
	for _, s := range cfg.Backends {
		static = append(static, cluster.Static{Addr: s.Addr, Weight: s.Weight})
	}
	p.syncer = cluster.New(cluster.Options{
		Store: p.store, ID: id, Share: cfg.ShareState && d.Shared,
		Interval: cfg.SyncInterval, Limit: cfg.MaxInflight, SlowStart: cfg.SlowStart,
		Static: static, Queued: p.queue.Depth, Flow: counter, OnCapacity: p.queue.Dispatch, Log: p.log,
		Reports: reports,
	})
	p.detector = &outlier.Detector{Config: outlier.Config{
		Consecutive: cfg.OutlierConsecutive, BaseEjection: cfg.OutlierBase,
		MaxEjection: cfg.OutlierMax, MaxPercent: cfg.OutlierMaxPercent,
	}}
	p.budget = proxy.NewRetryBudget(cfg.RetryBudgetPercent, cfg.RetryMinConcurrency)
	p.reg = prometheus.WrapRegistererWith(prometheus.Labels{"pool": cfg.Pool}, d.Registerer)
	// The series are made here and registered by register, when the pool
	// goes into service: a pool rebuilt by a reload takes over the old
	// copy's pool label only once the old one is out.
	p.metrics = proxy.NewMetrics(prometheus.NewRegistry())
	p.coll = &admin.Collector{Src: p.syncer, Queue: p.queue.Depth, Retries: p.budget.Counts, Overflows: p.detector.Overflows}
	p.handler = proxy.New(proxy.Options{
		Sets: p.syncer, Policy: pol, Queue: p.queue, UpstreamTimeout: cfg.UpstreamTimeout, RetryOn: cfg.RetryOn,
		MaxIdlePerHost: int(cfg.MaxInflight), Flow: counter, Outlier: p.detector, RetryBudget: p.budget,
		TrustForwarded: cfg.TrustForwarded, Metrics: p.metrics, Log: p.log,
		Prospects: p.syncer, BodyBuffer: cfg.BodyBufferBytes, BodyTimeout: cfg.ClientBodyTimeout,
		TunnelIdle: cfg.TunnelIdleTimeout, BackendHeader: cfg.DebugBackendHeader,
		MaxConnections: cfg.MaxConnections, StreamAfter: cfg.StreamAfter,
		Pool: cfg.Pool, AccessLog: d.AccessLog, Tracer: d.Tracer, ColdStartHeader: cfg.ColdStartHeader,
	})
	return p, nil
}

// Start syncs once — so that a pool added by a reload knows its backends
// before its first request — and then runs the pool's loops until Close.
func (p *Pool) Start(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, cluster.SyncTimeout(p.Cfg.SyncInterval))
	p.syncer.Sync(sctx)
	cancel()
	bg, cancelBG := context.WithCancel(context.WithoutCancel(ctx))
	p.cancel = cancelBG
	goRun := func(f func(context.Context)) { p.wg.Add(1); go func() { defer p.wg.Done(); f(bg) }() }
	goRun(p.syncer.Run)
	goRun((&health.Checker{Sets: p.syncer, Path: p.Cfg.HealthPath, Interval: p.Cfg.HealthInterval, OnUp: p.queue.Dispatch}).Run)
	if p.Cfg.Policy == policy.NameLeastLoaded {
		goRun((&health.LoadPoller{Sets: p.syncer, Interval: p.Cfg.LoadInterval}).Run)
	}
}

// ServeHTTP serves one request routed to this pool.
func (p *Pool) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.active.Add(1)
	defer p.active.Add(-1)
	p.handler.ServeHTTP(w, r)
}

// Close stops the pool once the requests routed to it are answered (or
// ctx ends): its loops stop, its syncer leaves the cluster (its slots are
// free at once), and its series leave the registry. The router no longer
// sends it requests when Close is called.
func (p *Pool) Close(ctx context.Context) {
	if !p.idle(ctx) {
		p.log.Warn("pool closed with requests in flight", "inflight", p.active.Load())
	}
	if p.cancel != nil {
		p.cancel()
		p.wg.Wait()
	}
}

// register exports the pool's series under its pool label.
func (p *Pool) register() error {
	for _, c := range append([]prometheus.Collector{p.coll}, p.metrics.Collectors()...) {
		if err := p.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// unregister takes the pool's series out of the registry.
func (p *Pool) unregister() {
	p.reg.Unregister(p.coll)
	p.metrics.Unregister(p.reg)
}

// idle waits until no request routed to the pool is left, or ctx ends.
func (p *Pool) idle(ctx context.Context) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for p.active.Load() > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// Admin is the pool as the admin port reports it.
func (p *Pool) Admin() admin.Pool {
	return admin.Pool{Name: p.Name, Policy: p.Cfg.Policy, Src: p.syncer, Queue: p.queue.Depth, Retries: p.budget.Counts, Overflows: p.detector.Overflows}
}

// Store is the pool's store (closed by its owner, not by Close).
func (p *Pool) Store() state.Store { return p.store }
