package control_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"lbscale/internal/state"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv"
	"lbscale/internal/testenv/statetest"
	"lbscale/scaler/config"
	"lbscale/scaler/control"
	"lbscale/scaler/driver/drivertest"
)

// Every scaler's /status describes the pool as the leader sees it, so that
// loadtest --status may poll any of them: a follower reports the leader's
// replicas, desired count and load from the leader's Summary in Redis.
func TestFollowerStatusReportsTheLeadersPool(t *testing.T) {
	srv := statetest.StartRedis(t)
	eng := drivertest.NewEngine(nil)
	const pool = "follow"
	start := func(id string) *control.Controller {
		store, err := redisstore.New(srv.URL(), pool)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		cfg := config.Config{
			Pool: pool, MinReplicas: 3, MaxReplicas: 5, TargetInflight: 4, IdleTimeout: time.Hour,
			ScaleDownSpec: "@every 1h", DrainTimeout: 10 * time.Second, HealthTimeout: 5 * time.Second,
			LeaseTTL: time.Second, ReconcileInterval: 200 * time.Millisecond, PollInterval: 50 * time.Millisecond,
			StableWindow: time.Minute, PanicWindow: time.Nanosecond, ID: id,
		}
		c := control.New(control.Options{Config: cfg, Store: store, Driver: eng.Driver(pool), Health: eng.Health,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
		return c
	}
	leader := start("scaler-a")
	testenv.Eventually(t, 10*time.Second, "a leads", leader.Leader)
	follower := start("scaler-b")
	testenv.Eventually(t, 10*time.Second, "3 ready", func() bool {
		return leader.Status(context.Background()).Replicas == 3
	})
	// A balancer's load: 5 in flight over the pool.
	bal, err := redisstore.New(srv.URL(), pool)
	if err != nil {
		t.Fatal(err)
	}
	defer bal.Close()
	var req state.SyncRequest
	req.Balancer, req.TTL = "bal-1", time.Minute
	for i, id := range eng.Running(pool) {
		n := int64(1 + i%2*2) // 1, 3, 1
		req.Slots = append(req.Slots, state.SlotUse{ID: id, Local: n, Floor: n, Limit: 4})
	}
	if _, err := bal.Sync(context.Background(), req); err != nil {
		t.Fatal(err)
	}

	var ls, fs control.Status
	testenv.Eventually(t, 10*time.Second, "the follower reports the leader's pool", func() bool {
		ls, fs = leader.Status(context.Background()), follower.Status(context.Background())
		return !fs.Leader && fs.LeaderID == ls.Instance && fs.Replicas == 3 && fs.Inflight == 5 && fs.Desired == ls.Desired
	})
	if fs.Desired != 3 || fs.Starting != 0 || fs.Draining != 0 || !ls.Leader {
		t.Fatalf("follower %+v, leader %+v", fs, ls)
	}
	if len(fs.Pools) != 1 || fs.Pools[0] != pool {
		t.Fatalf("pools %v, want the one pool", fs.Pools)
	}
}

// The start gate probes the pool's HEALTH_PATH, and its error names the
// URL it probed.
func TestHTTPHealthProbesThePath(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status/200" {
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()
	if err := control.HTTPHealth(srv.Client(), "/status/200")(ctx, addr); err != nil {
		t.Fatalf("served path: %v", err)
	}
	err := control.HTTPHealth(srv.Client(), "")(ctx, addr)
	if err == nil || !strings.Contains(err.Error(), "GET http://"+addr+"/healthz") || !strings.Contains(err.Error(), "404") {
		t.Fatalf("default path on a server without it: %v, want a 404 naming /healthz", err)
	}
}
