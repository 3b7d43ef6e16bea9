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

	"lbscale/internal/envconf"
	"lbscale/internal/poolfile"
	"lbscale/internal/state"
	"lbscale/internal/state/redisstore"
	"lbscale/scaler/cronspec"
	"lbscale/scaler/forecast"
)

// Environment variable names (the design's contract; do not rename).
const (
	EnvRedisURL          = redisstore.EnvRedisURL // and REDIS_CA_FILE, REDIS_CERT_FILE, REDIS_KEY_FILE (state)
	EnvPool              = state.EnvPool
	EnvConfig            = poolfile.EnvConfig
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
	EnvHealthPath        = "HEALTH_PATH"
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
	EnvLatencyTarget     = "LATENCY_TARGET"
	EnvTargetConns       = "TARGET_CONNECTIONS"
	EnvConnDrain         = "CONNECTION_DRAIN"
	EnvDeploySurge       = "DEPLOY_SURGE"
	EnvCanaryRequests    = "DEPLOY_CANARY_REQUESTS"
	EnvCanaryTime        = "DEPLOY_CANARY_TIME"
	EnvCanaryErrorRate   = "DEPLOY_MAX_ERROR_RATE"
	EnvCanaryLatency     = "DEPLOY_MAX_LATENCY"
	EnvMinSchedule       = "MIN_SCHEDULE"
	EnvForecast          = "FORECAST"
	EnvForecastBucket    = "FORECAST_BUCKET"
	EnvForecastPeriod    = "FORECAST_PERIOD"
	EnvForecastDays      = "FORECAST_DAYS"
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

// Values of FORECAST.
const (
	ForecastOff = "off"
	ForecastOn  = "on"
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
	// HealthPath is what the start gate probes (GET, 200 is healthy). It is
	// the balancers' HEALTH_PATH too, one value for both: an image without
	// /healthz (go-httpbin answers /status/200) would otherwise never pass
	// the gate, and each try would cost a container and HEALTH_TIMEOUT.
	HealthPath string
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
	// BacklogDrain is the time a queue should take to drain once the
	// containers started for it are ready; a scale-up sizes the backlog's
	// share of the pool by it.
	BacklogDrain time.Duration
	// LatencyTarget is the 99th-percentile queue wait the pool is sized
	// for: the headroom random arrivals need for it (square-root
	// staffing); 0: none.
	LatencyTarget time.Duration
	// TargetConns is the long-lived connections (WebSocket, event
	// streams) one container should carry; 0: they do not size the pool.
	TargetConns int
	// ConnDrain is how long a draining container's open long-lived
	// connections are given, from the drain's start, before it gets
	// SIGTERM: time for the application, or the clients, to close them.
	ConnDrain time.Duration
	// DeploySurge is the share of the pool (percent) a deploy starts at
	// once on the new image, at least one container.
	DeploySurge float64
	// A deploy's canary is judged once it served CanaryRequests requests
	// or CanaryTime passed since it became ready: it fails when its
	// failure share exceeds the old containers' by CanaryErrorRate, or its
	// mean service time is over CanaryLatency times theirs.
	CanaryRequests  int
	CanaryTime      time.Duration
	CanaryErrorRate float64
	CanaryLatency   float64
	// MinSchedule raises the pool's minimum at the times it names
	// (MIN_SCHEDULE): the floor is the largest active entry's replicas,
	// never below MinReplicas nor above MaxReplicas.
	MinSchedule forecast.Schedule
	// Forecast turns the learned floor on: the pool's arrival rate is
	// recorded per ForecastBucket of each ForecastPeriod, and the highest
	// rate of the last ForecastDays periods at the same time of the
	// period, one cold start ahead, sizes a floor.
	Forecast       bool
	ForecastBucket time.Duration
	ForecastPeriod time.Duration
	ForecastDays   int
}

// Bucketing is the learned floor's division of time.
func (c Config) Bucketing() forecast.Bucketing {
	return forecast.Bucketing{Bucket: c.ForecastBucket, Period: c.ForecastPeriod, Days: c.ForecastDays}
}

// Vars declares every variable the scaler reads: name, default, range
// and meaning, once. Load reads through it, -h prints it, and
// TestDocsMatchVars holds docs/configuration.md to it.
var Vars = envconf.Join(envconf.Table{
	{Name: EnvConfig, Help: "the pool file (YAML): one controller, lease and set of containers per pool, each pool's settings over these variables; reloaded without a restart when it changes. Unset: one pool, POOL, from these variables"},
	{Name: EnvPool, Default: "web", Help: "the pool it owns: it only ever touches containers labelled lbscale.pool=<POOL>"},
	{Name: EnvMinReplicas, Default: 1, Min: 0, Max: 1000, Help: "never fewer ready containers; 0 scales from zero"},
	{Name: EnvMaxReplicas, Default: 10, Min: 1, Max: 1000, Help: "never more containers, starting, draining and stopping ones included"},
	{Name: EnvMaxInflight, Default: DefaultTargetInflight, Min: 1, Max: 1 << 20, Help: "the balancers' per-backend limit (compose passes one value to both): TARGET_INFLIGHT's default and ceiling"},
	{Name: EnvTargetInflight, Min: 1, Max: 1 << 20, Shown: "MAX_INFLIGHT, else 4", Help: "requests one container should carry (≤ MAX_INFLIGHT); see Autoscaling"},
	{Name: EnvScaleUpCooldown, Default: time.Duration(0), Min: time.Duration(0), Max: time.Hour, Help: "least time between scale-up decisions that start containers; 0: none, a scale-up counts the containers already starting"},
	{Name: EnvIdleTimeout, Default: 60 * time.Second, Min: 100 * time.Millisecond, Max: 7 * 24 * time.Hour, Help: "a container with no request for this long and nothing in flight may be stopped; the only rule that takes a pool below one container (MIN_REPLICAS=0)"},
	{Name: EnvDrainTimeout, Default: 30 * time.Second, Min: time.Duration(0), Max: time.Hour, Help: "longest wait for a draining container's in-flight to reach 0 (≥ DRAIN_SETTLE)"},
	{Name: EnvDrainSettle, Default: time.Second, Min: time.Duration(0), Max: 10 * time.Minute, Help: "least time draining before stopping, so every balancer has seen it; the scaler also waits two of the slowest live balancer's SYNC_INTERVALs (balancers publish theirs)"},
	{Name: EnvStopGrace, Default: 10 * time.Second, Min: time.Duration(0), Max: 10 * time.Minute, Help: "SIGTERM → SIGKILL grace for a stopped container"},
	{Name: EnvCPULimit, Default: float64(0), Min: float64(0), Max: float64(1024), Help: "CPUs per web container (0.5; 0 or at least 0.01)"},
	{Name: EnvWebImage, Default: "lbscale/webserver:local", Help: "image of the web servers"},
	{Name: EnvWebPort, Default: 8080, Min: 1, Max: 65535, Help: "port the web servers listen on"},
	{Name: EnvNetwork, Default: "bridge", Help: "Docker network of the web containers (compose sets lbscale); with swarm, an attachable overlay network (the stack makes lbscale-web)"},
	{Name: EnvDriver, Default: DriverDocker, OneOf: []string{DriverDocker, DriverSwarm}, Help: "orchestration back end: docker (one engine, one container per web replica) or swarm (a swarm manager, one single-replica service per web replica; see docs/scaling-out.md)"},
	{Name: EnvHealthTimeout, Default: 30 * time.Second, Min: 100 * time.Millisecond, Max: 10 * time.Minute, Help: "create → healthy; slower starts are removed and counted as failures"},
	{Name: EnvHealthPath, Default: "/healthz", Help: "path the start gate probes on a new container (GET must answer 200); the balancers' HEALTH_PATH, one value for both"},
	{Name: EnvLeaseTTL, Default: 5 * time.Second, Min: 300 * time.Millisecond, Max: 10 * time.Minute, Help: "leader lease, renewed every TTL/3; a follower campaigns every TTL/6 and the moment the leader's lease runs out, so a dead leader is replaced within the TTL; one failed renewal is retried while the lease lasts"},
	{Name: EnvReconcileInterval, Default: 2 * time.Second, Min: 50 * time.Millisecond, Max: time.Hour, Help: "full Docker ↔ registry repair (Docker events also trigger one)"},
	{Name: EnvPollInterval, Default: 250 * time.Millisecond, Min: 10 * time.Millisecond, Max: time.Minute, Help: "how often the leader reads the cluster load (covers lost demand messages)"},
	{Name: EnvAdminAddr, Default: ":9090", Help: "the live dashboard at /, /status, /metrics, /healthz; with several pools, ?pool=NAME picks one on / and /status (default: the pool file's first), /metrics holds them all"},
	{Name: EnvAdminToken, Help: "when set, /status, /metrics and the dashboard's data stream (/dashboard/stream) require Authorization: Bearer <token>; the page asks for it"},
	{Name: EnvScalerID, Shown: "hostname-pid", Help: "names the scaler in /status and its containers' lbscale.created-by label (compose: scaler-a, scaler-b); in the lease, the logs and leader_id each process is SCALER_ID/ and 8 hex digits of its own"},
	{Name: EnvLogLevel, Default: "info", OneOf: []string{"debug", "info", "warn", "error"}, Help: "log level"},
	{Name: EnvScaleDown, Default: ScaleDownDemand, OneOf: []string{ScaleDownDemand, ScaleDownIdle}, Help: "scale-down rule: demand drains what the stable window did not need; idle only stops idle containers (the rule before demand, kept for comparison). IDLE_TIMEOUT applies under both"},
	{Name: EnvStableWindow, Default: 60 * time.Second, Min: time.Second, Max: 24 * time.Hour, Help: "a scale-down shrinks the pool to the most any moment of this window needed (1s…24h)"},
	{Name: EnvPanicWindow, Default: 6 * time.Second, Min: 100 * time.Millisecond, Max: time.Hour, Help: "a scale-up sizes from the mean steady demand over this window, or at once from the latest reading while requests queue (100ms…STABLE_WINDOW)"},
	{Name: EnvMaxScaleDownRate, Default: float64(2), Min: float64(1), Max: float64(1000), Help: "one scale-down decision leaves at least floor(ready / rate) ready containers (1…1000; 1: the surplus rule never shrinks, idleness still may)"},
	{Name: EnvBacklogDrain, Default: 2 * time.Second, Min: 100 * time.Millisecond, Max: time.Hour, Help: "time a queue should take to drain once the containers started for it are ready: the backlog's share of a scale-up (100ms…1h)"},
	{Name: EnvLatencyTarget, Default: 200 * time.Millisecond, Min: time.Duration(0), Max: time.Hour, Help: "99th-percentile queue wait the pool is sized for: the headroom random arrivals need (square-root staffing); 0: none, the pool runs at TARGET_INFLIGHT (0…1h)"},
	{Name: EnvTargetConns, Default: 100, Min: 0, Max: 1 << 20, Help: "long-lived connections (WebSocket, server-sent events, streams) one container should carry: the pool grows for them as for requests; 0: they do not size the pool"},
	{Name: EnvConnDrain, Default: 30 * time.Second, Min: time.Duration(0), Max: time.Hour, Help: "a draining container (scale-down, deploy) takes no new connection; its open long-lived connections get this long from the drain's start before SIGTERM"},
	{Name: EnvDeploySurge, Default: float64(25), Min: float64(1), Max: float64(100), Help: "share of the pool (percent) a deploy starts at once on the new image, at least one container; the pool never has fewer ready containers than when the deploy began"},
	{Name: EnvCanaryRequests, Default: 50, Min: 1, Max: 1 << 20, Help: "a deploy's first new container (the canary) is judged once it has served this many requests (or DEPLOY_CANARY_TIME passed)"},
	{Name: EnvCanaryTime, Default: 60 * time.Second, Min: time.Second, Max: 24 * time.Hour, Help: "longest watch of the canary; then it is judged on what it served (nothing served: its health gate alone)"},
	{Name: EnvCanaryErrorRate, Default: 0.05, Min: float64(0), Max: float64(1), Help: "the canary fails when its share of failed requests (5xx, gateway failures) exceeds the old containers' by more than this; the deploy then rolls back by itself"},
	{Name: EnvCanaryLatency, Default: float64(2), Min: float64(1), Max: float64(1000), Help: "the canary fails when its mean service time is over this many times the old containers' (means under 5ms are not compared)"},
	{Name: EnvMinSchedule, Help: "scheduled minimum: ;-separated entries <cron spec> <duration> <replicas> (5-field cron, CRON_TZ=<zone> prefix allowed, else local time), e.g. 0 8 * * 1-5 10h 4; 0 20 * * * 30m 2. While an entry's schedule fired within its duration the pool keeps at least its replicas (the largest active entry; ≤ MAX_REPLICAS)"},
	{Name: EnvForecast, Default: ForecastOff, OneOf: []string{ForecastOff, ForecastOn}, Help: "learned floor: on records the pool's arrival rate per FORECAST_BUCKET of each FORECAST_PERIOD (in Redis) and keeps, one cold start ahead, the containers the highest rate of the last FORECAST_DAYS periods at that time needs"},
	{Name: EnvForecastBucket, Default: 5 * time.Minute, Min: 10 * time.Second, Max: time.Hour, Help: "the learned floor's resolution: the arrival rate's mean per bucket (whole seconds, 10s…1h; FORECAST_PERIOD a multiple of it)"},
	{Name: EnvForecastPeriod, Default: 24 * time.Hour, Min: time.Minute, Max: 31 * 24 * time.Hour, Help: "the learned floor's cycle, counted from 00:00 UTC: 24h compares days, 168h weeks (1m…744h)"},
	{Name: EnvForecastDays, Default: 7, Min: 1, Max: 90, Help: "how many past FORECAST_PERIODs the learned floor reads (the highest of them counts); older buckets are dropped"},
	{Name: EnvScaleDownInterval, Default: "@every 10s", Help: "how often the scale-down job runs: a cron spec or a Go duration (≥ 1s)"},
	{Name: EnvMemoryLimit, Help: "memory per web container (128m, 1g; at least 6m); none by default"},
	{Name: EnvWebEnv, Help: "comma-separated KEY=VALUE list given to every web container (e.g. CAPACITY=2,SLEEP_MS=300)"},
	{Name: EnvWebConstraints, Help: "swarm only: comma-separated placement constraints of the web tasks (node.role==worker)"},
}, redisstore.ConnVars)

// Load reads and validates the configuration; the error names every bad
// variable. main passes os.LookupEnv and calls envconf.Exit on error.
func Load(lookup func(string) (string, bool)) (Config, error) {
	if lookup == nil {
		// As envconf.New: nil reads the process environment. Load calls
		// lookup itself below, which would otherwise panic.
		lookup = os.LookupEnv
	}
	r := envconf.New(lookup, Vars)
	var c Config

	c.Redis = redisstore.ReadConn(r)
	if c.Redis.URL == "" {
		r.Fail(EnvRedisURL, "is required (e.g. redis://redis:6379/0): the scaler publishes the registry and reads the load there")
	}
	c.Pool = r.String(EnvPool)
	if err := state.CheckPool(c.Pool); err != nil {
		r.Fail(EnvPool, "%v", err)
	}
	c.MinReplicas = r.Int(EnvMinReplicas)
	c.MaxReplicas = r.Int(EnvMaxReplicas)
	if c.MaxReplicas < c.MinReplicas {
		r.Fail(EnvMaxReplicas, "%d is below MIN_REPLICAS=%d", c.MaxReplicas, c.MinReplicas)
	}
	// The same range as the balancer's MAX_INFLIGHT: compose passes one value
	// to both.
	maxInflight := r.Int(EnvMaxInflight)
	c.TargetInflight = r.IntOr(EnvTargetInflight, maxInflight)
	if _, set := lookup(EnvMaxInflight); set && c.TargetInflight > maxInflight {
		// A container can never carry more than MAX_INFLIGHT, so such a
		// target would leave requests queued without scaling up.
		r.Fail(EnvTargetInflight, "%d is above MAX_INFLIGHT=%d: a container never carries more than MAX_INFLIGHT", c.TargetInflight, maxInflight)
	}
	c.ScaleUpCooldown = r.Duration(EnvScaleUpCooldown)
	c.IdleTimeout = r.Duration(EnvIdleTimeout)
	c.ScaleDownSpec = scheduleSpec(r, EnvScaleDownInterval)
	c.DrainTimeout = r.Duration(EnvDrainTimeout)
	c.DrainSettle = r.Duration(EnvDrainSettle)
	if c.DrainTimeout < c.DrainSettle {
		// The drain would time out before every balancer has seen the
		// container draining, and it would be stopped under their feet.
		r.Fail(EnvDrainTimeout, "%s is below DRAIN_SETTLE=%s", c.DrainTimeout, c.DrainSettle)
	}
	c.StopGrace = r.Duration(EnvStopGrace)
	cpu := r.Float(EnvCPULimit)
	if cpu > 0 && cpu < 0.01 {
		r.Fail(EnvCPULimit, "%g is below Docker's minimum of 0.01 CPU (0 means no limit)", cpu)
		cpu = 0
	}
	c.NanoCPUs = int64(cpu * 1e9)
	c.MemoryBytes = memory(r, EnvMemoryLimit)
	c.WebImage = r.String(EnvWebImage)
	c.WebPort = r.Int(EnvWebPort)
	c.WebEnv = webEnv(r, EnvWebEnv, c.WebPort)
	c.Network = r.String(EnvNetwork)
	c.Driver = r.OneOf(EnvDriver)
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
	c.HealthTimeout = r.Duration(EnvHealthTimeout)
	c.HealthPath = r.String(EnvHealthPath)
	if !strings.HasPrefix(c.HealthPath, "/") {
		r.Fail(EnvHealthPath, "%q must start with /", c.HealthPath)
	}
	c.LeaseTTL = r.Duration(EnvLeaseTTL)
	c.ReconcileInterval = r.Duration(EnvReconcileInterval)
	c.PollInterval = r.Duration(EnvPollInterval)
	c.AdminAddr = r.Addr(EnvAdminAddr)
	c.AdminToken = r.String(EnvAdminToken)
	c.ID = r.StringOr(EnvScalerID, defaultID())
	c.LogLevel = r.OneOf(EnvLogLevel)
	c.ScaleDown = r.OneOf(EnvScaleDown)
	c.StableWindow = r.Duration(EnvStableWindow)
	c.PanicWindow = r.Duration(EnvPanicWindow)
	if c.PanicWindow > c.StableWindow {
		r.Fail(EnvPanicWindow, "%s is longer than STABLE_WINDOW=%s", c.PanicWindow, c.StableWindow)
	}
	c.MaxScaleDownRate = r.Float(EnvMaxScaleDownRate)
	c.BacklogDrain = r.Duration(EnvBacklogDrain)
	c.LatencyTarget = r.Duration(EnvLatencyTarget)
	c.TargetConns = r.Int(EnvTargetConns)
	c.ConnDrain = r.Duration(EnvConnDrain)
	c.DeploySurge = r.Float(EnvDeploySurge)
	c.CanaryRequests = r.Int(EnvCanaryRequests)
	c.CanaryTime = r.Duration(EnvCanaryTime)
	c.CanaryErrorRate = r.Float(EnvCanaryErrorRate)
	c.CanaryLatency = r.Float(EnvCanaryLatency)
	c.MinSchedule = minSchedule(r, EnvMinSchedule, c.MaxReplicas)
	c.Forecast = r.OneOf(EnvForecast) == ForecastOn
	c.ForecastBucket = r.Duration(EnvForecastBucket)
	c.ForecastPeriod = r.Duration(EnvForecastPeriod)
	c.ForecastDays = r.Int(EnvForecastDays)
	switch {
	case c.ForecastBucket%time.Second != 0:
		// The store keys a bucket by its start in whole seconds.
		r.Fail(EnvForecastBucket, "%s is not a whole number of seconds", c.ForecastBucket)
	case c.ForecastPeriod%c.ForecastBucket != 0 || c.ForecastPeriod < 2*c.ForecastBucket:
		// A bucket across two periods would compare different times of day.
		r.Fail(EnvForecastPeriod, "%s is not a multiple (of at least 2) of FORECAST_BUCKET=%s", c.ForecastPeriod, c.ForecastBucket)
	}
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
func scheduleSpec(r *envconf.Reader, name string) string {
	v := r.String(name)
	def := Vars.Var(name).DefaultText()
	if d, err := time.ParseDuration(v); err == nil {
		if d < time.Second {
			// robfig/cron's @every has a resolution of one second.
			r.Fail(name, "%q is shorter than 1s", v)
			return def
		}
		v = "@every " + d.String()
	}
	if _, err := cronspec.Parse(v); err != nil {
		r.Fail(name, "%q is neither a Go duration nor a cron spec (e.g. @every 10s, */1 * * * *): %v", v, err)
		return def
	}
	return v
}

// minSchedule parses MIN_SCHEDULE (forecast.ParseSchedule); an entry
// above MAX_REPLICAS is refused rather than cut, since it says the pool
// needs more than it may ever have.
func minSchedule(r *envconf.Reader, name string, most int) forecast.Schedule {
	s, err := forecast.ParseSchedule(r.String(name))
	if err != nil {
		r.Fail(name, "%v (e.g. 0 8 * * 1-5 10h 4; 0 20 * * * 30m 2)", err)
		return forecast.Schedule{}
	}
	if n := s.Most(); n > most {
		r.Fail(name, "an entry asks for %d replicas, above MAX_REPLICAS=%d", n, most)
	}
	return s
}

// memSize is a Docker-style size: a byte count with an optional binary
// unit (512k, 128m, 1g, 1gb).
var memSize = regexp.MustCompile(`^([0-9]+)(b|k|kb|m|mb|g|gb)?$`)

// memory parses Docker-style sizes: 134217728, 512k, 128m, 1g (binary
// units, as docker run --memory). Docker refuses limits below 6 MiB.
func memory(r *envconf.Reader, name string) int64 {
	v := strings.ToLower(r.String(name))
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
