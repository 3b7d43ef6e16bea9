// Command balancer is lbscale's HTTP load balancer: a reverse proxy that
// places each request on a backend slot under a cluster-wide MAX_INFLIGHT,
// queues it when every backend is full, and shares counts with the other
// replicas through Redis. See docs/configuration.md, or balancer -h, for every environment variable.
package main

import (
	"context"
	"errors"
	"fmt"
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

	"lbscale/balancer/accesslog"
	"lbscale/balancer/admin"
	"lbscale/balancer/config"
	"lbscale/balancer/edge"
	"lbscale/balancer/front"
	"lbscale/balancer/tlsterm"
	"lbscale/balancer/tracing"
	"lbscale/internal/envconf"
	"lbscale/internal/healthcheck"
	"lbscale/internal/poolfile"
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
		var ce configError
		if errors.As(err, &ce) {
			envconf.Exit("balancer", ce.error)
		}
		log.Error("balancer stopped", "err", err)
		os.Exit(1)
	}
}

// balancer is the process, built whole before anything runs: each part is
// made by one function below, and run starts them, serves, and stops them
// in order. The pools (one without a pool file) are the front door's; the
// rest is the process's own: listeners, admin, TLS, the Redis client.
type balancer struct {
	cfg   config.Config // the process's settings, and every pool's defaults
	log   *slog.Logger
	store *redisstore.Store // the shared Redis client; nil without REDIS_URL
	pools poolfile.Config   // as the pool file gave it last (or the environment)
	data  []byte            // the pool file's contents behind pools
	reg   *prometheus.Registry
	door  *front.Door
	admin *admin.Server
	certs *tlsterm.Reloader // nil without TLS
	// alog is the access log and tracer the traces' exporter (nil: off).
	alog   *accesslog.Logger
	tracer *tracing.Tracer

	// reloads counts pool files refused by a reload.
	reloadErrors prometheus.Counter
}

func run(cfg config.Config, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	b, err := build(ctx, cfg, log)
	if err != nil {
		return err
	}
	if b.store != nil {
		defer b.store.Close()
	}
	return b.run(ctx)
}

// configError is an invalid configuration found at start-up: the process
// exits 2, as for an invalid environment.
type configError struct{ error }

// build makes every part from the configuration; nothing runs yet.
func build(ctx context.Context, cfg config.Config, log *slog.Logger) (*balancer, error) {
	b := &balancer{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	var err error
	if b.pools, b.data, err = poolfile.Read(os.LookupEnv, cfg.Pool); err != nil {
		return nil, configError{err}
	}
	specs, err := poolSpecs(b.pools)
	if err != nil {
		return nil, configError{err}
	}
	if b.store, err = newStore(ctx, cfg, b.pools.Names()[0], log); err != nil {
		return nil, err
	}
	b.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	b.reloadErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "lbscale_balancer_config_reload_errors_total", Help: "Pool files refused by a reload (the running configuration stayed)."})
	b.reg.MustRegister(b.reloadErrors)
	if err := b.observability(); err != nil {
		b.closeStore()
		return nil, err
	}
	b.door = front.NewDoor(front.Deps{Store: b.poolStore, Shared: b.store != nil, Registerer: b.reg, Log: log, BalancerID: cfg.BalancerID,
		AccessLog: b.alog, Tracer: b.tracer}, cfg.ShutdownTimeout)
	if err := b.door.Apply(ctx, specs); err != nil {
		b.closeStore()
		return nil, configError{err}
	}
	b.admin = &admin.Server{ID: cfg.BalancerID, Token: cfg.AdminToken, Dashboard: cfg.DashboardURL,
		Pools: b.door.AdminPools, Gather: b.reg, Pprof: cfg.DebugPprof}
	if cfg.TLS() {
		if b.certs, err = tlsterm.NewReloader(cfg.TLSCertFile, cfg.TLSKeyFile, log); err != nil {
			b.door.Close(ctx)
			b.closeStore()
			return nil, err
		}
	}
	return b, nil
}

// observability opens the access log (ACCESS_LOG) and the trace exporter
// (the OpenTelemetry SDK's OTEL_* variables); either may be off. An
// access log that cannot be opened, or OTEL_* values the SDK refuses,
// stop the balancer at start-up.
func (b *balancer) observability() error {
	var err error
	if b.cfg.AccessLog != "" {
		b.alog, err = accesslog.Open(accesslog.Options{Dest: b.cfg.AccessLog, KeepQuery: b.cfg.AccessLogQuery, MaxSize: b.cfg.AccessLogMaxBytes})
		if err != nil {
			return configError{fmt.Errorf("ACCESS_LOG: %w", err)}
		}
		b.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "lbscale_balancer_access_log_dropped_total",
			Help: "Access-log entries dropped because the writer fell behind (the log never slows a request).",
		}, func() float64 { return float64(b.alog.Dropped()) }))
	}
	if b.tracer, err = tracing.FromEnv(os.LookupEnv); err != nil {
		if b.alog != nil {
			_ = b.alog.Close()
		}
		return configError{err}
	}
	return nil
}

func (b *balancer) closeStore() {
	if b.store != nil {
		b.store.Close()
	}
}

// poolSpecs reads every pool's configuration: the environment overlaid
// with the pool file's settings, validated by the same table as the
// environment alone. An error names the file, line and key.
func poolSpecs(pc poolfile.Config) ([]front.Spec, error) {
	return poolfile.Each(pc, func(p poolfile.Pool) (front.Spec, error) {
		cfg, err := config.Load(p.Lookup(os.LookupEnv))
		return front.Spec{Cfg: cfg, Hosts: p.Hosts, Paths: p.Paths}, err
	})
}

// newStore is the shared Redis client when REDIS_URL is set (nil
// otherwise: each pool then has an in-memory store); first names the pool
// its own keys are for.
func newStore(ctx context.Context, cfg config.Config, first string, log *slog.Logger) (*redisstore.Store, error) {
	if cfg.Redis.URL == "" {
		return nil, nil
	}
	rs, err := redisstore.NewConn(cfg.Redis, first)
	if err != nil {
		return nil, err
	}
	// Not fatal: Redis may come up later, and the balancer works on local
	// counts meanwhile. The error says what to fix when the cause is the
	// configuration.
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := rs.Ping(pctx); err != nil {
		log.Warn("redis not reachable at start-up; carrying on with local counts", "redis", cfg.Redis.String(), "err", err)
	}
	return rs, nil
}

// poolStore is a pool's store: its view of the shared Redis client (keys
// under the pool's hash tag), else an in-memory store of its own. Reports
// go to the scalers' dashboard, so only to a shared store.
func (b *balancer) poolStore(pool string) (state.Store, state.Reports) {
	if b.store == nil {
		return memstore.New(nil), nil
	}
	s := b.store.ForPool(pool)
	return s, s
}

// reload applies a changed pool file: every pool's configuration is read
// first, and any error refuses the whole file (the running configuration
// stays).
func (b *balancer) reload(ctx context.Context, pc poolfile.Config) {
	start := time.Now()
	specs, err := poolSpecs(pc)
	if err == nil {
		err = b.door.Apply(ctx, specs)
	}
	if err != nil {
		b.reloadRefused(err)
		return
	}
	b.pools = pc
	b.log.Info("pool file reloaded", "file", pc.File, "pools", pc.Names(), "took", time.Since(start).Round(time.Microsecond))
}

func (b *balancer) reloadRefused(err error) {
	b.reloadErrors.Inc()
	b.log.Error("pool file refused; the running configuration stays", "file", b.pools.File, "err", err)
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
	proxySrv := edge.NewServer(cfg.ListenAddr, b.door, limits, b.log)
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
	if b.pools.File != "" {
		w := &poolfile.Watcher{Path: b.pools.File, Apply: func(pc poolfile.Config) { b.reload(bg, pc) }, Invalid: b.reloadRefused}
		w.Prime(b.data)
		goRun(w.Run)
	}
	if b.alog != nil {
		// logrotate moves the file and sends SIGHUP: the log goes on in a
		// new file at the same path.
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		goRun(func(ctx context.Context) {
			defer signal.Stop(hup)
			for {
				select {
				case <-ctx.Done():
					return
				case <-hup:
					if err := b.alog.Reopen(); err != nil {
						log.Error("access log not reopened", "file", cfg.AccessLog, "err", err)
					}
				}
			}
		})
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
	log.Info("balancer up", "proxy", cfg.ListenAddr, "tls", cfg.TLS(), "tls_redirect", cfg.TLSRedirectAddr, "admin", cfg.AdminAddr,
		"pools", b.pools.Names(), "pool_file", b.pools.File, "redis", cfg.Redis.String(), "share_state", cfg.ShareState, "id", cfg.BalancerID)

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
	b.door.Close(sctx)
	if b.alog != nil {
		_ = b.alog.Close()
	}
	if err := b.tracer.Shutdown(sctx); err != nil {
		log.Warn("traces not all exported at shutdown", "err", err)
	}
	return runErr
}
