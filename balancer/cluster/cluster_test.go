package cluster

import (
	"context"
	"testing"
	"time"

	"lbscale/balancer/pool"
	"lbscale/internal/state"
	"lbscale/internal/state/memstore"
)

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
	store := memstore.New(func() time.Time { return now })
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

// The outage shares of the balancers live at the last sync add up to exactly
// the limit on every backend, and each is floor or ceil of limit/peers.
func TestDegradedShare(t *testing.T) {
	for limit := int64(0); limit <= 9; limit++ {
		for peers := int64(1); peers <= 6; peers++ {
			for index := int64(0); index < 5; index++ {
				sum := int64(0)
				for rank := int64(0); rank < peers; rank++ {
					s := DegradedShare(limit, peers, rank, index)
					if s < limit/peers || s > (limit+peers-1)/peers {
						t.Fatalf("DegradedShare(%d, %d, %d, %d) = %d, not floor or ceil of %d/%d", limit, peers, rank, index, s, limit, peers)
					}
					sum += s
				}
				if sum != limit {
					t.Fatalf("limit %d, %d peers, backend %d: shares sum to %d", limit, peers, index, sum)
				}
			}
		}
	}
	// More balancers than slots: each still holds a slot on some backend.
	for rank := int64(0); rank < 4; rank++ {
		got := int64(0)
		for index := int64(0); index < 4; index++ {
			got += DegradedShare(2, 4, rank, index)
		}
		if got == 0 {
			t.Fatalf("balancer %d of 4 holds no slot on 4 backends of limit 2", rank)
		}
	}
}

// scriptedStore answers Sync with a fixed picture of the cluster, or fails
// while down; it records the last request.
type scriptedStore struct {
	*memstore.Store
	down  bool
	res   state.SyncResult
	last  state.SyncRequest
	syncs int
}

func (f *scriptedStore) Sync(_ context.Context, req state.SyncRequest) (state.SyncResult, error) {
	f.last, f.syncs = req, f.syncs+1
	if f.down {
		return state.SyncResult{}, context.DeadlineExceeded
	}
	n := len(req.Slots)
	res := f.res
	res.Grants, res.Targets, res.Remote, res.LastSeen = make([]int64, n), make([]int64, n), make([]int64, n), make([]time.Time, n)
	for i := range n {
		res.Grants[i], res.Targets[i] = f.res.Grants[0], f.res.Targets[0]
		if req.Hold {
			res.Grants[i] = req.Slots[i].Floor
		}
	}
	return res, nil
}

// A Redis outage longer than the TTL moves a busy balancer to its outage
// share, lowering a grant above it as requests finish (not keeping the
// whole grant it held), and when Redis returns it takes no new slots for a
// TTL so the others can report what they hold first.
func TestOutageMovesToDegradedShareAndHoldsOnReturn(t *testing.T) {
	now := time.Unix(1000, 0)
	store := &scriptedStore{Store: memstore.New(nil), res: state.SyncResult{Grants: []int64{4}, Targets: []int64{4}, Balancers: 3, Rank: 1}}
	s := New(Options{Store: store, ID: "b", Share: true, Interval: 100 * time.Millisecond, Limit: 4,
		Static: []Static{{Addr: "w:1", Weight: 1}}, Now: func() time.Time { return now }})
	ctx := context.Background()
	s.Sync(ctx)
	b := s.Set().Backends[0]
	for range 3 {
		if !b.TryAcquire() {
			t.Fatal("setup: acquire")
		}
	}
	if b.Grant() != 4 {
		t.Fatalf("grant %d, want 4", b.Grant())
	}
	store.down = true
	now = now.Add(500 * time.Millisecond) // within the TTL (1s): grants stand
	s.Sync(ctx)
	if b.Grant() != 4 {
		t.Fatalf("within the TTL the grant should stand: %d", b.Grant())
	}
	now = now.Add(time.Second)
	s.Sync(ctx)
	// Rank 1 of 3 on backend 0 of limit 4: share 1. Three are in flight, so
	// the grant drops to 3 now and follows them down.
	if g, want := b.Grant(), int64(3); g != want {
		t.Fatalf("after the TTL: grant %d, want %d (in flight)", g, want)
	}
	b.Release()
	b.Release()
	if g := b.Grant(); g != 1 {
		t.Fatalf("after two requests finished: grant %d, want the share 1", g)
	}
	store.down = false
	now = now.Add(100 * time.Millisecond)
	s.Sync(ctx)
	checkHold(t, s, store, b, &now, 1, 4)
}

// checkHold runs a sync within the hold, where the balancer must ask for its
// floors and keep grant held, and one a TTL later, where it must ask
// normally and take the store's grant after.
func checkHold(t *testing.T, s *Syncer, store *scriptedStore, b *pool.Backend, now *time.Time, held, after int64) {
	t.Helper()
	*now = now.Add(100 * time.Millisecond)
	s.Sync(context.Background())
	if !store.last.Hold || b.Grant() != held {
		t.Fatalf("within the hold: hold %v, grant %d; want held at %d", store.last.Hold, b.Grant(), held)
	}
	*now = now.Add(1100 * time.Millisecond)
	s.Sync(context.Background())
	if store.last.Hold || b.Grant() != after {
		t.Fatalf("a TTL later: hold %v, grant %d; want %d", store.last.Hold, b.Grant(), after)
	}
}

// A balancer that has never reached the store knows no peers: it serves
// nothing for a TTL (Redis may just be starting), then one slot per backend,
// not the whole limit that every other blind balancer would also take.
func TestNeverSyncedServesOneSlot(t *testing.T) {
	now := time.Unix(1000, 0)
	store := &scriptedStore{Store: memstore.New(nil), down: true}
	s := New(Options{Store: store, ID: "a", Share: true, Interval: 25 * time.Millisecond, Limit: 4,
		Static: []Static{{Addr: "w:1", Weight: 1}, {Addr: "w:2", Weight: 1}}, Now: func() time.Time { return now }})
	ctx := context.Background()
	s.Sync(ctx)
	for _, b := range s.Set().Backends {
		if b.Grant() != 0 {
			t.Fatalf("%s: grant %d before any sync, want 0", b.ID, b.Grant())
		}
	}
	now = now.Add(1100 * time.Millisecond)
	s.Sync(ctx)
	for _, b := range s.Set().Backends {
		if b.Grant() != 0 {
			t.Fatalf("%s: grant %d just past the TTL, want 0 until the raise delay passed", b.ID, b.Grant())
		}
	}
	now = now.Add(RaiseDelay(25 * time.Millisecond))
	s.Sync(ctx)
	for _, b := range s.Set().Backends {
		if b.Grant() != 1 {
			t.Fatalf("%s: grant %d after a TTL and the raise delay without the store, want 1", b.ID, b.Grant())
		}
	}
}

// When the store reports a new generation (it lost everyone's grants), the
// balancer takes no raise from that answer and holds its grants for a TTL,
// so the others can report what they hold before any grant grows.
func TestLostStoreStateHoldsGrants(t *testing.T) {
	now := time.Unix(1000, 0)
	store := &scriptedStore{Store: memstore.New(nil), res: state.SyncResult{Grants: []int64{1}, Targets: []int64{1}, Balancers: 2, Generation: 7}}
	s := New(Options{Store: store, ID: "a", Share: true, Interval: 100 * time.Millisecond, Limit: 4,
		Static: []Static{{Addr: "w:1", Weight: 1}}, Now: func() time.Time { return now }})
	ctx := context.Background()
	s.Sync(ctx)
	b := s.Set().Backends[0]
	if b.Grant() != 1 {
		t.Fatalf("grant %d, want 1", b.Grant())
	}
	// Redis restarts empty and would now give this balancer the whole limit.
	store.res.Grants, store.res.Targets, store.res.Generation = []int64{4}, []int64{4}, 8
	now = now.Add(100 * time.Millisecond)
	s.Sync(ctx)
	if b.Grant() != 1 {
		t.Fatalf("took grant %d from a store that just lost its state, want to keep 1", b.Grant())
	}
	checkHold(t, s, store, b, &now, 1, 4)
}

// A backend that leaves the registry with requests in flight and returns
// (a registry rebuilt after Redis lost it) comes back with its true count.
func TestReturningBackendKeepsItsCount(t *testing.T) {
	now := time.Unix(1000, 0)
	store := memstore.New(func() time.Time { return now })
	s := New(Options{Store: store, ID: "a", Interval: 25 * time.Millisecond, Limit: 4, Now: func() time.Time { return now }})
	ctx := context.Background()
	w1 := state.Backend{ID: "w1", Addr: "10.0.0.1:8080", State: state.Ready, Since: now.Add(-time.Minute)}
	_ = store.PutBackend(ctx, w1)
	s.Sync(ctx)
	b := s.Set().Backends[0]
	if !b.TryAcquire() {
		t.Fatal("setup: acquire")
	}
	_ = store.RemoveBackend(ctx, "w1")
	s.Sync(ctx)
	if n := len(s.Set().Backends); n != 0 {
		t.Fatalf("w1 left the registry but %d backends remain", n)
	}
	_ = store.PutBackend(ctx, w1)
	s.Sync(ctx)
	set := s.Set()
	if len(set.Backends) != 1 || set.Backends[0] != b || b.Local() != 1 {
		t.Fatalf("w1 returned as %+v with %d in flight; want the same record with its 1 request", set.Backends, set.Backends[0].Local())
	}
	// Once its requests are done, a departed backend is forgotten.
	_ = store.RemoveBackend(ctx, "w1")
	s.Sync(ctx)
	b.Release()
	_ = store.PutBackend(ctx, state.Backend{ID: "w2", Addr: "10.0.0.2:8080", State: state.Ready})
	s.Sync(ctx)
	if len(s.retired) != 0 {
		t.Fatalf("retired backends kept after their requests ended: %v", s.retired)
	}
}

// TestComingWithoutStaticBackends: a pool with no static BACKENDS can only
// come from a scaler, so a request waits for it even before the scaler has
// written a registry (scale from zero with MIN_REPLICAS=0); a static pool
// with nothing registered has nothing coming.
func TestComingWithoutStaticBackends(t *testing.T) {
	store := memstore.New(nil)
	dynamic := New(Options{Store: store, ID: "a", Interval: 25 * time.Millisecond, Limit: 4})
	dynamic.Sync(context.Background())
	if !dynamic.Coming() {
		t.Error("no static BACKENDS, no registry yet: a scaler may start one, so capacity may come")
	}
	static := New(Options{Store: memstore.New(nil), ID: "b", Interval: 25 * time.Millisecond, Limit: 4,
		Static: []Static{{Addr: "127.0.0.1:1"}}})
	static.Sync(context.Background())
	if static.Coming() {
		t.Error("static BACKENDS and no scaler: nothing comes")
	}
}
