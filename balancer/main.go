// Command balancer is lbscale's HTTP load balancer: a reverse proxy that
// places each request on a backend slot under a cluster-wide MAX_INFLIGHT,
// queues it when every backend is full, and shares counts with the other
// replicas through Redis. See README.md for every environment variable.
package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"lbscale/balancer/admin"
	"lbscale/balancer/cluster"
	"lbscale/balancer/config"
	"lbscale/balancer/envconf"
	"lbscale/balancer/flow"
	"lbscale/balancer/health"
	"lbscale/balancer/outlier"
	"lbscale/balancer/policy"
	"lbscale/balancer/proxy"
	"lbscale/balancer/state"
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
	if err := run(cfg, log); err != nil {
		log.Error("balancer stopped", "err", err)
		os.Exit(1)
	}
}

func run(cfg config.Config, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	var store state.Store = state.NewMemory(nil)
	if cfg.RedisURL != "" {
		rs, err := state.NewRedis(cfg.RedisURL, cfg.Pool)
		if err != nil {
			return err
		}
		store = rs
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
		Store: store, ID: cfg.BalancerID, Share: cfg.ShareState && cfg.RedisURL != "",
		Interval: cfg.SyncInterval, Limit: cfg.MaxInflight, SlowStart: cfg.SlowStart,
		Static: static, Queued: queue.Depth, Flow: counter, OnCapacity: queue.Dispatch, Log: log,
	})

	detector := &outlier.Detector{Config: outlier.Config{
		Consecutive: cfg.OutlierConsecutive, BaseEjection: cfg.OutlierBase,
		MaxEjection: cfg.OutlierMax, MaxPercent: cfg.OutlierMaxPercent,
	}}
	budget := proxy.NewRetryBudget(cfg.RetryBudgetPercent, cfg.RetryMinConcurrency)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(&admin.Collector{Src: syncer, Queue: queue.Depth, Retries: budget.Stats, Overflows: detector.Overflows})
	handler := proxy.New(proxy.Options{
		Sets: syncer, Policy: pol, Queue: queue, UpstreamTimeout: cfg.UpstreamTimeout,
		MaxIdlePerHost: int(cfg.MaxInflight), Flow: counter, Outlier: detector, RetryBudget: budget,
		Metrics: proxy.NewMetrics(reg), Log: log,
	})
	router := chi.NewRouter()
	router.Handle("/*", handler)
	adm := &admin.Server{ID: cfg.BalancerID, Policy: cfg.Policy, Token: cfg.AdminToken, Src: syncer, Queue: queue.Depth,
		Retries: budget.Stats, Overflows: detector.Overflows, Gather: reg}

	bg, cancelBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	goRun := func(f func(context.Context)) { wg.Add(1); go func() { defer wg.Done(); f(bg) }() }
	goRun(syncer.Run)
	goRun((&health.Checker{Sets: syncer, Path: cfg.HealthPath, Interval: cfg.HealthInterval, OnUp: queue.Dispatch}).Run)
	if cfg.Policy == "least-loaded" {
		goRun((&health.LoadPoller{Sets: syncer, Interval: cfg.LoadInterval}).Run)
	}

	servers := []*http.Server{
		{Addr: cfg.ListenAddr, Handler: router, ReadHeaderTimeout: 10 * time.Second},
		{Addr: cfg.AdminAddr, Handler: adm.Handler(), ReadHeaderTimeout: 10 * time.Second},
	}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() {
			if err := s.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	log.Info("balancer up", "proxy", cfg.ListenAddr, "admin", cfg.AdminAddr, "policy", cfg.Policy,
		"redis", cfg.RedisURL != "", "share_state", cfg.ShareState, "max_inflight", cfg.MaxInflight, "id", cfg.BalancerID)

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down: finishing in-flight and queued requests", "timeout", cfg.ShutdownTimeout)
	case runErr = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(sctx)
	}
	cancelBG()
	wg.Wait()
	return runErr
}
