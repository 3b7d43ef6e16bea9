// Package config is the scaler's configuration: every environment variable
// the scaler reads is named here and nowhere else, and every value is checked
// once, at start-up, so that a bad compose file stops the scaler with a
// message naming the variable instead of misbehaving under load.
package config

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"lbscale/balancer/envconf"
	"lbscale/balancer/state"
	"lbscale/balancer/state/redisstore"
)

// Environment variable names (the design's contract; do not rename).
const (
	EnvRedisURL          = redisstore.EnvRedisURL // and REDIS_CA_FILE, REDIS_CERT_FILE, REDIS_KEY_FILE (state)
	EnvPool              = state.EnvPool
	EnvMinReplicas       = "MIN_REPLICAS"
	EnvMaxReplicas       = "MAX_REPLICAS"
	EnvMaxInflight       = "MAX_INFLIGHT"
	EnvTargetInflight    = "TARGET_INFLIGHT"
	EnvScaleUpCooldown   = "SCALE_UP_COOLDOWN"
	EnvIdleTimeout       = "IDLE_TIMEOUT"
	EnvScaleDownInterval = "SCALE_DOWN_INTERVAL"
	EnvDrainTimeout      = "DRAIN_TIMEOUT"
	EnvDrainSettle       = "DRAIN_SETTLE"
	EnvStopGrace         = "STOP_GRACE"
	EnvCPULimit          = "CPU_LIMIT"
	EnvMemoryLimit       = "MEMORY_LIMIT"
	EnvWebImage          = "WEB_IMAGE"
	EnvWebEnv            = "WEB_ENV"
	EnvWebPort           = "WEB_PORT"
	EnvNetwork           = "NETWORK"
	EnvDriver            = "SCALER_DRIVER"
	EnvWebConstraints    = "WEB_CONSTRAINTS"
	EnvHealthTimeout     = "HEALTH_TIMEOUT"
	EnvLeaseTTL          = "LEASE_TTL"
	EnvReconcileInterval = "RECONCILE_INTERVAL"
	EnvPollInterval      = "POLL_INTERVAL"
	EnvAdminAddr         = "ADMIN_ADDR"
	EnvAdminToken        = "ADMIN_TOKEN"
	EnvScalerID          = "SCALER_ID"
	EnvLogLevel          = "LOG_LEVEL"
	EnvScaleDown         = "SCALE_DOWN"
	EnvStableWindow      = "STABLE_WINDOW"
	EnvPanicWindow       = "PANIC_WINDOW"
	EnvMaxScaleDownRate  = "MAX_SCALE_DOWN_RATE"
	EnvBacklogDrain      = "BACKLOG_DRAIN"
	// EnvWebListenAddr is not read by the scaler: it is the web server's
	// variable, which the scaler sets in every container it starts so that
	// the server listens on WEB_PORT.
	EnvWebListenAddr = "LISTEN_ADDR"
)

// Driver names for SCALER_DRIVER.
const (
	DriverDocker = "docker"
	DriverSwarm  = "swarm"
)

// Scale-down rules for SCALE_DOWN.
const (
	// ScaleDownDemand shrinks the pool to what the stable window needed.
	ScaleDownDemand = "demand"
	// ScaleDownIdle stops only containers idle past IDLE_TIMEOUT (the rule
	// before demand-based scale-down, kept for comparison).
	ScaleDownIdle = "idle"
)

// DefaultTargetInflight is the per-container concurrency target when neither
// TARGET_INFLIGHT nor MAX_INFLIGHT is set; it matches the balancer's default
// MAX_INFLIGHT so that "saturated" and "needs another container" agree.
const DefaultTargetInflight = 4

// Config is everything the scaler is tuned by. Durations are Go durations.
type Config struct {
	// Redis is the shared state (REDIS_URL and its TLS files, see
	// redisstore.ReadConn); required, since a scaler without shared state
	// could neither tell balancers about backends nor see their load.
	Redis redisstore.Conn
	// Pool names the set of containers this scaler owns: it touches only
	// containers labelled lbscale.pool=<Pool>, and its Redis keys carry it.
	Pool string
	// MinReplicas and MaxReplicas bound the replica count at all times;
	// MinReplicas may be 0 (scale from zero on the first queued request).
	MinReplicas, MaxReplicas int
	// TargetInflight is the concurrency one container should carry; desired
	// replicas = ceil((in-flight + queued) / TargetInflight).
	TargetInflight int
	// ScaleUpCooldown is the least time between two scale-up decisions, so
	// that a burst measured twice does not start containers twice.
	ScaleUpCooldown time.Duration
	// IdleTimeout: a container with no request for this long, and nothing in
	// flight, may be scaled down.
	IdleTimeout time.Duration
	// ScaleDownSpec is the robfig/cron spec of the scale-down job.
	ScaleDownSpec string
	// DrainTimeout is the longest a draining container is waited for before
	// it is stopped anyway.
	DrainTimeout time.Duration
	// DrainSettle is the least time a container stays draining before it is
	// stopped, so that every balancer has synced and stopped picking it even
	// when in-flight already reads 0.
	DrainSettle time.Duration
	// StopGrace is how long a stopped container gets between SIGTERM and
	// SIGKILL to finish its in-flight requests.
	StopGrace time.Duration
	// NanoCPUs and MemoryBytes limit each web container (0: no limit).
	NanoCPUs    int64
	MemoryBytes int64
	// WebImage, WebEnv and WebPort describe the web-server containers.
	WebImage string
	WebEnv   []string
	WebPort  int
	// Network is the Docker network containers join; their address there is
	// what balancers dial.
	Network string
	// Driver is the orchestration back end: DriverDocker (one engine) or
	// DriverSwarm (a swarm's manager; one service per web replica).
	Driver string
	// WebConstraints are Swarm placement constraints of every web service
	// (e.g. node.labels.tier==web), from the comma-separated
	// WEB_CONSTRAINTS; swarm driver only.
	WebConstraints []string
	// HealthTimeout bounds create → healthy; a container slower than this is
	// removed and counted as a failed start.
	HealthTimeout time.Duration
	// LeaseTTL is the leader lease; a dead leader is replaced within it.
	LeaseTTL time.Duration
	// ReconcileInterval is the period of the full Docker ↔ registry repair
	// (Docker events trigger one at once as well).
	ReconcileInterval time.Duration
	// PollInterval is how often the leader reads the cluster load, so that a
	// lost demand message only delays a scale-up by this much.
	PollInterval time.Duration
	// AdminAddr serves /healthz, /status, /metrics and the dashboard at /.
	AdminAddr string
	// AdminToken, when set, is the bearer token /status, /metrics and the
	// dashboard's stream want (the page itself holds no data).
	AdminToken string
	// ID identifies this scaler in the lease; unique per process.
	ID string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// ScaleDown is the scale-down rule: ScaleDownDemand or ScaleDownIdle.
	// The idle rule applies under both; it alone takes a pool to zero.
	ScaleDown string
	// StableWindow is how far back a demand scale-down looks: the pool
	// shrinks to the most any moment of it needed.
	StableWindow time.Duration
	// PanicWindow smooths the steady demand a scale-up sizes from.
	PanicWindow time.Duration
	// MaxScaleDownRate bounds one scale-down decision: at least
	// floor(ready / rate) stay.
	MaxScaleDownRate float64
	// BacklogDrain is the time a queue should take to drain; a scale-up
	// sizes the backlog's share of the pool by it.
	BacklogDrain time.Duration
}

// Load reads and validates the configuration; the error names every bad
// variable. main passes os.LookupEnv and calls envconf.Exit on error.
func Load(lookup func(string) (string, bool)) (Config, error) {
	if lookup == nil {
		// As envconf.New: nil reads the process environment. Load calls
		// lookup itself below, which would otherwise panic.
		lookup = os.LookupEnv
	}
	r := envconf.New(lookup)
	var c Config

	c.Redis = redisstore.ReadConn(r)
	if c.Redis.URL == "" {
		r.Fail(EnvRedisURL, "is required (e.g. redis://redis:6379/0): the scaler publishes the registry and reads the load there")
	}
	c.Pool = r.String(EnvPool, "web")
	if err := state.CheckPool(c.Pool); err != nil {
		r.Fail(EnvPool, "%v", err)
	}
	c.MinReplicas = r.Int(EnvMinReplicas, 1, 0, 1000)
	c.MaxReplicas = r.Int(EnvMaxReplicas, 10, 1, 1000)
	if c.MaxReplicas < c.MinReplicas {
		r.Fail(EnvMaxReplicas, "%d is below MIN_REPLICAS=%d", c.MaxReplicas, c.MinReplicas)
	}
	// The same range as the balancer's MAX_INFLIGHT: compose passes one value
	// to both.
	maxInflight := r.Int(EnvMaxInflight, DefaultTargetInflight, 1, 1<<20)
	c.TargetInflight = r.Int(EnvTargetInflight, maxInflight, 1, 1<<20)
	if _, set := lookup(EnvMaxInflight); set && c.TargetInflight > maxInflight {
		// A container can never carry more than MAX_INFLIGHT, so such a
		// target would leave requests queued without scaling up.
		r.Fail(EnvTargetInflight, "%d is above MAX_INFLIGHT=%d: a container never carries more than MAX_INFLIGHT", c.TargetInflight, maxInflight)
	}
	c.ScaleUpCooldown = r.Duration(EnvScaleUpCooldown, time.Second, 0, time.Hour)
	c.IdleTimeout = r.Duration(EnvIdleTimeout, 60*time.Second, 100*time.Millisecond, 7*24*time.Hour)
	c.ScaleDownSpec = scheduleSpec(r, EnvScaleDownInterval, "@every 10s")
	c.DrainTimeout = r.Duration(EnvDrainTimeout, 30*time.Second, 0, time.Hour)
	c.DrainSettle = r.Duration(EnvDrainSettle, time.Second, 0, 10*time.Minute)
	if c.DrainTimeout < c.DrainSettle {
		// The drain would time out before every balancer has seen the
		// container draining, and it would be stopped under their feet.
		r.Fail(EnvDrainTimeout, "%s is below DRAIN_SETTLE=%s", c.DrainTimeout, c.DrainSettle)
	}
	c.StopGrace = r.Duration(EnvStopGrace, 10*time.Second, 0, 10*time.Minute)
	cpu := r.Float(EnvCPULimit, 0, 0, 1024)
	if cpu > 0 && cpu < 0.01 {
		r.Fail(EnvCPULimit, "%g is below Docker's minimum of 0.01 CPU (0 means no limit)", cpu)
		cpu = 0
	}
	c.NanoCPUs = int64(cpu * 1e9)
	c.MemoryBytes = memory(r, EnvMemoryLimit)
	c.WebImage = r.String(EnvWebImage, "lbscale/webserver:local")
	c.WebPort = r.Int(EnvWebPort, 8080, 1, 65535)
	c.WebEnv = webEnv(r, EnvWebEnv, c.WebPort)
	c.Network = r.String(EnvNetwork, "bridge")
	c.Driver = r.OneOf(EnvDriver, DriverDocker, DriverDocker, DriverSwarm)
	c.WebConstraints = constraints(r, EnvWebConstraints)
	switch {
	case c.Driver == DriverDocker && len(c.WebConstraints) > 0:
		// A plain engine has no placement: silently ignoring the
		// constraint would put web servers where the user said not to.
		r.Fail(EnvWebConstraints, "set, but placement constraints need %s=%s", EnvDriver, DriverSwarm)
	case c.Driver == DriverSwarm && c.Network == "bridge":
		// Tasks on other nodes are only reachable on an overlay network.
		r.Fail(EnvNetwork, "%q cannot carry a swarm's web tasks: name an attachable overlay network (compose/stack.yml makes one)", c.Network)
	}
	c.HealthTimeout = r.Duration(EnvHealthTimeout, 30*time.Second, 100*time.Millisecond, 10*time.Minute)
	c.LeaseTTL = r.Duration(EnvLeaseTTL, 5*time.Second, 300*time.Millisecond, 10*time.Minute)
	c.ReconcileInterval = r.Duration(EnvReconcileInterval, 2*time.Second, 50*time.Millisecond, time.Hour)
	c.PollInterval = r.Duration(EnvPollInterval, 250*time.Millisecond, 10*time.Millisecond, time.Minute)
	c.AdminAddr = r.Addr(EnvAdminAddr, ":9090")
	c.AdminToken = r.String(EnvAdminToken, "")
	c.ID = r.String(EnvScalerID, defaultID())
	c.LogLevel = r.OneOf(EnvLogLevel, "info", "debug", "info", "warn", "error")
	c.ScaleDown = r.OneOf(EnvScaleDown, ScaleDownDemand, ScaleDownDemand, ScaleDownIdle)
	c.StableWindow = r.Duration(EnvStableWindow, 60*time.Second, time.Second, 24*time.Hour)
	c.PanicWindow = r.Duration(EnvPanicWindow, 6*time.Second, 100*time.Millisecond, time.Hour)
	if c.PanicWindow > c.StableWindow {
		r.Fail(EnvPanicWindow, "%s is longer than STABLE_WINDOW=%s", c.PanicWindow, c.StableWindow)
	}
	c.MaxScaleDownRate = r.Float(EnvMaxScaleDownRate, 2, 1, 1000)
	c.BacklogDrain = r.Duration(EnvBacklogDrain, 2*time.Second, 100*time.Millisecond, time.Hour)
	return c, r.Err()
}

// defaultID is hostname-pid: unique per process on one host, and readable in
// the lease key when someone asks "which scaler leads?".
func defaultID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "scaler"
	}
	return h + "-" + strconv.Itoa(os.Getpid())
}

// scheduleSpec accepts a cron spec ("*/10 * * * *", "@every 10s") or a bare
// Go duration ("10s", meaning @every 10s).
func scheduleSpec(r *envconf.Reader, name, def string) string {
	v := r.String(name, def)
	if d, err := time.ParseDuration(v); err == nil {
		if d < time.Second {
			// robfig/cron's @every has a resolution of one second.
			r.Fail(name, "%q is shorter than 1s", v)
			return def
		}
		v = "@every " + d.String()
	}
	if _, err := cron.ParseStandard(v); err != nil {
		r.Fail(name, "%q is neither a Go duration nor a cron spec (e.g. @every 10s, */1 * * * *): %v", v, err)
		return def
	}
	return v
}

// memSize is a Docker-style size: a byte count with an optional binary
// unit (512k, 128m, 1g, 1gb).
var memSize = regexp.MustCompile(`^([0-9]+)(b|k|kb|m|mb|g|gb)?$`)

// memory parses Docker-style sizes: 134217728, 512k, 128m, 1g (binary
// units, as docker run --memory). Docker refuses limits below 6 MiB.
func memory(r *envconf.Reader, name string) int64 {
	v := strings.ToLower(r.String(name, ""))
	if v == "" || v == "0" {
		return 0
	}
	m := memSize.FindStringSubmatch(v)
	if m == nil {
		r.Fail(name, "%q is not a size like 128m, 1g or a byte count", v)
		return 0
	}
	mult := map[string]int64{"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30}[m[2]]
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/mult {
		r.Fail(name, "%q is not a size from 6m to 1024g", v)
		return 0
	}
	if n*mult < 6<<20 {
		r.Fail(name, "%q is below Docker's minimum of 6m", v)
		return 0
	}
	return n * mult
}

// envKey is a portable environment variable name.
var envKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// webEnv parses WEB_ENV (KEY=VALUE,KEY=VALUE) and adds LISTEN_ADDR=:port
// unless the list sets it, so that the server listens where the scaler
// health-checks and balancers dial.
func webEnv(r *envconf.Reader, name string, port int) []string {
	var out []string
	listen := false
	for _, kv := range r.List(name) {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || !envKey.MatchString(k) {
			r.Fail(name, "%q is not KEY=VALUE", kv)
			continue
		}
		if k == EnvWebListenAddr {
			// The scaler health-checks and balancers dial WEB_PORT: a web
			// server listening elsewhere would fail every start.
			_, v, _ := strings.Cut(kv, "=")
			if _, p, err := net.SplitHostPort(v); err != nil || p != strconv.Itoa(port) {
				r.Fail(name, "%q must listen on WEB_PORT=%d (e.g. LISTEN_ADDR=:%d)", kv, port, port)
			}
			listen = true
		}
		out = append(out, kv)
	}
	if !listen {
		out = append(out, fmt.Sprintf("%s=:%d", EnvWebListenAddr, port))
	}
	return out
}

// constraintExpr is a Swarm placement constraint: a node attribute, == or
// !=, and a value (node.role==manager, node.labels.zone!=eu-1).
var constraintExpr = regexp.MustCompile(`^\s*[A-Za-z][A-Za-z0-9_.\-]*\s*(==|!=)\s*[^=!\s][^=!]*$`)

// constraints reads name as a comma-separated list of placement
// constraints, refusing any that Swarm would refuse only at the first
// scale-up (a typo then stops the pool from growing under load).
func constraints(r *envconf.Reader, name string) []string {
	var out []string
	for _, c := range r.List(name) {
		if !constraintExpr.MatchString(c) {
			r.Fail(name, "%q is not a placement constraint (attribute==value or attribute!=value, e.g. node.role==worker)", c)
			continue
		}
		out = append(out, strings.TrimSpace(c))
	}
	return out
}
