package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lbscale/balancer/envconf"
	"lbscale/balancer/tlsterm/tlstest"
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
			if c.ShareState || c.RedisURL == "" {
				t.Errorf("%+v", c)
			}
		}},
		{name: "no backends at all", env: map[string]string{}, wantErr: "BACKENDS"},
		{name: "negative limit", env: map[string]string{"BACKENDS": "a:1", "MAX_INFLIGHT": "-1"}, wantErr: "MAX_INFLIGHT"},
		{name: "bogus policy", env: map[string]string{"BACKENDS": "a:1", "LB_POLICY": "bogus"}, wantErr: "LB_POLICY"},
		{name: "bad redis url", env: map[string]string{"REDIS_URL": "localhost:6379"}, wantErr: "REDIS_URL"},
		{name: "duration words", env: map[string]string{"BACKENDS": "a:1", "QUEUE_TIMEOUT": "soon"}, wantErr: "QUEUE_TIMEOUT"},
		{name: "weight zero", env: map[string]string{"BACKENDS": "a:1=0"}, wantErr: "BACKENDS"},
		{name: "hash key", env: map[string]string{"BACKENDS": "a:1", "HASH_KEY": "body"}, wantErr: "HASH_KEY"},
		{name: "hash key header with a bad name", env: map[string]string{"BACKENDS": "a:1", "HASH_KEY": "header:a(b"}, wantErr: "HASH_KEY"},
		{name: "sticky cookie name", env: map[string]string{"BACKENDS": "a:1", "STICKY_COOKIE": "a;b"}, wantErr: "STICKY_COOKIE"},
		{name: "load factor NaN", env: map[string]string{"BACKENDS": "a:1", "HASH_LOAD_FACTOR": "NaN"}, wantErr: "HASH_LOAD_FACTOR"},
		{name: "backend listed twice", env: map[string]string{"BACKENDS": "a:1,b:2,a:1=3"}, wantErr: "BACKENDS"},
		{name: "backend with a scheme", env: map[string]string{"BACKENDS": "http://a:1"}, wantErr: "BACKENDS"},
		{name: "backend with a blank", env: map[string]string{"BACKENDS": "a b:80"}, wantErr: "BACKENDS"},
		{name: "backend ipv6", env: map[string]string{"BACKENDS": "[::1]:7001"}, check: func(t *testing.T, c Config) {
			if len(c.Backends) != 1 || c.Backends[0].Addr != "[::1]:7001" {
				t.Errorf("%+v", c.Backends)
			}
		}},
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
