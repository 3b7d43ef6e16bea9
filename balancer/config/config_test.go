package config

import (
	"strings"
	"testing"
	"time"

	"lbscale/balancer/envconf"
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
