// Command balancer is lbscale's HTTP load balancer: a reverse proxy that
// places each request on a backend slot under a cluster-wide MAX_INFLIGHT,
// queues it when every backend is full, and shares counts with the other
// replicas through Redis. See docs/configuration.md, or balancer -h, for every environment variable.
package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"lbscale/balancer/admin"
	"lbscale/balancer/cluster"
	"lbscale/balancer/config"
	"lbscale/balancer/edge"
	"lbscale/balancer/flow"
	"lbscale/balancer/health"
	"lbscale/balancer/outlier"
	"lbscale/balancer/policy"
	"lbscale/balancer/proxy"
	"lbscale/balancer/tlsterm"
	"lbscale/internal/envconf"
	"lbscale/internal/healthcheck"
	"lbscale/internal/state"
	"lbscale/internal/state/memstore"
	"lbscale/internal/state/redisstore"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck.Run(healthcheck.LocalURL(os.Getenv("ADMIN_ADDR"), ":9090")))
	}
	if envconf.HelpAsked(os.Args[1:]) {
		envconf.PrintUsage(config.Vars, "balancer")
	}
	cfg, err := config.Load(os.LookupEnv)
	if err != nil {
		envconf.Exit("balancer", err)
	}
	log := envconf.Logger(cfg.LogLevel)
	if cfg.DebugPprof {
		// Sample contended locks and blocking too, so /debug/pprof/mutex
		// and /block have something to show; off otherwise (they cost).
		runtime.SetMutexProfileFraction(100)
		runtime.SetBlockProfileRate(int((100 * time.Microsecond).Nanoseconds()))
	}
	if err := run(cfg, log); err != nil {
		log.Error("balancer stopped", "err", err)
		os.Exit(1)
	}
}

// balancer is the process, built whole before anything runs: each part is
// made by one function below, and run starts them, serves, and stops them
// in order.
type balancer struct {
	cfg      config.Config
	log      *slog.Logger
	store    state.Store
	reports  state.Reports // nil without a shared store
	syncer   *cluster.Syncer
	queue    *proxy.Queue
	counter  *flow.Counter
	detector *outlier.Detector
	budget   *proxy.RetryBudget
	reg      *prometheus.Registry
	handler  http.Handler
	admin    *admin.Server
	certs    *tlsterm.Reloader // nil without TLS
}

func run(cfg config.Config, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	b, err := build(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer b.store.Close()
	return b.run(ctx)
}

// build makes every part from the configuration; nothing runs yet.
func build(ctx context.Context, cfg config.Config, log *slog.Logger) (*balancer, error) {
	b := &balancer{cfg: cfg, log: log, counter: &flow.Counter{}}
	var err error
	if b.store, b.reports, err = newStore(ctx, cfg, log); err != nil {
		return nil, err
	}
	pol, err := newPolicy(cfg)
	if err != nil {
		b.store.Close()
		return nil, err
	}
	b.queue = proxy.NewQueue(cfg.QueueMax, cfg.QueueTimeout, func() { b.syncer.Kick() })
	b.syncer = b.newSyncer()
	b.detector = &outlier.Detector{Config: outlier.Config{
		Consecutive: cfg.OutlierConsecutive, BaseEjection: cfg.OutlierBase,
		MaxEjection: cfg.OutlierMax, MaxPercent: cfg.OutlierMaxPercent,
	}}
	b.budget = proxy.NewRetryBudget(cfg.RetryBudgetPercent, cfg.RetryMinConcurrency)
	b.reg = b.newMetrics()
	b.handler = b.newProxy(pol)
	b.admin = &admin.Server{ID: cfg.BalancerID, Policy: cfg.Policy, Token: cfg.AdminToken, Dashboard: cfg.DashboardURL,
		Src: b.syncer, Queue: b.queue.Depth, Retries: b.budget.Counts, Overflows: b.detector.Overflows, Gather: b.reg, Pprof: cfg.DebugPprof}
	if cfg.TLS() {
		if b.certs, err = tlsterm.NewReloader(cfg.TLSCertFile, cfg.TLSKeyFile, log); err != nil {
			b.store.Close()
			return nil, err
		}
	}
	return b, nil
}

// newStore is the shared store (Redis) when REDIS_URL is set, else an
// in-memory one; reports go to the scalers' dashboard, so only to a shared
// store.
func newStore(ctx context.Context, cfg config.Config, log *slog.Logger) (state.Store, state.Reports, error) {
	if cfg.Redis.URL == "" {
		return memstore.New(nil), nil, nil
	}
	rs, err := redisstore.NewConn(cfg.Redis, cfg.Pool)
	if err != nil {
		return nil, nil, err
	}
	// Not fatal: Redis may come up later, and the balancer works on local
	// counts meanwhile. The error says what to fix when the cause is the
	// configuration.
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := rs.Ping(pctx); err != nil {
		log.Warn("redis not reachable at start-up; carrying on with local counts", "redis", cfg.Redis.String(), "err", err)
	}
	return rs, rs, nil
}

func newPolicy(cfg config.Config) (policy.Policy, error) {
	return policy.New(cfg.Policy, policy.Options{
		HashKey: cfg.HashKey, HashLoadFactor: cfg.HashLoadFactor, TrustForwardedFor: cfg.TrustForwarded,
		StickyCookie: cfg.StickyCookie, Seed: uint64(time.Now().UnixNano()), LatencyDecay: cfg.LatencyDecay,
	})
}

// newSyncer keeps the pool: the registry (or BACKENDS), the shared counts
// and this balancer's slots.
func (b *balancer) newSyncer() *cluster.Syncer {
	cfg := b.cfg
	var static []cluster.Static
	for _, s := range cfg.Backends {
		static = append(static, cluster.Static{Addr: s.Addr, Weight: s.Weight})
	}
	return cluster.New(cluster.Options{
		Store: b.store, ID: cfg.BalancerID, Share: cfg.ShareState && cfg.Redis.URL != "",
		Interval: cfg.SyncInterval, Limit: cfg.MaxInflight, SlowStart: cfg.SlowStart,
		Static: static, Queued: b.queue.Depth, Flow: b.counter, OnCapacity: b.queue.Dispatch, Log: b.log,
		Reports: b.reports,
	})
}

func (b *balancer) newMetrics() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(&admin.Collector{Src: b.syncer, Queue: b.queue.Depth, Retries: b.budget.Counts, Overflows: b.detector.Overflows})
	return reg
}

// newProxy is the request path. The proxy port takes every path and every
// method token (PROPFIND, PURGE, ...) straight to it: a router would only
// add a method table that answers 405 to extension methods.
func (b *balancer) newProxy(pol policy.Policy) http.Handler {
	cfg := b.cfg
	return proxy.New(proxy.Options{
		Sets: b.syncer, Policy: pol, Queue: b.queue, UpstreamTimeout: cfg.UpstreamTimeout, RetryOn: cfg.RetryOn,
		MaxIdlePerHost: int(cfg.MaxInflight), Flow: b.counter, Outlier: b.detector, RetryBudget: b.budget,
		TrustForwarded: cfg.TrustForwarded, Metrics: proxy.NewMetrics(b.reg), Log: b.log,
		Prospects: b.syncer, BodyBuffer: cfg.BodyBufferBytes, BodyTimeout: cfg.ClientBodyTimeout,
		TunnelIdle: cfg.TunnelIdleTimeout, BackendHeader: cfg.DebugBackendHeader,
	})
}

// listener is one server with the call that serves it (TLS or not).
type listener struct {
	srv   *http.Server
	serve func() error
}

// newListeners opens the proxy port (HTTPS with HTTP/2 when TLS is set),
// and makes the admin port and the plain-HTTP redirect.
func (b *balancer) newListeners() ([]listener, error) {
	cfg := b.cfg
	limits := edge.Limits{
		RequestLineBytes: cfg.MaxRequestLineBytes, HeaderLineBytes: cfg.MaxHeaderLineBytes, HeaderBytes: cfg.MaxHeaderBytes,
		HeaderTimeout: cfg.ClientHeaderTimeout, IdleTimeout: cfg.ClientIdleTimeout,
	}
	proxySrv := edge.NewServer(cfg.ListenAddr, b.handler, limits, b.log)
	admSrv := &http.Server{Addr: cfg.AdminAddr, Handler: b.admin.Handler(), ReadHeaderTimeout: 10 * time.Second}
	var front net.Listener
	var err error
	if b.certs != nil {
		// HTTPS with HTTP/2 through ALPN. The edge terminates TLS itself so
		// that it scans the decrypted HTTP/1.1 stream; the server's
		// TLSConfig offers h2, which is what makes net/http set up its
		// HTTP/2 server for the connections that negotiated it.
		proxySrv.TLSConfig = tlsterm.ServerConfig(b.certs.GetCertificate)
		front, err = edge.ListenTLS(cfg.ListenAddr, limits, proxySrv.TLSConfig, b.log)
	} else {
		front, err = edge.Listen(cfg.ListenAddr, limits)
	}
	if err != nil {
		return nil, err
	}
	listeners := []listener{{proxySrv, func() error { return proxySrv.Serve(front) }}, {admSrv, admSrv.ListenAndServe}}
	if b.certs != nil && cfg.TLSRedirectAddr != "" {
		_, port, _ := net.SplitHostPort(cfg.ListenAddr) // validated by config.Load
		redirect := &http.Server{Addr: cfg.TLSRedirectAddr, Handler: tlsterm.Redirect(port), ReadHeaderTimeout: 10 * time.Second}
		listeners = append(listeners, listener{redirect, redirect.ListenAndServe})
	}
	return listeners, nil
}

// run starts the background loops, serves until ctx ends or a listener
// fails, then drains: the listeners finish in-flight and queued requests
// within SHUTDOWN_TIMEOUT, and the loops stop last.
func (b *balancer) run(ctx context.Context) error {
	cfg, log := b.cfg, b.log
	bg, cancelBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	goRun := func(f func(context.Context)) { wg.Add(1); go func() { defer wg.Done(); f(bg) }() }
	stopBG := func() { cancelBG(); wg.Wait() }
	goRun(b.syncer.Run)
	goRun((&health.Checker{Sets: b.syncer, Path: cfg.HealthPath, Interval: cfg.HealthInterval, OnUp: b.queue.Dispatch}).Run)
	if cfg.Policy == "least-loaded" {
		goRun((&health.LoadPoller{Sets: b.syncer, Interval: cfg.LoadInterval}).Run)
	}
	listeners, err := b.newListeners()
	if err != nil {
		stopBG()
		return err
	}
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() {
			if err := l.serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	log.Info("balancer up", "proxy", cfg.ListenAddr, "tls", cfg.TLS(), "tls_redirect", cfg.TLSRedirectAddr, "admin", cfg.AdminAddr, "policy", cfg.Policy,
		"redis", cfg.Redis.String(), "share_state", cfg.ShareState, "max_inflight", cfg.MaxInflight, "id", cfg.BalancerID)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: finishing in-flight and queued requests", "timeout", cfg.ShutdownTimeout)
	case runErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	for _, l := range listeners {
		_ = l.srv.Shutdown(sctx)
	}
	stopBG()
	return runErr
}
