package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"lbscale/internal/envconf"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv/tlstest"
)

func TestLoad(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		wantErr string // a variable name the error must mention; "" for none
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults", env: map[string]string{"BACKENDS": "a:1,b:2=3"}, check: func(t *testing.T, c Config) {
			if c.ListenAddr != ":8080" || c.AdminAddr != ":9090" || c.MaxInflight != 4 || !c.ShareState ||
				c.Policy != "least-connections" || c.QueueTimeout != 30*time.Second || len(c.Backends) != 2 || c.Backends[1].Weight != 3 {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{name: "redis only", env: map[string]string{"REDIS_URL": "redis://r:6379/0", "SHARE_STATE": "false"}, check: func(t *testing.T, c Config) {
			if c.ShareState || c.Redis.URL == "" {
				t.Errorf("%+v", c)
			}
		}},
		{name: "no backends at all", env: map[string]string{}, wantErr: "BACKENDS"},
		{name: "negative limit", env: map[string]string{"BACKENDS": "a:1", "MAX_INFLIGHT": "-1"}, wantErr: "MAX_INFLIGHT"},
		{name: "bogus policy", env: map[string]string{"BACKENDS": "a:1", "LB_POLICY": "bogus"}, wantErr: "LB_POLICY"},
		{name: "bad redis url", env: map[string]string{"REDIS_URL": "localhost:6379"}, wantErr: "REDIS_URL"},
		{name: "dashboard url", env: map[string]string{"REDIS_URL": "redis://r:6379/0", "DASHBOARD_URL": "http://127.0.0.1:9093/"}, check: func(t *testing.T, c Config) {
			if c.DashboardURL != "http://127.0.0.1:9093/" {
				t.Fatalf("DashboardURL %q", c.DashboardURL)
			}
		}},
		{name: "bad dashboard url", env: map[string]string{"DASHBOARD_URL": "127.0.0.1:9093"}, wantErr: "DASHBOARD_URL"},
		{name: "duration words", env: map[string]string{"BACKENDS": "a:1", "QUEUE_TIMEOUT": "soon"}, wantErr: "QUEUE_TIMEOUT"},
		{name: "weight zero", env: map[string]string{"BACKENDS": "a:1=0"}, wantErr: "BACKENDS"},
		{name: "hash key", env: map[string]string{"BACKENDS": "a:1", "HASH_KEY": "body"}, wantErr: "HASH_KEY"},
		{name: "hash key header with a bad name", env: map[string]string{"BACKENDS": "a:1", "HASH_KEY": "header:a(b"}, wantErr: "HASH_KEY"},
		{name: "sticky cookie name", env: map[string]string{"BACKENDS": "a:1", "STICKY_COOKIE": "a;b"}, wantErr: "STICKY_COOKIE"},
		{name: "pool with a brace breaks the keys' hash tag", env: map[string]string{"BACKENDS": "a:1", "POOL": "a}b"}, wantErr: "POOL"},
		{name: "upper-case pool", env: map[string]string{"BACKENDS": "a:1", "POOL": "Web"}, wantErr: "POOL"},
		{name: "load factor NaN", env: map[string]string{"BACKENDS": "a:1", "HASH_LOAD_FACTOR": "NaN"}, wantErr: "HASH_LOAD_FACTOR"},
		{name: "backend listed twice", env: map[string]string{"BACKENDS": "a:1,b:2,a:1=3"}, wantErr: "BACKENDS"},
		{name: "backend with a scheme", env: map[string]string{"BACKENDS": "http://a:1"}, wantErr: "BACKENDS"},
		{name: "backend with a blank", env: map[string]string{"BACKENDS": "a b:80"}, wantErr: "BACKENDS"},
		{name: "backend ipv6", env: map[string]string{"BACKENDS": "[::1]:7001"}, check: func(t *testing.T, c Config) {
			if len(c.Backends) != 1 || c.Backends[0].Addr != "[::1]:7001" {
				t.Errorf("%+v", c.Backends)
			}
		}},
		{name: "edge defaults", env: map[string]string{"BACKENDS": "a:1"}, check: func(t *testing.T, c Config) {
			if c.ClientHeaderTimeout != 10*time.Second || c.ClientIdleTimeout != time.Minute || c.ClientBodyTimeout != 30*time.Second ||
				c.BodyBufferBytes != 64<<10 || c.TunnelIdleTimeout != time.Minute || c.MaxRequestLineBytes != 8<<10 ||
				c.MaxHeaderLineBytes != 16<<10 || c.MaxHeaderBytes != 64<<10 || c.DebugBackendHeader {
				t.Errorf("edge defaults: %+v", c)
			}
		}},
		{name: "edge set", env: map[string]string{"BACKENDS": "a:1", "CLIENT_HEADER_TIMEOUT": "2s", "CLIENT_IDLE_TIMEOUT": "5m",
			"CLIENT_BODY_TIMEOUT": "1m", "BODY_BUFFER_BYTES": "0", "TUNNEL_IDLE_TIMEOUT": "1h", "MAX_REQUEST_LINE_BYTES": "4096",
			"MAX_HEADER_LINE_BYTES": "8192", "MAX_HEADER_BYTES": "32768", "DEBUG_BACKEND_HEADER": "true"}, check: func(t *testing.T, c Config) {
			if c.ClientHeaderTimeout != 2*time.Second || c.ClientIdleTimeout != 5*time.Minute || c.ClientBodyTimeout != time.Minute ||
				c.BodyBufferBytes != 0 || c.TunnelIdleTimeout != time.Hour || c.MaxRequestLineBytes != 4096 ||
				c.MaxHeaderLineBytes != 8192 || c.MaxHeaderBytes != 32768 || !c.DebugBackendHeader {
				t.Errorf("edge settings: %+v", c)
			}
		}},
		{name: "header timeout zero", env: map[string]string{"BACKENDS": "a:1", "CLIENT_HEADER_TIMEOUT": "0s"}, wantErr: "CLIENT_HEADER_TIMEOUT"},
		{name: "idle timeout words", env: map[string]string{"BACKENDS": "a:1", "CLIENT_IDLE_TIMEOUT": "a while"}, wantErr: "CLIENT_IDLE_TIMEOUT"},
		{name: "body timeout negative", env: map[string]string{"BACKENDS": "a:1", "CLIENT_BODY_TIMEOUT": "-1s"}, wantErr: "CLIENT_BODY_TIMEOUT"},
		{name: "body buffer too big", env: map[string]string{"BACKENDS": "a:1", "BODY_BUFFER_BYTES": "1000000000"}, wantErr: "BODY_BUFFER_BYTES"},
		{name: "tunnel idle zero", env: map[string]string{"BACKENDS": "a:1", "TUNNEL_IDLE_TIMEOUT": "0"}, wantErr: "TUNNEL_IDLE_TIMEOUT"},
		{name: "connection defaults", env: map[string]string{"BACKENDS": "a:1"}, check: func(t *testing.T, c Config) {
			if c.MaxConnections != 1000 || c.StreamAfter != time.Second {
				t.Errorf("MAX_CONNECTIONS %d, STREAM_AFTER %s; want 1000, 1s", c.MaxConnections, c.StreamAfter)
			}
		}},
		{name: "connections off", env: map[string]string{"BACKENDS": "a:1", "MAX_CONNECTIONS": "0", "STREAM_AFTER": "0"}, check: func(t *testing.T, c Config) {
			if c.MaxConnections != 0 || c.StreamAfter != 0 {
				t.Errorf("MAX_CONNECTIONS %d, STREAM_AFTER %s; want both 0 (off)", c.MaxConnections, c.StreamAfter)
			}
		}},
		{name: "connections negative", env: map[string]string{"BACKENDS": "a:1", "MAX_CONNECTIONS": "-1"}, wantErr: "MAX_CONNECTIONS"},
		{name: "stream after words", env: map[string]string{"BACKENDS": "a:1", "STREAM_AFTER": "soon"}, wantErr: "STREAM_AFTER"},
		{name: "request line tiny", env: map[string]string{"BACKENDS": "a:1", "MAX_REQUEST_LINE_BYTES": "10"}, wantErr: "MAX_REQUEST_LINE_BYTES"},
		{name: "header line past the total", env: map[string]string{"BACKENDS": "a:1", "MAX_HEADER_LINE_BYTES": "65536", "MAX_HEADER_BYTES": "8192"}, wantErr: "MAX_HEADER_LINE_BYTES"},
		{name: "header bytes words", env: map[string]string{"BACKENDS": "a:1", "MAX_HEADER_BYTES": "64k"}, wantErr: "MAX_HEADER_BYTES"},
		{name: "debug header maybe", env: map[string]string{"BACKENDS": "a:1", "DEBUG_BACKEND_HEADER": "maybe"}, wantErr: "DEBUG_BACKEND_HEADER"},
		{name: "outlier and retry defaults", env: map[string]string{"BACKENDS": "a:1"}, check: func(t *testing.T, c Config) {
			if c.OutlierConsecutive != 5 || c.OutlierBase != 30*time.Second || c.OutlierMax != 300*time.Second || c.OutlierMaxPercent != 50 ||
				c.RetryBudgetPercent != 20 || c.RetryMinConcurrency != 3 || c.LatencyDecay != 10*time.Second {
				t.Errorf("%+v", c)
			}
		}},
		{name: "outlier and retry set", env: map[string]string{"BACKENDS": "a:1", "OUTLIER_CONSECUTIVE_5XX": "0", "OUTLIER_BASE_EJECTION": "1s",
			"OUTLIER_MAX_EJECTION": "1s", "OUTLIER_MAX_EJECTION_PERCENT": "100", "RETRY_BUDGET_PERCENT": "12.5", "RETRY_MIN_CONCURRENCY": "0",
			"LATENCY_DECAY": "2s", "LB_POLICY": "least-latency"}, check: func(t *testing.T, c Config) {
			if c.OutlierConsecutive != 0 || c.OutlierBase != time.Second || c.OutlierMax != time.Second || c.OutlierMaxPercent != 100 ||
				c.RetryBudgetPercent != 12.5 || c.RetryMinConcurrency != 0 || c.LatencyDecay != 2*time.Second || c.Policy != "least-latency" {
				t.Errorf("%+v", c)
			}
		}},
		{name: "consecutive negative", env: map[string]string{"BACKENDS": "a:1", "OUTLIER_CONSECUTIVE_5XX": "-1"}, wantErr: "OUTLIER_CONSECUTIVE_5XX"},
		{name: "base ejection words", env: map[string]string{"BACKENDS": "a:1", "OUTLIER_BASE_EJECTION": "30"}, wantErr: "OUTLIER_BASE_EJECTION"},
		{name: "max ejection below base", env: map[string]string{"BACKENDS": "a:1", "OUTLIER_BASE_EJECTION": "1m", "OUTLIER_MAX_EJECTION": "30s"}, wantErr: "OUTLIER_MAX_EJECTION"},
		{name: "ejection percent over 100", env: map[string]string{"BACKENDS": "a:1", "OUTLIER_MAX_EJECTION_PERCENT": "101"}, wantErr: "OUTLIER_MAX_EJECTION_PERCENT"},
		{name: "retry budget percent", env: map[string]string{"BACKENDS": "a:1", "RETRY_BUDGET_PERCENT": "150"}, wantErr: "RETRY_BUDGET_PERCENT"},
		{name: "retry min concurrency", env: map[string]string{"BACKENDS": "a:1", "RETRY_MIN_CONCURRENCY": "three"}, wantErr: "RETRY_MIN_CONCURRENCY"},
		{name: "latency decay", env: map[string]string{"BACKENDS": "a:1", "LATENCY_DECAY": "0s"}, wantErr: "LATENCY_DECAY"},
		{name: "two errors both named", env: map[string]string{"BACKENDS": "a:1", "QUEUE_MAX": "x", "SLOW_START": "-1s"}, wantErr: "QUEUE_MAX"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(envconf.FromMap(tc.env))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, c)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("want an error naming %s, got %v", tc.wantErr, err)
			}
			if tc.name == "two errors both named" && !strings.Contains(err.Error(), "SLOW_START") {
				t.Fatalf("every invalid variable should be reported: %v", err)
			}
		})
	}
}

func TestLoadTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	tlstest.Write(t, certFile, keyFile, "balancer")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "plain HTTP by default", env: map[string]string{}, check: func(t *testing.T, c Config) {
			if c.TLS() || c.TLSRedirectAddr != "" {
				t.Errorf("%+v", c)
			}
		}},
		{name: "both files", env: map[string]string{EnvTLSCertFile: certFile, EnvTLSKeyFile: keyFile, EnvTLSRedirectAddr: ":8079"},
			check: func(t *testing.T, c Config) {
				if !c.TLS() || c.TLSCertFile != certFile || c.TLSKeyFile != keyFile || c.TLSRedirectAddr != ":8079" {
					t.Errorf("%+v", c)
				}
			}},
		{name: "cert without key", env: map[string]string{EnvTLSCertFile: certFile}, wantErr: EnvTLSKeyFile},
		{name: "key without cert", env: map[string]string{EnvTLSKeyFile: keyFile}, wantErr: EnvTLSCertFile},
		{name: "cert unreadable", env: map[string]string{EnvTLSCertFile: certFile + ".missing", EnvTLSKeyFile: keyFile}, wantErr: EnvTLSCertFile},
		{name: "key unreadable", env: map[string]string{EnvTLSCertFile: certFile, EnvTLSKeyFile: keyFile + ".missing"}, wantErr: EnvTLSKeyFile},
		{name: "cert invalid", env: map[string]string{EnvTLSCertFile: garbage, EnvTLSKeyFile: keyFile}, wantErr: EnvTLSCertFile},
		{name: "key invalid", env: map[string]string{EnvTLSCertFile: certFile, EnvTLSKeyFile: garbage}, wantErr: EnvTLSKeyFile},
		{name: "redirect without TLS", env: map[string]string{EnvTLSRedirectAddr: ":8079"}, wantErr: EnvTLSRedirectAddr},
		{name: "redirect not an address", env: map[string]string{EnvTLSCertFile: certFile, EnvTLSKeyFile: keyFile, EnvTLSRedirectAddr: "http://x"}, wantErr: EnvTLSRedirectAddr},
		{name: "redirect on the proxy port", env: map[string]string{EnvTLSCertFile: certFile, EnvTLSKeyFile: keyFile, EnvTLSRedirectAddr: ":8080"}, wantErr: EnvTLSRedirectAddr},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["BACKENDS"] = "a:1"
			c, err := Load(envconf.FromMap(tc.env))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, c)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("want an error naming %s, got %v", tc.wantErr, err)
			}
		})
	}
}

// TestRedisTLSVariables: the balancer reads REDIS_CA_FILE, REDIS_CERT_FILE
// and REDIS_KEY_FILE with REDIS_URL (redisstore.ReadConn; its own tests
// cover every rule), and no error carries the URL's password.
func TestRedisTLSVariables(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	tlstest.NewCA(t, ca, "test CA")
	const url = "rediss://lbscale:s3cret-pw@redis:6380/0"
	c, err := Load(envconf.FromMap(map[string]string{redisstore.EnvRedisURL: url, redisstore.EnvRedisCAFile: ca}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis.URL != url || c.Redis.CAFile != ca || !c.Redis.TLS() {
		t.Fatalf("read %+v", c.Redis)
	}
	for name, env := range map[string]map[string]string{
		redisstore.EnvRedisCAFile:  {redisstore.EnvRedisURL: strings.Replace(url, "rediss", "redis", 1), redisstore.EnvRedisCAFile: ca},
		redisstore.EnvRedisURL:     {redisstore.EnvRedisURL: "rediss://lbscale:s3cret-pw@redis:6380/db"},
		redisstore.EnvRedisKeyFile: {redisstore.EnvRedisURL: url, redisstore.EnvRedisCertFile: ca},
	} {
		_, err := Load(envconf.FromMap(env))
		if err == nil || !strings.Contains(err.Error(), name+":") || strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("%v: error %v, want one naming %s without the password", env, err, name)
		}
	}
}

func TestParseRetryOn(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int // nil with ok false: an error
		ok   bool
	}{
		{in: "500,502,503,504", want: []int{500, 502, 503, 504}, ok: true},
		{in: " 503 , 504 ", want: []int{503, 504}, ok: true},
		{in: "599", want: []int{599}, ok: true},
		{in: "none", want: []int{}, ok: true},
		{in: " none ", want: []int{}, ok: true},
		{in: "404"},
		{in: "499"},
		{in: "600"},
		{in: "5xx"},
		{in: "500,,502"},
		{in: "500,"},
		{in: "none,500"},
		{in: "NONE"},
		{in: "500;502"},
	} {
		got, err := ParseRetryOn(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseRetryOn(%q) = %v, %v; want ok %v", tc.in, got, err, tc.ok)
			continue
		}
		if tc.ok && !slices.Equal(got, tc.want) {
			t.Errorf("ParseRetryOn(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestLoadRetryOn: RETRY_ON defaults to 500,502,503,504, an empty value is
// the default, and a bad one fails naming the variable.
func TestLoadRetryOn(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want []int
		err  bool
	}{
		{env: map[string]string{}, want: []int{500, 502, 503, 504}},
		{env: map[string]string{"RETRY_ON": ""}, want: []int{500, 502, 503, 504}},
		{env: map[string]string{"RETRY_ON": "none"}, want: []int{}},
		{env: map[string]string{"RETRY_ON": "503"}, want: []int{503}},
		{env: map[string]string{"RETRY_ON": "429"}, err: true},
	} {
		tc.env["BACKENDS"] = "a:1"
		c, err := Load(envconf.FromMap(tc.env))
		if tc.err {
			if err == nil || !strings.Contains(err.Error(), "RETRY_ON") {
				t.Errorf("%v: error %v, want one naming RETRY_ON", tc.env, err)
			}
			continue
		}
		if err != nil || !slices.Equal(c.RetryOn, tc.want) {
			t.Errorf("%v: RetryOn %v, err %v; want %v", tc.env, c.RetryOn, err, tc.want)
		}
	}
}
