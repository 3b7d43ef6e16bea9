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

	"lbscale/balancer/envconf"
	"lbscale/balancer/policy"
	"lbscale/balancer/state"
	"lbscale/balancer/state/redisstore"
	"lbscale/balancer/tlsterm"
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
	Pool            string        // POOL: which registry in Redis
	Policy          string        // LB_POLICY
	HashKey         string        // HASH_KEY: ip | header:<Name> | cookie:<Name>
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

	// The client edge (README "Edge"): what one client may hold or send.
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

	// TLSCertFile and TLSKeyFile (TLS_CERT_FILE, TLS_KEY_FILE): both set,
	// the proxy listener serves HTTPS and HTTP/2; both empty, plain HTTP.
	TLSCertFile string
	TLSKeyFile  string
	// TLSRedirectAddr (TLS_REDIRECT_ADDR): a plain-HTTP listener that
	// redirects to HTTPS (308); empty for none. Needs TLS.
	TLSRedirectAddr string

	// Outlier ejection, retries and least-latency (README "Outliers").
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

// Load reads the configuration; the error names every invalid variable.
func Load(lookup func(string) (string, bool)) (Config, error) {
	r := envconf.New(lookup)
	host, _ := os.Hostname()
	c := Config{
		ListenAddr:      r.Addr("LISTEN_ADDR", ":8080"),
		AdminAddr:       r.Addr("ADMIN_ADDR", ":9090"),
		Redis:           redisstore.ReadConn(r),
		Pool:            r.String(state.EnvPool, "web"),
		Policy:          r.OneOf("LB_POLICY", "least-connections", policy.Names()...),
		HashKey:         r.String("HASH_KEY", "ip"),
		HashLoadFactor:  r.Float("HASH_LOAD_FACTOR", 1.25, 1, 100),
		TrustForwarded:  r.Bool("TRUST_FORWARDED_FOR", false),
		StickyCookie:    r.String("STICKY_COOKIE", "lbscale_sticky"),
		MaxInflight:     int64(r.Int("MAX_INFLIGHT", 4, 1, 1<<20)),
		QueueMax:        r.Int("QUEUE_MAX", 1000, 0, 1<<20),
		QueueTimeout:    r.Duration("QUEUE_TIMEOUT", 30*time.Second, time.Millisecond, time.Hour),
		ShareState:      r.Bool("SHARE_STATE", true),
		SyncInterval:    r.Duration("SYNC_INTERVAL", 25*time.Millisecond, time.Millisecond, 10*time.Second),
		AdminToken:      r.String("ADMIN_TOKEN", ""),
		DashboardURL:    r.URL("DASHBOARD_URL", "", "http", "https"),
		BalancerID:      r.String("BALANCER_ID", host+"-"+strconv.Itoa(os.Getpid())),
		HealthInterval:  r.Duration("HEALTH_INTERVAL", 2*time.Second, 10*time.Millisecond, time.Hour),
		HealthPath:      r.String("HEALTH_PATH", "/healthz"),
		SlowStart:       r.Duration("SLOW_START", 3*time.Second, 0, time.Hour),
		UpstreamTimeout: r.Duration("UPSTREAM_TIMEOUT", 60*time.Second, time.Millisecond, time.Hour),
		LoadInterval:    r.Duration("LOAD_INTERVAL", time.Second, 10*time.Millisecond, time.Hour),
		ShutdownTimeout: r.Duration("SHUTDOWN_TIMEOUT", 30*time.Second, 0, time.Hour),
		LogLevel:        r.OneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error"),
		TLSCertFile:     r.String(EnvTLSCertFile, ""),
		TLSKeyFile:      r.String(EnvTLSKeyFile, ""),

		ClientHeaderTimeout: r.Duration("CLIENT_HEADER_TIMEOUT", 10*time.Second, time.Millisecond, time.Hour),
		ClientIdleTimeout:   r.Duration("CLIENT_IDLE_TIMEOUT", 60*time.Second, time.Millisecond, 24*time.Hour),
		ClientBodyTimeout:   r.Duration("CLIENT_BODY_TIMEOUT", 30*time.Second, time.Millisecond, time.Hour),
		BodyBufferBytes:     int64(r.Int("BODY_BUFFER_BYTES", 64<<10, 0, 64<<20)),
		TunnelIdleTimeout:   r.Duration("TUNNEL_IDLE_TIMEOUT", 60*time.Second, time.Millisecond, 24*time.Hour),
		MaxRequestLineBytes: r.Int("MAX_REQUEST_LINE_BYTES", 8<<10, 256, 1<<20),
		MaxHeaderLineBytes:  r.Int("MAX_HEADER_LINE_BYTES", 16<<10, 256, 1<<20),
		MaxHeaderBytes:      r.Int("MAX_HEADER_BYTES", 64<<10, 1<<10, 16<<20),
		DebugBackendHeader:  r.Bool("DEBUG_BACKEND_HEADER", false),
		DebugPprof:          r.Bool("DEBUG_PPROF", false),

		OutlierConsecutive:  r.Int("OUTLIER_CONSECUTIVE_5XX", 5, 0, 1000),
		OutlierBase:         r.Duration("OUTLIER_BASE_EJECTION", 30*time.Second, time.Millisecond, time.Hour),
		OutlierMax:          r.Duration("OUTLIER_MAX_EJECTION", 300*time.Second, time.Millisecond, 24*time.Hour),
		OutlierMaxPercent:   r.Int("OUTLIER_MAX_EJECTION_PERCENT", 50, 0, 100),
		RetryBudgetPercent:  r.Float("RETRY_BUDGET_PERCENT", 20, 0, 100),
		RetryMinConcurrency: r.Int("RETRY_MIN_CONCURRENCY", 3, 0, 1<<20),
		LatencyDecay:        r.Duration("LATENCY_DECAY", 10*time.Second, 10*time.Millisecond, time.Hour),
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
	retryOn, err := ParseRetryOn(r.String(EnvRetryOn, DefaultRetryOn))
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
		r.Fail("HASH_KEY", "%q is not ip, header:<Name> or cookie:<Name> with a valid name", c.HashKey)
	}
	if err := (&http.Cookie{Name: c.StickyCookie}).Valid(); err != nil {
		r.Fail("STICKY_COOKIE", "%q is not a valid cookie name", c.StickyCookie)
	}
	if err := state.CheckPool(c.Pool); err != nil {
		// The balancer finds the scaler's registry under this name; the
		// scaler refuses the same names.
		r.Fail(state.EnvPool, "%v", err)
	}
	if c.Redis.URL == "" && len(c.Backends) == 0 && r.Err() == nil {
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
	if v := r.String(EnvTLSRedirectAddr, ""); v != "" {
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
