// Package config loads and validates the balancer's configuration from the
// environment. Every variable the balancer reads is named here and nowhere
// else.
package config

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"lbscale/balancer/policy"
	"lbscale/balancer/tlsterm"
	"lbscale/internal/envconf"
	"lbscale/internal/poolfile"
	"lbscale/internal/state"
	"lbscale/internal/state/redisstore"
)

// The TLS settings of the proxy listener (the design's contract names the
// first two).
const (
	EnvTLSCertFile     = "TLS_CERT_FILE"
	EnvTLSKeyFile      = "TLS_KEY_FILE"
	EnvTLSRedirectAddr = "TLS_REDIRECT_ADDR"
)

// RETRY_ON: the answers after which an idempotent request is retried on
// another backend. The default is Envoy's retry_on 5xx without 501 (Not
// Implemented will not change elsewhere) and without 505 and the rarer ones.
const (
	EnvRetryOn     = "RETRY_ON"
	DefaultRetryOn = "500,502,503,504"
	retryOnNone    = "none"
)

// ParseRetryOn reads RETRY_ON: "none", or comma-separated status codes from
// 500 to 599 (a 4xx is the client's doing and would fail anywhere).
func ParseRetryOn(v string) ([]int, error) {
	if strings.TrimSpace(v) == retryOnNone {
		return []int{}, nil
	}
	var codes []int
	for item := range strings.SplitSeq(v, ",") {
		item = strings.TrimSpace(item)
		n, err := strconv.Atoi(item)
		if err != nil || n < 500 || n > 599 {
			return nil, fmt.Errorf("%q: want %s or comma-separated status codes from 500 to 599, e.g. %s", item, retryOnNone, DefaultRetryOn)
		}
		codes = append(codes, n)
	}
	return codes, nil
}

// Static is one BACKENDS entry.
type Static struct {
	Addr   string
	Weight int
}

// Config is the balancer's whole configuration.
type Config struct {
	ListenAddr      string        // LISTEN_ADDR: proxy port
	AdminAddr       string        // ADMIN_ADDR: /status, /metrics, /healthz
	Backends        []Static      // BACKENDS: host:port[=weight],...; static pool
	Pool            string        // POOL: which registry in Redis (without a pool file)
	PoolFile        string        // LBSCALE_CONFIG: the pool file; empty for one pool from the environment
	Policy          string        // LB_POLICY
	HashKey         string        // HASH_KEY: ip | path | url | header:<Name> | cookie:<Name>
	HashLoadFactor  float64       // HASH_LOAD_FACTOR: bounded-loads factor c
	TrustForwarded  bool          // TRUST_FORWARDED_FOR: hash by the first X-Forwarded-For hop
	StickyCookie    string        // STICKY_COOKIE: the sticky policy's cookie
	MaxInflight     int64         // MAX_INFLIGHT: per backend, cluster-wide
	QueueMax        int           // QUEUE_MAX: requests waiting for a slot
	QueueTimeout    time.Duration // QUEUE_TIMEOUT: longest wait before 503
	ShareState      bool          // SHARE_STATE: share counts and slots through the store
	SyncInterval    time.Duration // SYNC_INTERVAL
	AdminToken      string        // ADMIN_TOKEN: bearer token for admin endpoints
	DashboardURL    string        // DASHBOARD_URL: the scalers' live page, named in /status for loadtest and people
	BalancerID      string        // BALANCER_ID: unique per replica
	HealthInterval  time.Duration // HEALTH_INTERVAL: active checks
	HealthPath      string        // HEALTH_PATH
	SlowStart       time.Duration // SLOW_START: ramp for new backends
	UpstreamTimeout time.Duration // UPSTREAM_TIMEOUT: per-try wait for response headers
	LoadInterval    time.Duration // LOAD_INTERVAL: /load polling for least-loaded
	ShutdownTimeout time.Duration // SHUTDOWN_TIMEOUT
	LogLevel        string        // LOG_LEVEL

	// Redis (REDIS_URL, REDIS_CA_FILE, REDIS_CERT_FILE, REDIS_KEY_FILE) is
	// the shared store; an empty URL means the in-memory store.
	Redis redisstore.Conn

	// The client edge (docs/architecture.md, the edge): what one client may hold or send.
	ClientHeaderTimeout time.Duration // CLIENT_HEADER_TIMEOUT: wait for a request's headers
	ClientIdleTimeout   time.Duration // CLIENT_IDLE_TIMEOUT: keep-alive connection with no request
	ClientBodyTimeout   time.Duration // CLIENT_BODY_TIMEOUT: buffered body whole, streamed body per read (408)
	BodyBufferBytes     int64         // BODY_BUFFER_BYTES: bodies up to this are read before a slot is taken
	TunnelIdleTimeout   time.Duration // TUNNEL_IDLE_TIMEOUT: upgraded connection with no byte either way
	MaxRequestLineBytes int           // MAX_REQUEST_LINE_BYTES: 414 past it
	MaxHeaderLineBytes  int           // MAX_HEADER_LINE_BYTES: 431 past it
	MaxHeaderBytes      int           // MAX_HEADER_BYTES: request line + headers, 431 past it
	DebugBackendHeader  bool          // DEBUG_BACKEND_HEADER: X-Lbscale-Backend on responses
	DebugPprof          bool          // DEBUG_PPROF: /debug/pprof/ on the admin port (behind ADMIN_TOKEN)

	// AccessLog (ACCESS_LOG) is where the access log goes: "" (off),
	// "stdout", or a file path. AccessLogQuery (ACCESS_LOG_QUERY) writes
	// query strings, which may hold tokens, instead of redacting them;
	// AccessLogMaxBytes (ACCESS_LOG_MAX_MB) rotates a file log by size.
	AccessLog         string
	AccessLogQuery    bool
	AccessLogMaxBytes int64
	// ColdStartHeader (COLD_START_HEADER) adds X-Lbscale-Cold-Start to an
	// answer whose request waited for a container to start.
	ColdStartHeader bool

	// MaxConnections (MAX_CONNECTIONS) bounds the long-lived connections
	// (upgrades, event streams, bodies still open after StreamAfter) per
	// backend, summed over all balancers; 0: no limit. They hold no
	// request slot, so MAX_INFLIGHT does not bound them.
	MaxConnections int64
	// StreamAfter (STREAM_AFTER) turns a response whose body is still
	// being copied this long after its headers into a long-lived
	// connection (0: never): what follows the headers is transfer, not
	// processing, and a body still open a second later is a stream, a
	// download or a long poll whose life would otherwise hold a request
	// slot and be read by the scaler as service time.
	StreamAfter time.Duration

	// TLSCertFile and TLSKeyFile (TLS_CERT_FILE, TLS_KEY_FILE): both set,
	// the proxy listener serves HTTPS and HTTP/2; both empty, plain HTTP.
	TLSCertFile string
	TLSKeyFile  string
	// TLSRedirectAddr (TLS_REDIRECT_ADDR): a plain-HTTP listener that
	// redirects to HTTPS (308); empty for none. Needs TLS.
	TLSRedirectAddr string

	// Outlier ejection, retries and least-latency (docs/architecture.md, outliers).
	OutlierConsecutive  int           // OUTLIER_CONSECUTIVE_5XX: failures in a row that eject (0: off)
	OutlierBase         time.Duration // OUTLIER_BASE_EJECTION: first ejection's length
	OutlierMax          time.Duration // OUTLIER_MAX_EJECTION: cap on an ejection's length
	OutlierMaxPercent   int           // OUTLIER_MAX_EJECTION_PERCENT: most of the pool ejected at once
	RetryBudgetPercent  float64       // RETRY_BUDGET_PERCENT: retries in progress per 100 requests in flight
	RetryMinConcurrency int           // RETRY_MIN_CONCURRENCY: retries always allowed at once
	RetryOn             []int         // RETRY_ON: 5xx statuses retried elsewhere (empty: none)
	LatencyDecay        time.Duration // LATENCY_DECAY: least-latency's EWMA time constant
}

// TLS reports whether the proxy listener serves HTTPS.
func (c Config) TLS() bool { return c.TLSCertFile != "" }

// Vars declares every variable the balancer reads: name, default, range
// and meaning, once. Load reads through it, -h prints it, and
// TestDocsMatchVars holds docs/configuration.md to it.
var Vars = envconf.Join(envconf.Table{
	{Name: "LISTEN_ADDR", Default: ":8080", Help: "proxy address"},
	{Name: "ADMIN_ADDR", Default: ":9090", Help: "admin address: /status, /metrics, /healthz"},
	{Name: state.EnvPool, Default: "web", Help: "which pool's registry and counts to use (all Redis keys carry it); without LBSCALE_CONFIG"},
	{Name: poolfile.EnvConfig, Help: "a pool file (YAML): several pools routed by Host and path, each with its own settings (the variables marked per pool, in lower case); reloaded within 2 s when it changes. Unset: one pool from the environment"},
	{Name: "LB_POLICY", Default: "least-connections", OneOf: policy.Names(), Help: "see Policies"},
	{Name: "HASH_KEY", Default: "ip", Help: "consistent-hash key: ip, path (the URL path: each object's requests to one backend, for its cache), url (path and query), header:<Name> or cookie:<Name>"},
	{Name: "HASH_LOAD_FACTOR", Default: float64(1.25), Min: float64(1), Max: float64(100), Help: "bounded-loads factor c for consistent-hash (≥ 1)"},
	{Name: "TRUST_FORWARDED_FOR", Default: false, Help: "believe a client's Forwarded and X-Forwarded-* headers (only when every client comes through a proxy of your own): kept and appended to instead of replaced, and consistent-hash keys by the first X-Forwarded-For hop"},
	{Name: "STICKY_COOKIE", Default: "lbscale_sticky", Help: "cookie of the sticky policy"},
	{Name: "MAX_INFLIGHT", Default: 4, Min: 1, Max: 1 << 20, Help: "requests in flight per backend, summed over all balancers (1…1048576)"},
	{Name: "QUEUE_MAX", Default: 1000, Min: 0, Max: 1 << 20, Help: "requests waiting for a slot; beyond it 503 at once (0 = no queue)"},
	{Name: "QUEUE_TIMEOUT", Default: 30 * time.Second, Min: time.Millisecond, Max: time.Hour, Help: "longest wait in the queue before 503 + Retry-After"},
	{Name: "SHARE_STATE", Default: true, Help: "divide MAX_INFLIGHT among balancers; false: each enforces it alone (counts are still published for the scaler)"},
	{Name: "SYNC_INTERVAL", Default: 25 * time.Millisecond, Min: time.Millisecond, Max: 10 * time.Second, Help: "how often grants are synced (one round trip); in-flight counts go every 8th sync"},
	{Name: "ADMIN_TOKEN", Help: "when set, /status and /metrics require Authorization: Bearer <token>"},
	{Name: "DASHBOARD_URL", OneOf: []string{"http", "https"}, Help: "the live dashboard's address, named in /status (dashboard) so that loadtest --status prints it; an absolute http(s) URL"},
	{Name: "BALANCER_ID", Shown: "hostname-pid", Help: "unique id of this replica in Redis"},
	{Name: "HEALTH_INTERVAL", Default: 2 * time.Second, Min: 10 * time.Millisecond, Max: time.Hour, Help: "active health checks; 2 failures mark a backend down, 1 pass brings it back"},
	{Name: "HEALTH_PATH", Default: "/healthz", Help: "health endpoint on backends"},
	{Name: "SLOW_START", Default: 3 * time.Second, Min: time.Duration(0), Max: time.Hour, Help: "ramp of a new backend's limit from 1 to MAX_INFLIGHT (0 = off)"},
	{Name: "UPSTREAM_TIMEOUT", Default: 60 * time.Second, Min: time.Millisecond, Max: time.Hour, Help: "per-try timeout: each attempt's wait for the backend's response headers; an idempotent request is then retried once elsewhere, others get 504"},
	{Name: "LOAD_INTERVAL", Default: time.Second, Min: 10 * time.Millisecond, Max: time.Hour, Help: "/load polling, least-loaded only"},
	{Name: "SHUTDOWN_TIMEOUT", Default: 30 * time.Second, Min: time.Duration(0), Max: time.Hour, Help: "graceful shutdown: in-flight and queued requests finish"},
	{Name: "LOG_LEVEL", Default: "info", OneOf: []string{"debug", "info", "warn", "error"}, Help: "debug, info, warn, error"},
	{Name: EnvTLSCertFile, Help: "PEM certificate (chain) for the proxy address; with TLS_KEY_FILE the proxy serves HTTPS only (TLS ≥ 1.2, HTTP/2 through ALPN). Setting one without the other, or a file that does not load, exits 2. Replaced files are picked up within about a second, no restart"},
	{Name: EnvTLSKeyFile, Help: "PEM private key of TLS_CERT_FILE"},
	{Name: "CLIENT_HEADER_TIMEOUT", Default: 10 * time.Second, Min: time.Millisecond, Max: time.Hour, Help: "wait for a request's complete headers, then the connection is closed"},
	{Name: "CLIENT_IDLE_TIMEOUT", Default: 60 * time.Second, Min: time.Millisecond, Max: 24 * time.Hour, Help: "a keep-alive client connection with no next request is closed"},
	{Name: "CLIENT_BODY_TIMEOUT", Default: 30 * time.Second, Min: time.Millisecond, Max: time.Hour, Help: "wait for a buffered body as a whole, and for each read of a streamed one; then 408 and close"},
	{Name: "BODY_BUFFER_BYTES", Default: 64 << 10, Min: 0, Max: 64 << 20, Help: "request bodies up to this size are read whole *before* a backend slot is taken (0…64 MiB; 0 = stream every body)"},
	{Name: "TUNNEL_IDLE_TIMEOUT", Default: 60 * time.Second, Min: time.Millisecond, Max: 24 * time.Hour, Help: "an upgraded connection (WebSocket, …) with no byte either way is closed and its connection (MAX_CONNECTIONS) returned"},
	{Name: "MAX_CONNECTIONS", Default: 1000, Min: 0, Max: 1 << 20, Help: "long-lived connections (WebSocket and other upgrades, server-sent-event streams, bodies still open after STREAM_AFTER) per backend, summed over all balancers; they hold no request slot but count here. A request that asks for one (Upgrade, or Accept: text/event-stream) goes to the backend with the fewest that has room, else waits in the queue (0…1048576; 0 = no limit). Soft: exact for this balancer, the others' as reported about once a second"},
	{Name: "STREAM_AFTER", Default: time.Second, Min: time.Duration(0), Max: time.Hour, Help: "a response whose body is still being copied this long after its headers becomes a long-lived connection: its request slot is given back and its service time stops there (the time after the headers is transfer, not processing; a body still open a second later is a stream, a download or a long poll). 0 = off"},
	{Name: "MAX_REQUEST_LINE_BYTES", Default: 8 << 10, Min: 256, Max: 1 << 20, Help: "longer request line (method, URI, version): 414"},
	{Name: "MAX_HEADER_LINE_BYTES", Default: 16 << 10, Min: 256, Max: 1 << 20, Help: "longer header line: 431"},
	{Name: "MAX_HEADER_BYTES", Default: 64 << 10, Min: 1 << 10, Max: 16 << 20, Help: "request line and headers together: 431 (≥ both line limits)"},
	{Name: "DEBUG_BACKEND_HEADER", Default: false, Help: "add X-Lbscale-Backend (the backend's id) to responses; for debugging only"},
	{Name: "ACCESS_LOG", Default: "off", Help: "off, stdout, or a file path: one JSON object per request (time, request id, client, method, host, path, status, bytes, duration, queue and cold-start waits, upstream time, pool, backend, attempts, retry reason, TLS, user agent, trace id), written off the request path: a full buffer drops lines (counted in lbscale_balancer_access_log_dropped_total) rather than slow a request. A file is reopened on SIGHUP (logrotate)"},
	{Name: "ACCESS_LOG_QUERY", Default: false, Help: "write query strings in the access log; by default a query is written as REDACTED, since it may carry tokens"},
	{Name: "ACCESS_LOG_MAX_MB", Default: 0, Min: 0, Max: 1 << 20, Help: "a file access log larger than this is renamed to <file>.1 and a new one begun (0 = never; use logrotate and SIGHUP instead)"},
	{Name: "COLD_START_HEADER", Default: false, Help: "add X-Lbscale-Cold-Start: <ms> to an answer whose request waited for a container to start (the time it waited), so a client can tell a cold start from a slow service"},
	{Name: "DEBUG_PPROF", Default: false, Help: "serve Go's profiles (CPU, heap, allocs, mutex, block) under /debug/pprof/ on the admin port, behind ADMIN_TOKEN; see docs/performance.md"},
	{Name: "OUTLIER_CONSECUTIVE_5XX", Default: 5, Min: 0, Max: 1000, Help: "consecutive failures of a backend (5xx answers, or connect errors, resets, upstream timeouts) that eject it; 0 = no ejection (0…1000)"},
	{Name: "OUTLIER_BASE_EJECTION", Default: 30 * time.Second, Min: time.Millisecond, Max: time.Hour, Help: "first ejection's length; the n-th in a row lasts n × this (the count decays by one per base time without ejection)"},
	{Name: "OUTLIER_MAX_EJECTION", Default: 300 * time.Second, Min: time.Millisecond, Max: 24 * time.Hour, Help: "cap on an ejection's length (≥ OUTLIER_BASE_EJECTION)"},
	{Name: "OUTLIER_MAX_EJECTION_PERCENT", Default: 50, Min: 0, Max: 100, Help: "most of the pool ejected at once (0…100); the last pickable backend is never ejected"},
	{Name: "RETRY_BUDGET_PERCENT", Default: float64(20), Min: float64(0), Max: float64(100), Help: "retries in progress at most this share of the requests in flight (0…100), so a failing pool is not hit twice per request"},
	{Name: "RETRY_MIN_CONCURRENCY", Default: 3, Min: 0, Max: 1 << 20, Help: "retries always allowed at once, whatever the share (Envoy's min_retry_concurrency)"},
	{Name: "LATENCY_DECAY", Default: 10 * time.Second, Min: 10 * time.Millisecond, Max: time.Hour, Help: "least-latency: time constant of the peak-EWMA of response times (10ms…1h)"},
	{Name: "BACKENDS", Help: "static pool, host:port[=weight],... (each address once); used until a scaler writes a registry"},
	{Name: EnvRetryOn, Default: DefaultRetryOn, Help: "answers after which an idempotent request is retried on another backend (comma-separated codes from 500 to 599, or none); connect errors, resets and timeouts are always retried"},
	{Name: EnvTLSRedirectAddr, Help: "with TLS: a plain-HTTP address that answers 308 to https://<host>:<LISTEN_ADDR's port><path> (port left out when 443)"},
}, redisstore.ConnVars)

// Load reads the configuration; the error names every invalid variable.
func Load(lookup func(string) (string, bool)) (Config, error) {
	r := envconf.New(lookup, Vars)
	host, _ := os.Hostname()
	c := Config{
		ListenAddr:      r.Addr("LISTEN_ADDR"),
		AdminAddr:       r.Addr("ADMIN_ADDR"),
		Redis:           redisstore.ReadConn(r),
		Pool:            r.String(state.EnvPool),
		PoolFile:        r.String(poolfile.EnvConfig),
		Policy:          r.OneOf("LB_POLICY"),
		HashKey:         r.String("HASH_KEY"),
		HashLoadFactor:  r.Float("HASH_LOAD_FACTOR"),
		TrustForwarded:  r.Bool("TRUST_FORWARDED_FOR"),
		StickyCookie:    r.String("STICKY_COOKIE"),
		MaxInflight:     int64(r.Int("MAX_INFLIGHT")),
		QueueMax:        r.Int("QUEUE_MAX"),
		QueueTimeout:    r.Duration("QUEUE_TIMEOUT"),
		ShareState:      r.Bool("SHARE_STATE"),
		SyncInterval:    r.Duration("SYNC_INTERVAL"),
		AdminToken:      r.String("ADMIN_TOKEN"),
		DashboardURL:    r.URL("DASHBOARD_URL"),
		BalancerID:      r.StringOr("BALANCER_ID", host+"-"+strconv.Itoa(os.Getpid())),
		HealthInterval:  r.Duration("HEALTH_INTERVAL"),
		HealthPath:      r.String("HEALTH_PATH"),
		SlowStart:       r.Duration("SLOW_START"),
		UpstreamTimeout: r.Duration("UPSTREAM_TIMEOUT"),
		LoadInterval:    r.Duration("LOAD_INTERVAL"),
		ShutdownTimeout: r.Duration("SHUTDOWN_TIMEOUT"),
		LogLevel:        r.OneOf("LOG_LEVEL"),
		TLSCertFile:     r.String(EnvTLSCertFile),
		TLSKeyFile:      r.String(EnvTLSKeyFile),

		ClientHeaderTimeout: r.Duration("CLIENT_HEADER_TIMEOUT"),
		ClientIdleTimeout:   r.Duration("CLIENT_IDLE_TIMEOUT"),
		ClientBodyTimeout:   r.Duration("CLIENT_BODY_TIMEOUT"),
		BodyBufferBytes:     int64(r.Int("BODY_BUFFER_BYTES")),
		TunnelIdleTimeout:   r.Duration("TUNNEL_IDLE_TIMEOUT"),
		MaxConnections:      int64(r.Int("MAX_CONNECTIONS")),
		StreamAfter:         r.Duration("STREAM_AFTER"),
		MaxRequestLineBytes: r.Int("MAX_REQUEST_LINE_BYTES"),
		MaxHeaderLineBytes:  r.Int("MAX_HEADER_LINE_BYTES"),
		MaxHeaderBytes:      r.Int("MAX_HEADER_BYTES"),
		DebugBackendHeader:  r.Bool("DEBUG_BACKEND_HEADER"),
		DebugPprof:          r.Bool("DEBUG_PPROF"),
		AccessLogQuery:      r.Bool("ACCESS_LOG_QUERY"),
		AccessLogMaxBytes:   int64(r.Int("ACCESS_LOG_MAX_MB")) << 20,
		ColdStartHeader:     r.Bool("COLD_START_HEADER"),

		OutlierConsecutive:  r.Int("OUTLIER_CONSECUTIVE_5XX"),
		OutlierBase:         r.Duration("OUTLIER_BASE_EJECTION"),
		OutlierMax:          r.Duration("OUTLIER_MAX_EJECTION"),
		OutlierMaxPercent:   r.Int("OUTLIER_MAX_EJECTION_PERCENT"),
		RetryBudgetPercent:  r.Float("RETRY_BUDGET_PERCENT"),
		RetryMinConcurrency: r.Int("RETRY_MIN_CONCURRENCY"),
		LatencyDecay:        r.Duration("LATENCY_DECAY"),
	}
	if c.MaxRequestLineBytes > c.MaxHeaderBytes {
		r.Fail("MAX_REQUEST_LINE_BYTES", "%d is more than MAX_HEADER_BYTES (%d), which bounds the request line too", c.MaxRequestLineBytes, c.MaxHeaderBytes)
	}
	if c.MaxHeaderLineBytes > c.MaxHeaderBytes {
		r.Fail("MAX_HEADER_LINE_BYTES", "%d is more than MAX_HEADER_BYTES (%d)", c.MaxHeaderLineBytes, c.MaxHeaderBytes)
	}
	loadTLS(r, &c)
	seen := map[string]bool{}
	for _, item := range r.List("BACKENDS") {
		s, err := parseStatic(item)
		if err != nil {
			r.Fail("BACKENDS", "%v", err)
			continue
		}
		// A backend listed twice would get two limits' worth of slots.
		if seen[s.Addr] {
			r.Fail("BACKENDS", "%q is listed twice", s.Addr)
			continue
		}
		seen[s.Addr] = true
		c.Backends = append(c.Backends, s)
	}
	retryOn, err := ParseRetryOn(r.String(EnvRetryOn))
	if err != nil {
		r.Fail(EnvRetryOn, "%v", err)
	}
	c.RetryOn = retryOn
	if c.OutlierMax < c.OutlierBase {
		r.Fail("OUTLIER_MAX_EJECTION", "%s is shorter than OUTLIER_BASE_EJECTION (%s)", c.OutlierMax, c.OutlierBase)
	}
	if !strings.HasPrefix(c.HealthPath, "/") {
		r.Fail("HEALTH_PATH", "%q must start with /", c.HealthPath)
	}
	if _, err := policy.ParseHashKey(c.HashKey); err != nil {
		r.Fail("HASH_KEY", "%q is not ip, path, url, header:<Name> or cookie:<Name> with a valid name", c.HashKey)
	}
	if err := (&http.Cookie{Name: c.StickyCookie}).Valid(); err != nil {
		r.Fail("STICKY_COOKIE", "%q is not a valid cookie name", c.StickyCookie)
	}
	if err := state.CheckPool(c.Pool); err != nil {
		// The balancer finds the scaler's registry under this name; the
		// scaler refuses the same names.
		r.Fail(state.EnvPool, "%v", err)
	}
	switch v := strings.TrimSpace(r.String("ACCESS_LOG")); {
	case v == "off" || v == "":
	case v == "stdout":
		c.AccessLog = v
	case strings.HasSuffix(v, "/") || strings.ContainsRune(v, 0):
		r.Fail("ACCESS_LOG", "%q is neither off, stdout nor a file path", v)
	default:
		c.AccessLog = v
	}
	// With a pool file each pool names its own backends (or follows the
	// registry); the check is made for each pool's configuration, which
	// does not see LBSCALE_CONFIG (poolfile.Pool.Lookup).
	if c.Redis.URL == "" && len(c.Backends) == 0 && c.PoolFile == "" && r.Err() == nil {
		r.Fail("BACKENDS", "no backends: set BACKENDS (host:port,...) or REDIS_URL to follow the scaler's registry")
	}
	return c, r.Err()
}

func parseStatic(item string) (Static, error) {
	addr, w, hasWeight := strings.Cut(item, "=")
	s := Static{Addr: addr, Weight: 1}
	if err := envconf.HostPort(addr); err != nil || strings.HasPrefix(addr, ":") {
		return s, fmt.Errorf("%q is not host:port[=weight]", item)
	}
	if hasWeight {
		n, err := strconv.Atoi(w)
		if err != nil || n < 1 || n > state.MaxWeight {
			return s, fmt.Errorf("%q: weight must be a whole number from 1 to %d", item, state.MaxWeight)
		}
		s.Weight = n
	}
	return s, nil
}

// loadTLS checks the TLS settings: both files or neither, and a pair that
// loads now (a typo in a path should stop the balancer at start-up, not fail
// every handshake).
func loadTLS(r *envconf.Reader, c *Config) {
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		r.Fail(EnvTLSKeyFile, "unset while %s is set: HTTPS needs both the certificate and its key", EnvTLSCertFile)
		c.TLSCertFile = ""
	case c.TLSCertFile == "" && c.TLSKeyFile != "":
		r.Fail(EnvTLSCertFile, "unset while %s is set: HTTPS needs both the certificate and its key", EnvTLSKeyFile)
		c.TLSKeyFile = ""
	case c.TLSCertFile != "":
		if _, err := tlsterm.Load(c.TLSCertFile, c.TLSKeyFile); err != nil {
			name := EnvTLSKeyFile
			var fe *tlsterm.FileError
			if errors.As(err, &fe) && fe.Path == c.TLSCertFile {
				name = EnvTLSCertFile
			}
			r.Fail(name, "%v", err)
		}
	}
	if v := r.String(EnvTLSRedirectAddr); v != "" {
		switch {
		case envconf.HostPort(v) != nil:
			r.Fail(EnvTLSRedirectAddr, "%v", envconf.HostPort(v))
		case !c.TLS():
			r.Fail(EnvTLSRedirectAddr, "set without %s and %s: there is no HTTPS listener to redirect to", EnvTLSCertFile, EnvTLSKeyFile)
		case v == c.ListenAddr || v == c.AdminAddr:
			r.Fail(EnvTLSRedirectAddr, "%q is already LISTEN_ADDR or ADMIN_ADDR", v)
		default:
			c.TLSRedirectAddr = v
		}
	}
}
