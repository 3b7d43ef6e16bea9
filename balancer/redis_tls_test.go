package main_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lbscale/internal/state"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv/proctest"
	"lbscale/internal/testenv/statetest"
)

const redisPass = "lb-Pa55-e81c" // distinctive: found in output means leaked

// TestBalancerOverRedisTLS: the real balancer with
// REDIS_URL=rediss://user:password@… and REDIS_CA_FILE (a private CA)
// serves a request and shares its state through the TLS-only,
// password-protected Redis; its output never carries the password.
func TestBalancerOverRedisTLS(t *testing.T) {
	srv := statetest.StartRedisTLS(t, statetest.TLSOptions{Password: "default-" + redisPass, User: "lbscale", UserPassword: redisPass})
	conn := redisstore.Conn{URL: srv.URLAs("lbscale", redisPass), CAFile: srv.TLS.CAFile}
	addr := web(t, "w1")
	b := balancer(t, "BACKENDS="+addr, "POOL=tls", "BALANCER_ID=tls-b1", "LOG_LEVEL=info",
		redisstore.EnvRedisURL+"="+conn.URL, redisstore.EnvRedisCAFile+"="+conn.CAFile)

	res, err := http.Get(b.proxy + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}

	// Read what the balancer wrote, over TLS as the same user.
	opt, err := conn.Options()
	if err != nil {
		t.Fatal(err)
	}
	rdb := opt.NewClient()
	defer rdb.Close()
	keys := state.NewKeys("tls")
	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, zerr := rdb.ZScore(ctx, keys.Balancers(), "tls-b1").Result()
		n, herr := rdb.Exists(ctx, keys.Balancer("tls-b1")).Result()
		if zerr == nil && herr == nil && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("balancer tls-b1 not in Redis: %v %v %d\n%s", zerr, herr, n, b.proc.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := status(t, b.admin); !s.StoreUp || s.Balancers != 1 || len(s.Backends) != 1 {
		t.Fatalf("status: %+v", s)
	}
	out := b.proc.Output()
	if strings.Contains(out, redisPass) {
		t.Fatalf("balancer output carries the Redis password:\n%s", out)
	}
	if !strings.Contains(out, "rediss://lbscale:xxxxx@") {
		t.Errorf("start-up line does not name the Redis (redacted):\n%s", out)
	}
}

// TestBalancerRedisWrongPassword: a wrong password does not stop the
// balancer (Redis may be fixed while it runs on local counts) but its
// start-up warning says what is wrong, without the password.
func TestBalancerRedisWrongPassword(t *testing.T) {
	srv := statetest.StartRedisTLS(t, statetest.TLSOptions{Password: redisPass})
	b := balancer(t, "BACKENDS="+web(t, "w1"), "LOG_LEVEL=warn",
		redisstore.EnvRedisURL+"="+srv.URLAs("", "wrong-"+redisPass), redisstore.EnvRedisCAFile+"="+srv.TLS.CAFile)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(b.proc.Output(), "WRONGPASS") {
		if time.Now().After(deadline) {
			t.Fatalf("no WRONGPASS warning:\n%s", b.proc.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := b.proc.Output()
	if !strings.Contains(out, "wrong user or password in REDIS_URL") || strings.Contains(out, redisPass) {
		t.Fatalf("warning lacks the hint or carries the password:\n%s", out)
	}
}

// TestBalancerRedisBadConfigExits2: an unusable Redis TLS setting stops
// the balancer with status 2, naming the variable and not the password.
func TestBalancerRedisBadConfigExits2(t *testing.T) {
	bin := proctest.Build(t, "balancer")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tlsURL := "rediss://:" + redisPass + "@127.0.0.1:1/0"
	cases := []struct {
		name string
		env  []string
		want string
	}{
		{"CA file unreadable", []string{redisstore.EnvRedisURL + "=" + tlsURL, redisstore.EnvRedisCAFile + "=" + missing}, redisstore.EnvRedisCAFile},
		{"CA file with redis://", []string{redisstore.EnvRedisURL + "=redis://:" + redisPass + "@127.0.0.1:1/0", redisstore.EnvRedisCAFile + "=" + missing}, redisstore.EnvRedisCAFile},
		{"client cert without key", []string{redisstore.EnvRedisURL + "=" + tlsURL, redisstore.EnvRedisCertFile + "=" + missing}, redisstore.EnvRedisKeyFile},
		{"url does not parse", []string{redisstore.EnvRedisURL + "=redis://:" + redisPass + "@127.0.0.1:port/0"}, redisstore.EnvRedisURL},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := exitsNaming(t, bin, append([]string{"BACKENDS=127.0.0.1:1"}, tc.env...), tc.want+":")
			if strings.Contains(out, redisPass) {
				t.Fatalf("message carries the password: %s", out)
			}
		})
	}
}
