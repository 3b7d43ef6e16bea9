package config

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"lbscale/internal/envconf"
	"lbscale/internal/state"
	"lbscale/internal/testenv/envconftest"
)

// fuzzVars are the variables FuzzLoad sets. TLS_CERT_FILE and TLS_KEY_FILE
// are left out: they are paths the loader opens, not text it parses.
var fuzzVars = []string{
	"LISTEN_ADDR", "ADMIN_ADDR", "BACKENDS", "REDIS_URL", "POOL", "LB_POLICY",
	"HASH_KEY", "HASH_LOAD_FACTOR", "TRUST_FORWARDED_FOR", "STICKY_COOKIE",
	"MAX_INFLIGHT", "QUEUE_MAX", "QUEUE_TIMEOUT", "SHARE_STATE", "SYNC_INTERVAL",
	"ADMIN_TOKEN", "BALANCER_ID", "HEALTH_INTERVAL", "HEALTH_PATH", "SLOW_START",
	"UPSTREAM_TIMEOUT", "LOAD_INTERVAL", "SHUTDOWN_TIMEOUT", "LOG_LEVEL",
	"CLIENT_HEADER_TIMEOUT", "CLIENT_IDLE_TIMEOUT", "CLIENT_BODY_TIMEOUT",
	"BODY_BUFFER_BYTES", "TUNNEL_IDLE_TIMEOUT", "MAX_REQUEST_LINE_BYTES",
	"MAX_HEADER_LINE_BYTES", "MAX_HEADER_BYTES", "DEBUG_BACKEND_HEADER",
	EnvTLSRedirectAddr, "OUTLIER_CONSECUTIVE_5XX", "OUTLIER_BASE_EJECTION",
	"OUTLIER_MAX_EJECTION", "OUTLIER_MAX_EJECTION_PERCENT", "RETRY_BUDGET_PERCENT",
	"RETRY_MIN_CONCURRENCY", "LATENCY_DECAY", "MAX_CONNECTIONS", "STREAM_AFTER",
}

// FuzzLoad sets one variable of an otherwise valid environment to arbitrary
// text. Load must not panic, and every problem it reports must start with
// the name of a variable and mention the one that was changed, so that the
// user knows which line of the compose file to fix.
func FuzzLoad(f *testing.F) {
	seeds := []struct {
		name, value string
	}{
		{"BACKENDS", "a:1,b:2=3"},
		{"BACKENDS", "a:1,a:1"},
		{"BACKENDS", ":80"},
		{"BACKENDS", "a:1=0"},
		{"BACKENDS", "a:1=1001,=,,"},
		{"LISTEN_ADDR", "http://a:80"},
		{"MAX_HEADER_BYTES", "1024"},
		{"HASH_LOAD_FACTOR", "NaN"},
		{"HASH_KEY", "header:"},
		{"STICKY_COOKIE", "a b"},
		{"REDIS_URL", "redis://r:6379/x"},
		{"OUTLIER_BASE_EJECTION", "1h"},
		{"QUEUE_TIMEOUT", "-1s"},
		{"LB_POLICY", "nope"},
		{"HEALTH_PATH", "healthz"},
		{EnvTLSRedirectAddr, ":8443"},
	}
	for _, s := range seeds {
		f.Add(uint8(slices.Index(fuzzVars, s.name)), s.value)
	}
	f.Fuzz(func(t *testing.T, which uint8, value string) {
		name := fuzzVars[int(which)%len(fuzzVars)]
		env := map[string]string{"BACKENDS": "10.0.0.1:8080", name: value}
		c, err := Load(envconf.FromMap(env))
		if err != nil {
			checkNamed(t, err, name)
			return
		}
		for _, b := range c.Backends {
			if envconf.HostPort(b.Addr) != nil || b.Weight < 1 || b.Weight > state.MaxWeight {
				t.Fatalf("%s=%q: accepted backend %+v", name, value, b)
			}
		}
		if envconf.HostPort(c.ListenAddr) != nil || envconf.HostPort(c.AdminAddr) != nil {
			t.Fatalf("%s=%q: accepted listen %q admin %q", name, value, c.ListenAddr, c.AdminAddr)
		}
		if c.MaxRequestLineBytes > c.MaxHeaderBytes || c.MaxHeaderLineBytes > c.MaxHeaderBytes || c.OutlierMax < c.OutlierBase {
			t.Fatalf("%s=%q: accepted inconsistent limits %+v", name, value, c)
		}
	})
}

// FuzzParseStatic checks one BACKENDS item: an accepted item has a host:port
// address and a weight from 1 to 1000, and writing it back out parses to the
// same entry; a refused one is named in the error.
func FuzzParseStatic(f *testing.F) {
	for _, s := range []string{"a:1", "a:1=3", "10.0.0.1:80=1000", "[::1]:80=2", ":80", "a:1=0", "a:1=+5", "a:1=05", "a=1:2", "a:65536", "a:1==2", "http://a:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, item string) {
		s, err := parseStatic(item)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(item)) {
				t.Fatalf("error %q does not quote the item %q", err, item)
			}
			return
		}
		if envconf.HostPort(s.Addr) != nil || strings.Contains(s.Addr, "=") || s.Weight < 1 || s.Weight > state.MaxWeight {
			t.Fatalf("%q: accepted %+v", item, s)
		}
		again, err := parseStatic(s.Addr + "=" + strconv.Itoa(s.Weight))
		if err != nil || again != s {
			t.Fatalf("%q: %+v does not round-trip: %+v, %v", item, s, again, err)
		}
	})
}

// checkNamed fails unless every error joined in err starts with a known
// variable's name and err mentions name.
func checkNamed(t *testing.T, err error, name string) {
	t.Helper()
	envconftest.CheckNamed(t, err, name, append(slices.Clone(fuzzVars), EnvTLSCertFile, EnvTLSKeyFile))
}
