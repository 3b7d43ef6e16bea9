// Command scaler is lbscale's control plane: the only process holding the
// Docker socket. It starts web-server containers up to MIN_REPLICAS,
// publishes the registry of ready backends to Redis, adds containers when
// balancers report more load than the pool's target, drains idle ones on a
// cron schedule, and elects one acting scaler among its replicas through a
// Redis lease. Every threshold is an environment variable (scaler/config).
//
// With a pool file (LBSCALE_CONFIG) it does all of that for each pool, one
// controller and one lease per pool (scaler/fleet), and follows the file's
// changes without a restart. Without one, the pool is POOL, from the
// environment: the same code with a single pool.
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
	"sync"
	"syscall"
	"time"

	"lbscale/internal/envconf"
	"lbscale/internal/healthcheck"
	"lbscale/internal/poolfile"
	"lbscale/internal/state"
	"lbscale/internal/state/redisstore"
	"lbscale/scaler/config"
	"lbscale/scaler/driver"
	"lbscale/scaler/driver/docker"
	"lbscale/scaler/driver/swarm"
	"lbscale/scaler/fleet"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck.Run(healthcheck.LocalURL(os.Getenv(config.EnvAdminAddr), ":9090")))
	}
	if envconf.HelpAsked(os.Args[1:]) {
		envconf.PrintUsage(config.Vars, "scaler")
	}
	file, data, err := poolfile.Read(os.LookupEnv, config.Vars.Var(config.EnvPool).DefaultText())
	if err != nil {
		envconf.Exit("scaler", err)
	}
	pools, err := fleet.Load(file, os.LookupEnv)
	if err != nil {
		envconf.Exit("scaler", err)
	}
	// Process-wide settings (admin, Redis, identity, log level) come from
	// the environment alone, so every pool's configuration has the same.
	proc := pools[0].Config
	log := envconf.Logger(proc.LogLevel)
	if err := run(file, data, pools, proc, log); err != nil {
		log.Error("scaler stopped", "err", err)
		os.Exit(1)
	}
}

func run(file poolfile.Config, data []byte, pools []fleet.Pool, proc config.Config, log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// One client for every pool; each pool's Store (ForPool) has its keys.
	root, err := redisstore.NewConn(proc.Redis, proc.Pool)
	if err != nil {
		return fmt.Errorf("redis store: %w", err)
	}
	defer root.Close()
	// Not fatal: the controllers back off and retry until Redis answers.
	// The error says what to fix when the cause is the configuration.
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if err := root.Ping(pctx); err != nil {
		log.Warn("redis not reachable at start-up; will keep retrying", "redis", proc.Redis.String(), "err", err)
	}
	cancel()

	f := fleet.New(fleet.Options{
		Store: func(pool string) state.Store { return root.ForPool(pool) },
		Driver: func(ctx context.Context, cfg config.Config) (driver.Driver, func(), error) {
			return newDriver(ctx, cfg, log)
		},
		Logger: log,
	})
	fctx, stopFleet := context.WithCancel(ctx)
	defer stopFleet()
	if err := f.Start(fctx, pools); err != nil {
		return err
	}
	var watching sync.WaitGroup
	if file.File != "" {
		w := &poolfile.Watcher{Path: file.File, Apply: f.Apply, Invalid: f.Invalid}
		w.Prime(data)
		watching.Go(func() { w.Run(fctx) })
	}

	ln, err := net.Listen("tcp", proc.AdminAddr)
	if err != nil {
		stopFleet()
		watching.Wait()
		f.Wait()
		return fmt.Errorf("admin listener %s: %w", proc.AdminAddr, err)
	}
	srv := &http.Server{Handler: f.Handler(proc.AdminToken), ReadHeaderTimeout: 5 * time.Second}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()
	log.Info("scaler up", "admin", ln.Addr().String(), "id", proc.ID, "pools", file.Names(), "pool_file", file.File,
		"driver", proc.Driver, "network", proc.Network)

	select {
	case <-ctx.Done():
	case err = <-srvErr:
		err = fmt.Errorf("admin server: %w", err)
	}
	stopFleet()
	watching.Wait()
	f.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	log.Info("scaler stopped; leases released")
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
