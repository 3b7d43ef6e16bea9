package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"lbscale/internal/state"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv"
	"lbscale/internal/testenv/statetest"
)

// TestScalerOverMutualTLSRedis: the real scaler reaches a TLS-only Redis
// that requires a password, an ACL user and a client certificate, through
// REDIS_URL=rediss://…, REDIS_CA_FILE, REDIS_CERT_FILE and REDIS_KEY_FILE:
// it takes the lease there and leads. MIN_REPLICAS=0, so it needs no
// container (nor a Docker engine) to get that far. Its output never
// carries the password.
func TestScalerOverMutualTLSRedis(t *testing.T) {
	const pass = "scaler-Pa55-7d2e"
	srv := statetest.StartRedisTLS(t, statetest.TLSOptions{Password: "default-" + pass, User: "scaler", UserPassword: pass, RequireClientCert: true})
	conn := redisstore.Conn{URL: srv.URLAs("scaler", pass), CAFile: srv.TLS.CAFile, CertFile: srv.TLS.ClientCert, KeyFile: srv.TLS.ClientKey}
	p := startScaler(t, "scaler-tls", map[string]string{
		redisstore.EnvRedisURL: conn.URL, redisstore.EnvRedisCAFile: conn.CAFile,
		redisstore.EnvRedisCertFile: conn.CertFile, redisstore.EnvRedisKeyFile: conn.KeyFile,
		"POOL": "tlsscaler", "MIN_REPLICAS": "0", "LEASE_TTL": "1s", "LOG_LEVEL": "debug",
	})

	opt, err := conn.Options()
	if err != nil {
		t.Fatal(err)
	}
	rdb := opt.NewClient()
	defer rdb.Close()
	leader := state.NewKeys("tlsscaler").Leader()
	testenv.Eventually(t, 15*time.Second, "the scaler's lease in Redis", func() bool {
		v, _ := rdb.Get(context.Background(), leader).Result()
		return strings.HasPrefix(v, "scaler-tls/") // SCALER_ID and the process's own suffix
	})
	testenv.Eventually(t, 5*time.Second, "the scaler leads", func() bool { s, ok := p.status(t); return ok && s.Leader })
	// Stopped before its output is read (the buffer is written while it
	// runs); a clean stop releases the lease over the same connection.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("scaler exit after SIGTERM: %v\n%s", err, p.out)
	}
	if n, err := rdb.Exists(context.Background(), leader).Result(); err != nil || n != 0 {
		t.Fatalf("lease not released: %d %v", n, err)
	}
	if strings.Contains(p.out.String(), pass) {
		t.Fatalf("scaler output carries the Redis password:\n%s", p.out)
	}
}
