package redisstore_test

import (
	"context"
	"testing"
	"time"

	"lbscale/internal/state"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv/statetest"
)

// A pool's Store from ForPool shares the client and keeps to its own keys;
// closing it leaves the client, and the other pools, working.
func TestForPoolSharesTheClientNotTheKeys(t *testing.T) {
	srv := statetest.StartRedis(t)
	root, err := redisstore.New(srv.URL(), "web")
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	api := root.ForPool("api")
	ctx := context.Background()
	if err := root.PutBackend(ctx, state.Backend{ID: "w1", Addr: "10.0.0.1:8080", State: state.Ready}); err != nil {
		t.Fatal(err)
	}
	if err := api.PutBackend(ctx, state.Backend{ID: "a1", Addr: "10.0.0.2:8080", State: state.Ready}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		s    *redisstore.Store
		want string
	}{{root, "w1"}, {api, "a1"}} {
		bs, err := tc.s.Backends(ctx)
		if err != nil || len(bs) != 1 || bs[0].ID != tc.want {
			t.Fatalf("registry %v %v, want %s alone", bs, err, tc.want)
		}
	}
	if api.Keys().Registry() == root.Keys().Registry() {
		t.Fatal("the two pools share a registry key")
	}
	// Each pool has its own lease.
	if l, err := root.AcquireLease(ctx, "a", time.Minute); err != nil || !l.HeldBy("a") {
		t.Fatalf("web lease: %+v %v", l, err)
	}
	if l, err := api.AcquireLease(ctx, "b", time.Minute); err != nil || !l.HeldBy("b") {
		t.Fatalf("api lease while web's is held: %+v %v", l, err)
	}

	if err := api.Close(); err != nil {
		t.Fatal(err)
	}
	if err := root.Ping(ctx); err != nil {
		t.Fatalf("the shared client was closed with a pool's store: %v", err)
	}
	other := root.ForPool("other")
	if _, err := other.Backends(ctx); err != nil {
		t.Fatalf("a store made after another pool's Close: %v", err)
	}
	if err := root.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Backends(ctx); err == nil {
		t.Fatal("a pool's store still works after the client it borrows was closed")
	}
}
