package server

import (
	"os"
	"time"

	"lbscale/internal/envconf"
)

// Environment variable names the web server reads (the design's contract;
// do not rename).
const (
	EnvListenAddr      = "LISTEN_ADDR"
	EnvWorkMS          = "WORK_MS"
	EnvSleepMS         = "SLEEP_MS"
	EnvCapacity        = "CAPACITY"
	EnvServerID        = "SERVER_ID"
	EnvShutdownTimeout = "SHUTDOWN_TIMEOUT"
	EnvLogLevel        = "LOG_LEVEL"
	EnvFault           = "FAULT"
)

// FAULT values: the gray failures a chaos test starts a server with. Both
// spare /healthz and /load, so health checks keep passing: only what the
// balancer sees on real requests can catch them.
const (
	// FaultHang: request paths read the request and never answer, until
	// the client goes away or the server shuts down (then the connection
	// is cut without an answer).
	FaultHang = "hang"
	// FaultError: request paths answer 500 at once.
	FaultError = "error"
)

// DefaultListenAddr is where the server listens when LISTEN_ADDR is unset.
const DefaultListenAddr = ":8080"

// MaxCostMS bounds WORK_MS, SLEEP_MS and their per-request overrides: a
// minute is already far beyond any experiment, and a bound stops a typo
// (sleep_ms=5000000) from parking a worker for hours.
const MaxCostMS = 60000

// Config is everything the web server is tuned by.
type Config struct {
	// ListenAddr is host:port of the HTTP listener.
	ListenAddr string
	// Work is the CPU time each request burns (WORK_MS); real CPU, so that
	// on a busy host a request takes longer, as real work would.
	Work time.Duration
	// Sleep is the time each request waits after its work (SLEEP_MS),
	// standing for I/O: it costs a slot but no CPU.
	Sleep time.Duration
	// Capacity is how many requests are processed at once (0: unlimited).
	// Further requests wait inside the server, as they would for a
	// gunicorn worker, so that one container's throughput is bounded even
	// on a host with idle cores.
	Capacity int
	// ServerID names this server in X-Server-Id and /load; defaults to the
	// hostname, which Docker sets to the container's id or name.
	ServerID string
	// Hostname is the machine's (container's) hostname, shown in the body
	// next to ServerID. Not read from the environment.
	Hostname string
	// ShutdownTimeout is how long SIGTERM waits for in-flight requests.
	ShutdownTimeout time.Duration
	// LogLevel is debug, info, warn or error; debug logs every request.
	LogLevel string
	// Fault is FaultHang, FaultError or "" (none, the default): FAULT.
	Fault string
}

// Vars declares every variable the web server reads: name, default,
// range and meaning, once. Load reads through it, -h prints it, and
// TestDocsMatchVars holds docs/configuration.md to it.
var Vars = envconf.Table{
	{Name: EnvListenAddr, Default: DefaultListenAddr, Help: "listen address"},
	{Name: EnvWorkMS, Default: 0, Min: 0, Max: MaxCostMS, Help: "real CPU burned per request (query work_ms overrides)"},
	{Name: EnvSleepMS, Default: 0, Min: 0, Max: MaxCostMS, Help: "sleep per request (query sleep_ms overrides)"},
	{Name: EnvCapacity, Default: 0, Min: 0, Max: 1_000_000, Help: "requests processed at once; more wait inside the server"},
	{Name: EnvServerID, Shown: "hostname", Help: "the X-Server-Id header and / body"},
	{Name: EnvShutdownTimeout, Default: 30 * time.Second, Min: time.Duration(0), Max: time.Hour, Help: "drain time on SIGTERM"},
	{Name: EnvLogLevel, Default: "info", OneOf: []string{"debug", "info", "warn", "error"}, Help: "log level"},
	{Name: EnvFault, Help: "for chaos tests: hang — / and /upgrade read the request and never answer (until the client leaves; at shutdown the connection is cut); error — they answer 500 at once. /healthz and /load answer as ever, so health checks miss it"},
}

// Load reads the configuration from lookup (os.LookupEnv in main); the
// error names every invalid variable. Empty values count as unset.
func Load(lookup func(string) (string, bool)) (Config, error) {
	r := envconf.New(lookup, Vars)
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "webserver"
	}
	c := Config{
		ListenAddr:      r.Addr(EnvListenAddr),
		Work:            time.Duration(r.Int(EnvWorkMS)) * time.Millisecond,
		Sleep:           time.Duration(r.Int(EnvSleepMS)) * time.Millisecond,
		Capacity:        r.Int(EnvCapacity),
		ServerID:        r.StringOr(EnvServerID, host),
		Hostname:        host,
		ShutdownTimeout: r.Duration(EnvShutdownTimeout),
		LogLevel:        r.OneOf(EnvLogLevel),
		Fault:           r.String(EnvFault),
	}
	if c.Fault != "" && c.Fault != FaultHang && c.Fault != FaultError {
		r.Fail(EnvFault, "%q is not %s or %s (unset: no fault)", c.Fault, FaultHang, FaultError)
		c.Fault = ""
	}
	return c, r.Err()
}
