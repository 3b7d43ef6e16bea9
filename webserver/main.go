// Command webserver is lbscale's sample backend: it answers "Hello from
// <id>" at a configurable cost per request (WORK_MS of CPU, SLEEP_MS of
// waiting, at most CAPACITY at once), reports its load at /load and its
// health at /healthz, and on SIGTERM drains in-flight requests and closes
// its upgraded connections and event streams. See package
// lbscale/webserver/server for the routes.
//
// Environment (empty counts as unset; an invalid value exits 2 naming it):
//
//	LISTEN_ADDR       listen address (default :8080)
//	WORK_MS           CPU milliseconds burned per request (default 0, max 60000)
//	SLEEP_MS          milliseconds slept per request after the work (default 0)
//	CAPACITY          requests processed at once, the rest wait (default 0: unlimited)
//	SERVER_ID         X-Server-Id and /load id (default: the hostname)
//	SHUTDOWN_TIMEOUT  longest drain on SIGTERM (default 30s)
//	LOG_LEVEL         debug (one line per request), info, warn, error (default info)
//	FAULT             hang (/ and /upgrade never answer) or error (they answer
//	                  500); /healthz and /load stay fine (default: none)
//
// "webserver healthcheck" probes /healthz of the server on LISTEN_ADDR in the
// same container and exits 0 or 1, for the image's HEALTHCHECK.
package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"lbscale/internal/envconf"
	"lbscale/internal/healthcheck"
	"lbscale/webserver/server"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck.Run(healthcheck.LocalURL(os.Getenv(server.EnvListenAddr), server.DefaultListenAddr)))
	}
	if envconf.HelpAsked(os.Args[1:]) {
		envconf.PrintUsage(server.Vars, "webserver")
	}
	cfg, err := server.Load(os.LookupEnv)
	if err != nil {
		envconf.Exit("webserver", err)
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(cfg.LogLevel)))
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("id", cfg.ServerID)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		log.Error("listen", "addr", cfg.ListenAddr, "err", err)
		os.Exit(1)
	}
	if err := server.New(cfg, log).Serve(ctx, ln); err != nil {
		log.Error("webserver stopped", "err", err)
		os.Exit(1)
	}
}
