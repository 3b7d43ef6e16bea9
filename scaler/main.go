// Command scaler is lbscale's control plane: the only process holding the
// Docker socket. It starts web-server containers up to MIN_REPLICAS,
// publishes the registry of ready backends to Redis, adds containers when
// balancers report more load than the pool's target, drains idle ones on a
// cron schedule, and elects one acting scaler among its replicas through a
// Redis lease. Every threshold is an environment variable (scaler/config).
//
// "scaler healthcheck" probes the admin /healthz of a scaler in the same
// container and exits 0 or 1 (for the image's HEALTHCHECK).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"lbscale/internal/envconf"
	"lbscale/internal/healthcheck"
	"lbscale/internal/state/redisstore"
	"lbscale/scaler/config"
	"lbscale/scaler/control"
	"lbscale/scaler/driver"
	"lbscale/scaler/driver/docker"
	"lbscale/scaler/driver/swarm"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck.Run(healthcheck.LocalURL(os.Getenv(config.EnvAdminAddr), ":9090")))
	}
	if envconf.HelpAsked(os.Args[1:]) {
		envconf.PrintUsage(config.Vars, "scaler")
	}
	cfg, err := config.Load(os.LookupEnv)
	if err != nil {
		envconf.Exit("scaler", err)
	}
	log := envconf.Logger(cfg.LogLevel)
	if err := run(cfg, log); err != nil {
		log.Error("scaler stopped", "err", err)
		os.Exit(1)
	}
}

func run(cfg config.Config, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	store, err := redisstore.NewConn(cfg.Redis, cfg.Pool)
	if err != nil {
		return fmt.Errorf("redis store: %w", err)
	}
	defer store.Close()
	// Not fatal: the controller backs off and retries until Redis answers.
	// The error says what to fix when the cause is the configuration.
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if err := store.Ping(pctx); err != nil {
		log.Warn("redis not reachable at start-up; will keep retrying", "redis", cfg.Redis.String(), "err", err)
	}
	cancel()

	drv, closeDrv, err := newDriver(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeDrv()

	ctrl := control.New(control.Options{Config: cfg, Store: store, Driver: drv, Logger: log})
	ln, err := net.Listen("tcp", cfg.AdminAddr)
	if err != nil {
		return fmt.Errorf("admin listener %s: %w", cfg.AdminAddr, err)
	}
	srv := &http.Server{Handler: ctrl.Handler(), ReadHeaderTimeout: 5 * time.Second}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()
	log.Info("scaler up", "admin", ln.Addr().String(), "id", cfg.ID, "pool", cfg.Pool, "driver", cfg.Driver,
		"min", cfg.MinReplicas, "max", cfg.MaxReplicas, "target_inflight", cfg.TargetInflight,
		"image", cfg.WebImage, "network", cfg.Network)

	runErr := make(chan error, 1)
	go func() { runErr <- ctrl.Run(ctx) }()
	select {
	case err = <-runErr:
	case err = <-srvErr:
		stop()
		<-runErr
		err = fmt.Errorf("admin server: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	log.Info("scaler stopped; lease released")
	return err
}

// engineDriver is a driver over an Engine API: it can be pinged and closed.
type engineDriver interface {
	driver.Driver
	Ping(ctx context.Context) error
	Close() error
}

// newDriver builds the SCALER_DRIVER back end (config.Load already refused
// unknown names). An engine that does not answer yet is not
// fatal: the controller backs off and retries.
func newDriver(ctx context.Context, cfg config.Config, log *slog.Logger) (driver.Driver, func(), error) {
	var (
		d   engineDriver
		err error
	)
	switch cfg.Driver {
	case config.DriverDocker:
		d, err = docker.New(docker.Config{Pool: cfg.Pool, Network: cfg.Network, Port: cfg.WebPort, Creator: cfg.ID, Logger: log})
	case config.DriverSwarm:
		d, err = swarm.New(swarm.Config{Pool: cfg.Pool, Network: cfg.Network, Port: cfg.WebPort, Creator: cfg.ID,
			Constraints: cfg.WebConstraints, StopGrace: cfg.StopGrace, Logger: log})
	default:
		return nil, nil, fmt.Errorf("%s=%q: no such driver", config.EnvDriver, cfg.Driver)
	}
	if err != nil {
		return nil, nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := d.Ping(pctx); err != nil {
		log.Warn("engine not answering yet; will keep retrying", "driver", cfg.Driver, "err", err)
	}
	return d, func() { _ = d.Close() }, nil
}
