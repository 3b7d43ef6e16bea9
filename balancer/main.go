// Command balancer is lbscale's HTTP load balancer: a reverse proxy that
// places each request on a backend slot under a cluster-wide MAX_INFLIGHT,
// queues it when every backend is full, and shares counts with the other
// replicas through Redis. See README.md for every environment variable.
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
	"lbscale/balancer/envconf"
	"lbscale/balancer/flow"
	"lbscale/balancer/health"
	"lbscale/balancer/outlier"
	"lbscale/balancer/policy"
	"lbscale/balancer/proxy"
	"lbscale/balancer/state"
	"lbscale/balancer/state/memstore"
	"lbscale/balancer/state/redisstore"
	"lbscale/balancer/tlsterm"
	"lbscale/webserver/healthcheck"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck.Run(healthcheck.LocalURL(os.Getenv("ADMIN_ADDR"), ":9090")))
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

func run(cfg config.Config, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	var store state.Store = memstore.New(nil)
	// Reports go to the scalers' dashboard, so only to a shared store.
	var reports state.Reports
	if cfg.Redis.URL != "" {
		rs, err := redisstore.NewConn(cfg.Redis, cfg.Pool)
		if err != nil {
			return err
		}
		// Not fatal: Redis may come up later, and the balancer works on
		// local counts meanwhile. The error says what to fix when the
		// cause is the configuration.
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := rs.Ping(pctx); err != nil {
			log.Warn("redis not reachable at start-up; carrying on with local counts", "redis", cfg.Redis.String(), "err", err)
		}
		cancel()
		store, reports = rs, rs
	}
	defer store.Close()

	pol, err := policy.New(cfg.Policy, policy.Options{
		HashKey: cfg.HashKey, HashLoadFactor: cfg.HashLoadFactor, TrustForwardedFor: cfg.TrustForwarded,
		StickyCookie: cfg.StickyCookie, Seed: uint64(time.Now().UnixNano()), LatencyDecay: cfg.LatencyDecay,
	})
	if err != nil {
		return err
	}
	var syncer *cluster.Syncer
	counter := &flow.Counter{}
	queue := proxy.NewQueue(cfg.QueueMax, cfg.QueueTimeout, func() { syncer.Kick() })
	var static []cluster.Static
	for _, s := range cfg.Backends {
		static = append(static, cluster.Static{Addr: s.Addr, Weight: s.Weight})
	}
	syncer = cluster.New(cluster.Options{
		Store: store, ID: cfg.BalancerID, Share: cfg.ShareState && cfg.Redis.URL != "",
		Interval: cfg.SyncInterval, Limit: cfg.MaxInflight, SlowStart: cfg.SlowStart,
		Static: static, Queued: queue.Depth, Flow: counter, OnCapacity: queue.Dispatch, Log: log,
		Reports: reports,
	})

	detector := &outlier.Detector{Config: outlier.Config{
		Consecutive: cfg.OutlierConsecutive, BaseEjection: cfg.OutlierBase,
		MaxEjection: cfg.OutlierMax, MaxPercent: cfg.OutlierMaxPercent,
	}}
	budget := proxy.NewRetryBudget(cfg.RetryBudgetPercent, cfg.RetryMinConcurrency)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(&admin.Collector{Src: syncer, Queue: queue.Depth, Retries: budget.Counts, Overflows: detector.Overflows})
	handler := proxy.New(proxy.Options{
		Sets: syncer, Policy: pol, Queue: queue, UpstreamTimeout: cfg.UpstreamTimeout, RetryOn: cfg.RetryOn,
		MaxIdlePerHost: int(cfg.MaxInflight), Flow: counter, Outlier: detector, RetryBudget: budget, TrustForwarded: cfg.TrustForwarded,
		Metrics: proxy.NewMetrics(reg), Log: log,
		Prospects: syncer, BodyBuffer: cfg.BodyBufferBytes, BodyTimeout: cfg.ClientBodyTimeout,
		TunnelIdle: cfg.TunnelIdleTimeout, BackendHeader: cfg.DebugBackendHeader,
	})
	// The proxy port takes every path and every method token (PROPFIND,
	// PURGE, ...) straight to the handler: a router would only add a method
	// table that answers 405 to extension methods.
	limits := edge.Limits{
		RequestLineBytes: cfg.MaxRequestLineBytes, HeaderLineBytes: cfg.MaxHeaderLineBytes, HeaderBytes: cfg.MaxHeaderBytes,
		HeaderTimeout: cfg.ClientHeaderTimeout, IdleTimeout: cfg.ClientIdleTimeout,
	}
	adm := &admin.Server{ID: cfg.BalancerID, Policy: cfg.Policy, Token: cfg.AdminToken, Dashboard: cfg.DashboardURL, Src: syncer, Queue: queue.Depth,
		Retries: budget.Counts, Overflows: detector.Overflows, Gather: reg, Pprof: cfg.DebugPprof}

	var certs *tlsterm.Reloader
	if cfg.TLS() {
		if certs, err = tlsterm.NewReloader(cfg.TLSCertFile, cfg.TLSKeyFile, log); err != nil {
			return err
		}
	}

	bg, cancelBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	goRun := func(f func(context.Context)) { wg.Add(1); go func() { defer wg.Done(); f(bg) }() }
	goRun(syncer.Run)
	goRun((&health.Checker{Sets: syncer, Path: cfg.HealthPath, Interval: cfg.HealthInterval, OnUp: queue.Dispatch}).Run)
	if cfg.Policy == "least-loaded" {
		goRun((&health.LoadPoller{Sets: syncer, Interval: cfg.LoadInterval}).Run)
	}

	// Each listener with the call that serves it (TLS or not).
	type listener struct {
		srv   *http.Server
		serve func() error
	}
	proxySrv := edge.NewServer(cfg.ListenAddr, handler, limits, log)
	admSrv := &http.Server{Addr: cfg.AdminAddr, Handler: adm.Handler(), ReadHeaderTimeout: 10 * time.Second}
	var front net.Listener
	if certs != nil {
		// HTTPS with HTTP/2 through ALPN. The edge terminates TLS itself so
		// that it scans the decrypted HTTP/1.1 stream; the server's
		// TLSConfig offers h2, which is what makes net/http set up its
		// HTTP/2 server for the connections that negotiated it.
		proxySrv.TLSConfig = tlsterm.ServerConfig(certs.GetCertificate)
		front, err = edge.ListenTLS(cfg.ListenAddr, limits, proxySrv.TLSConfig, log)
	} else {
		front, err = edge.Listen(cfg.ListenAddr, limits)
	}
	if err != nil {
		cancelBG()
		wg.Wait()
		return err
	}
	listeners := []listener{{proxySrv, func() error { return proxySrv.Serve(front) }}, {admSrv, admSrv.ListenAndServe}}
	if certs != nil && cfg.TLSRedirectAddr != "" {
		_, port, _ := net.SplitHostPort(cfg.ListenAddr) // validated by config.Load
		redirect := &http.Server{Addr: cfg.TLSRedirectAddr, Handler: tlsterm.Redirect(port), ReadHeaderTimeout: 10 * time.Second}
		listeners = append(listeners, listener{redirect, redirect.ListenAndServe})
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
	cancelBG()
	wg.Wait()
	return runErr
}
