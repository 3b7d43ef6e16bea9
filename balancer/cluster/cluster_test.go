package cluster

import (
	"context"
	"testing"
	"time"

	"lbscale/balancer/state"
)

func TestSlowStartLimit(t *testing.T) {
	cases := []struct {
		limit     int64
		age, ramp time.Duration
		want      int64
	}{
		{8, 0, 4 * time.Second, 1},
		{8, time.Second, 4 * time.Second, 2},
		{8, 2 * time.Second, 4 * time.Second, 4},
		{8, 3900 * time.Millisecond, 4 * time.Second, 8},
		{8, 5 * time.Second, 4 * time.Second, 8},
		{8, -time.Second, 4 * time.Second, 1}, // clock skew: never 0
		{1, 0, 4 * time.Second, 1},
		{8, 0, 0, 8}, // SLOW_START=0 disables the ramp
	}
	for _, tc := range cases {
		if got := SlowStartLimit(tc.limit, tc.age, tc.ramp); got != tc.want {
			t.Errorf("SlowStartLimit(%d, %v, %v) = %d, want %d", tc.limit, tc.age, tc.ramp, got, tc.want)
		}
	}
}

func TestDemandWeight(t *testing.T) {
	cases := []struct {
		prev, now float64
		want      float64
	}{
		{34, 36, 36},     // a rise is followed at once
		{36, 35, 35.975}, // a dip barely moves it (25 ms interval)
		{36, 0, 35.1},    // decays over about a second
	}
	for _, tc := range cases {
		got := DemandWeight(tc.prev, tc.now, 25*time.Millisecond)
		if got < tc.want-0.001 || got > tc.want+0.001 {
			t.Errorf("DemandWeight(%v, %v) = %v, want %v", tc.prev, tc.now, got, tc.want)
		}
	}
}

// TestRegistryDrivesPool: the scaler's registry replaces static backends,
// starting entries stay out, draining ones stay in but unroutable, and
// backends keep their counters across changes.
func TestRegistryDrivesPool(t *testing.T) {
	now := time.Unix(1000, 0)
	store := state.NewMemory(func() time.Time { return now })
	capacity := 0
	s := New(Options{Store: store, ID: "a", Interval: 25 * time.Millisecond, Limit: 4,
		SlowStart: 4 * time.Second, Static: []Static{{Addr: "static:1", Weight: 1}},
		OnCapacity: func() { capacity++ }, Now: func() time.Time { return now }})
	ctx := context.Background()
	s.Sync(ctx)
	if set := s.Set(); len(set.Backends) != 1 || set.Backends[0].ID != "static:1" || set.Backends[0].Grant() != 4 {
		t.Fatalf("static pool: %+v", set.Backends)
	}
	_ = store.PutBackend(ctx, state.Backend{ID: "w1", Addr: "10.0.0.1:8080", State: state.Ready, Since: now.Add(-time.Second)})
	_ = store.PutBackend(ctx, state.Backend{ID: "w2", Addr: "10.0.0.2:8080", State: state.Starting})
	s.Sync(ctx)
	set := s.Set()
	if len(set.Backends) != 1 || set.Backends[0].ID != "w1" {
		t.Fatalf("registry should replace static and omit starting: %+v", set.Backends)
	}
	w1 := set.Backends[0]
	s.Sync(ctx)
	if w1.Limit() != 1 {
		t.Fatalf("w1 ready for 1s of a 4s ramp: limit %d, want 1", w1.Limit())
	}
	now = now.Add(5 * time.Second)
	s.Sync(ctx)
	if w1.Limit() != 4 || w1.Grant() != 4 {
		t.Fatalf("after the ramp: limit %d grant %d", w1.Limit(), w1.Grant())
	}
	w1.TryAcquire()
	_ = store.PutBackend(ctx, state.Backend{ID: "w1", Addr: "10.0.0.1:8080", State: state.Draining, Since: now})
	s.Sync(ctx)
	set = s.Set()
	if len(set.Backends) != 1 || set.Backends[0] != w1 || !w1.Draining() || w1.Available() || w1.Local() != 1 {
		t.Fatalf("draining backend should stay tracked but unroutable: %+v", set.Backends)
	}
	if s.State("w1") != state.Draining {
		t.Fatalf("state %q", s.State("w1"))
	}
	if capacity == 0 {
		t.Fatal("grant increases never signalled capacity")
	}
}
