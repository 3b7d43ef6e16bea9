package redisstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"lbscale/internal/state"
	"lbscale/internal/state/memstore"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv/statetest"
)

// newRedis returns a store on a fresh redis-server.
func newRedis(t *testing.T) (*redisstore.Store, *statetest.Server) {
	t.Helper()
	s, srv, _ := newFreshRedis(t)
	return s, srv
}

func newFreshRedis(t *testing.T) (*redisstore.Store, *statetest.Server, *redis.Client) {
	t.Helper()
	srv := statetest.StartRedis(t)
	s, err := redisstore.New(srv.URL(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return s, srv, rdb
}

// simBalancer follows the balancer's side of the slot protocol: shrink the
// grant toward the last target (never below in-flight) before syncing, and
// take the returned grant after.
type simBalancer struct {
	id     string
	queued int64
	local  []int64
	grant  []int64
	target []int64
}

func newSim(id string, n int) *simBalancer {
	return &simBalancer{id: id, local: make([]int64, n), grant: make([]int64, n), target: make([]int64, n)}
}

func (b *simBalancer) sync(t *testing.T, s state.Store, ids []string, limit int64) state.SyncResult {
	t.Helper()
	req := state.SyncRequest{Balancer: b.id, Queued: b.queued, TTL: 2 * time.Second}
	for i, id := range ids {
		floor := min(b.grant[i], max(b.local[i], b.target[i]))
		b.grant[i] = floor
		req.Slots = append(req.Slots, state.SlotUse{ID: id, Local: b.local[i], Floor: floor, Limit: limit})
	}
	res, err := s.Sync(context.Background(), req)
	if err != nil {
		t.Fatalf("sync %s: %v", b.id, err)
	}
	copy(b.grant, res.Grants)
	copy(b.target, res.Targets)
	return res
}

func totalGrant(b *simBalancer) (n int64) {
	for _, g := range b.grant {
		n += g
	}
	return n
}

func TestSyncSingleBalancerGetsWholeLimit(t *testing.T) {
	s, _ := newRedis(t)
	b := newSim("a", 2)
	res := b.sync(t, s, []string{"x", "y"}, 4)
	if res.Balancers != 1 || res.Grants[0] != 4 || res.Grants[1] != 4 {
		t.Fatalf("want whole limit for the only balancer, got %+v", res)
	}
	if res.HasRegistry {
		t.Fatalf("no scaler wrote a registry, yet HasRegistry")
	}
}

// TestSyncGrantsNeverExceedLimit drives several balancers through random
// demand and in-flight changes and checks, after every sync, the invariant
// the cluster-wide MAX_INFLIGHT rests on: recorded grants on a backend sum
// to at most its limit, and no balancer has more in flight than its grant.
func TestSyncGrantsNeverExceedLimit(t *testing.T) {
	s, _ := newRedis(t)
	ids := []string{"w1", "w2", "w3", "w4"}
	const limit = 4
	rng := rand.New(rand.NewPCG(1, 2))
	bals := []*simBalancer{newSim("a", 4), newSim("b", 4), newSim("c", 4)}
	for step := 0; step < 600; step++ {
		b := bals[rng.IntN(len(bals))]
		// Requests finish and start within the current grant.
		for i := range ids {
			b.local[i] = min(b.grant[i], max(0, b.local[i]+int64(rng.IntN(5))-2))
		}
		b.queued = int64(rng.IntN(10))
		b.sync(t, s, ids, limit)
		for i := range ids {
			var sum int64
			for _, o := range bals {
				if o.local[i] > o.grant[i] {
					t.Fatalf("step %d: %s has %d in flight on %s over its grant %d", step, o.id, o.local[i], ids[i], o.grant[i])
				}
				sum += o.grant[i]
			}
			if sum > limit {
				t.Fatalf("step %d: grants on %s sum to %d > limit %d", step, ids[i], sum, limit)
			}
		}
	}
}

// TestSyncDividesByDemand: with a 9:1 demand split over four backends of
// limit 4, the small balancer still gets whole slots (fractions carry over
// between backends) and the slots are all handed out.
func TestSyncDividesByDemand(t *testing.T) {
	s, _ := newRedis(t)
	ids := []string{"w1", "w2", "w3", "w4"}
	a, b := newSim("a", 4), newSim("b", 4)
	// Closed loops of 36 and 4 clients: each interval every request
	// finishes, slots above target go back (pool.Backend.Release), and the
	// queue refills what remains.
	step := func(x *simBalancer, clients int64) {
		var running int64
		for i := range ids {
			done := x.local[i]
			x.grant[i] = max(x.target[i], x.grant[i]-done)
			x.local[i] = 0
			x.local[i] = min(x.grant[i], clients-running)
			running += x.local[i]
		}
		x.queued = clients - running
	}
	for round := 0; round < 8; round++ {
		step(a, 36)
		a.sync(t, s, ids, 4)
		step(b, 4)
		b.sync(t, s, ids, 4)
	}
	ga, gb := totalGrant(a), totalGrant(b)
	if gb < 1 || gb > 4 {
		t.Errorf("small balancer holds %d slots, want 1..4 (its share of 16 is about 1.6-2)", gb)
	}
	if ga+gb < 15 {
		t.Errorf("only %d+%d of 16 slots granted after convergence", ga, gb)
	}
}

func TestSyncDeadBalancerReleasesItsSlots(t *testing.T) {
	s, _ := newRedis(t)
	ids := []string{"w1"}
	a, b := newSim("a", 1), newSim("b", 1)
	ctx := context.Background()
	b.queued = 10
	b.sync(t, s, ids, 4)
	a.queued = 10
	a.sync(t, s, ids, 4)
	if a.grant[0]+b.grant[0] > 4 {
		t.Fatalf("over limit: %d + %d", a.grant[0], b.grant[0])
	}
	if err := s.Leave(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	res := a.sync(t, s, ids, 4)
	if res.Grants[0] != 4 || res.Balancers != 1 {
		t.Fatalf("after b left, a should hold all 4 slots alone: %+v", res)
	}
	// TTL expiry does the same without Leave.
	c := newSim("c", 1)
	c.queued = 50
	req := state.SyncRequest{Balancer: "c", Queued: 50, TTL: 150 * time.Millisecond,
		Slots: []state.SlotUse{{ID: "w1", Limit: 4}}}
	if _, err := s.Sync(ctx, req); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	a.sync(t, s, ids, 4)
	res = a.sync(t, s, ids, 4)
	if res.Balancers != 1 || res.Grants[0] != 4 {
		t.Fatalf("expired balancer still counted: %+v", res)
	}
}

func TestSyncRemoteCountsAndLastSeen(t *testing.T) {
	s, _ := newRedis(t)
	ctx := context.Background()
	seen := time.UnixMilli(time.Now().UnixMilli())
	_, err := s.Sync(ctx, state.SyncRequest{Balancer: "a", Queued: 3, TTL: time.Second,
		Slots: []state.SlotUse{{ID: "w1", Local: 2, Floor: 2, Limit: 4, LastSeen: seen}}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.Sync(ctx, state.SyncRequest{Balancer: "b", TTL: time.Second,
		Slots: []state.SlotUse{{ID: "w1", Local: 0, Limit: 4, LastSeen: seen.Add(-time.Second)}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Remote[0] != 2 {
		t.Errorf("remote in-flight = %d, want a's 2", res.Remote[0])
	}
	if !res.LastSeen[0].Equal(seen) {
		t.Errorf("last seen = %v, want the later %v", res.LastSeen[0], seen)
	}
	cl, err := s.ClusterLoad(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cl.Inflight["w1"] != 2 || cl.Queued != 3 || cl.Balancers != 2 || !cl.LastSeen["w1"].Equal(seen) {
		t.Errorf("cluster load = %+v", cl)
	}
}

func TestRegistry(t *testing.T) {
	s, _ := newRedis(t)
	ctx := context.Background()
	since := time.Now().Truncate(time.Millisecond)
	for _, id := range []string{"web-2", "web-1"} {
		if err := s.PutBackend(ctx, state.Backend{ID: id, Addr: id + ":8080", State: state.Ready, Since: since}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Backends(ctx)
	if err != nil || len(got) != 2 || got[0].ID != "web-1" || got[1].Addr != "web-2:8080" || !got[0].Since.Equal(since) {
		t.Fatalf("backends = %+v, %v", got, err)
	}
	res, err := s.Sync(ctx, state.SyncRequest{Balancer: "a", TTL: time.Second})
	if err != nil || !res.HasRegistry || len(res.Registry) != 2 {
		t.Fatalf("sync should carry the registry: %+v %v", res, err)
	}
	if err := s.RemoveBackend(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Backends(ctx); len(got) != 1 || got[0].ID != "web-2" {
		t.Fatalf("after remove: %+v", got)
	}
}

func TestLease(t *testing.T) {
	s, _ := newRedis(t)
	ctx := context.Background()
	l, err := s.AcquireLease(ctx, "s1", 300*time.Millisecond)
	if err != nil || !l.HeldBy("s1") || l.Left != 300*time.Millisecond {
		t.Fatalf("first acquire: %+v %v", l, err)
	}
	// A follower learns who leads and how long that lease has left.
	l, _ = s.AcquireLease(ctx, "s2", 300*time.Millisecond)
	if l.HeldBy("s2") || l.Holder != "s1" || l.Left <= 0 || l.Left > 300*time.Millisecond {
		t.Fatalf("second holder: %+v, want s1's lease with up to 300ms left", l)
	}
	if l, _ := s.AcquireLease(ctx, "s1", 300*time.Millisecond); !l.HeldBy("s1") {
		t.Fatal("holder could not renew")
	}
	time.Sleep(400 * time.Millisecond)
	if l, _ := s.AcquireLease(ctx, "s2", time.Second); !l.HeldBy("s2") {
		t.Fatal("expired lease not taken over")
	}
	if err := s.ReleaseLease(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.AcquireLease(ctx, "s1", time.Second); l.HeldBy("s1") || l.Holder != "s2" {
		t.Fatalf("a non-holder's release freed the lease: %+v", l)
	}
	if err := s.ReleaseLease(ctx, "s2"); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.AcquireLease(ctx, "s1", time.Second); !l.HeldBy("s1") {
		t.Fatal("released lease not free")
	}
}

func TestDemandSignal(t *testing.T) {
	s, _ := newRedis(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := s.Demand(ctx)
	time.Sleep(100 * time.Millisecond) // let SUBSCRIBE land
	// A sync with queued requests publishes demand in the same round trip.
	if _, err := s.Sync(ctx, state.SyncRequest{Balancer: "a", Queued: 7, TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-ch:
		if n != 7 {
			t.Fatalf("demand = %d, want 7", n)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no demand signal")
	}
}

// TestSyncSurvivesRedisRestart: the script cache is gone after a restart;
// Sync reloads it instead of failing forever.
func TestSyncSurvivesRedisRestart(t *testing.T) {
	s, srv := newRedis(t)
	ctx := context.Background()
	req := state.SyncRequest{Balancer: "a", TTL: time.Second, Slots: []state.SlotUse{{ID: "w", Limit: 2}}}
	if _, err := s.Sync(ctx, req); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := s.Sync(ctx, req); err == nil {
		t.Fatal("sync with Redis down should fail")
	}
	srv.Start()
	var err error
	for i := 0; i < 20; i++ {
		if _, err = s.Sync(ctx, req); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("sync after restart: %v", err)
}

func TestMemoryStoreMatchesContract(t *testing.T) {
	now := time.Unix(1000, 0)
	m := memstore.New(func() time.Time { return now })
	ctx := context.Background()
	res, err := m.Sync(ctx, state.SyncRequest{Balancer: "a", Queued: 2, TTL: time.Second,
		Slots: []state.SlotUse{{ID: "w", Local: 1, Limit: 4}}})
	if err != nil || res.Grants[0] != 4 {
		t.Fatalf("memory grants whole limit: %+v %v", res, err)
	}
	cl, _ := m.ClusterLoad(ctx)
	if cl.Inflight["w"] != 1 || cl.Queued != 2 {
		t.Fatalf("cluster load %+v", cl)
	}
	now = now.Add(2 * time.Second)
	cl, _ = m.ClusterLoad(ctx)
	if cl.Balancers != 0 || cl.Queued != 0 {
		t.Fatalf("expired balancer still counted: %+v", cl)
	}
	if l, _ := m.AcquireLease(ctx, "x", time.Second); !l.HeldBy("x") {
		t.Fatal("lease")
	}
	if l, _ := m.AcquireLease(ctx, "y", time.Second); l.HeldBy("y") || l.Holder != "x" || l.Left != time.Second {
		t.Fatalf("lease taken twice: %+v", l)
	}
	_ = fmt.Sprint()
}

// TestSyncNoStarvation: a balancer whose share is under one slot still holds
// one in a fair fraction of epochs. One backend, MAX_INFLIGHT=1, demands
// 8:1:1 — the old rounding gave the small two nothing, forever.
func TestSyncNoStarvation(t *testing.T) {
	s, _ := newRedis(t)
	ctx := context.Background()
	weights := map[string]float64{"a": 8, "b": 1, "c": 1}
	held := map[string]int{}
	const rounds = 300
	for r := 0; r < rounds; r++ {
		for _, id := range []string{"a", "b", "c"} {
			res, err := s.Sync(ctx, state.SyncRequest{Balancer: id, Queued: 1, Weight: weights[id], TTL: time.Second,
				Epoch: time.Millisecond, Slots: []state.SlotUse{{ID: "w", Limit: 1}}})
			if err != nil {
				t.Fatal(err)
			}
			held[id] += int(res.Targets[0])
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("epochs in which each balancer's target held the one slot, of %d: %v", rounds, held)
	for id, w := range weights {
		share := (w + 1) / 13 // weights plus one each, as the script adds
		if got := float64(held[id]) / rounds; got < share/3 {
			t.Errorf("%s held the slot in %.0f%% of rounds, share %.0f%%: starved", id, 100*got, 100*share)
		}
	}
}

// Redis that lost its state (restart without persistence, flush, failover
// to an empty replica) has forgotten every grant while balancers may still
// have requests in flight on them. The generation tells them: it stays put
// while the state lives and changes when it is lost. A fresh Redis grants at
// once (there is nothing to protect).
func TestGenerationChangesWhenRedisLosesState(t *testing.T) {
	s, _, rdb := newFreshRedis(t)
	ctx := context.Background()
	req := state.SyncRequest{Balancer: "a", Queued: 3, TTL: time.Second, Slots: []state.SlotUse{{ID: "w1", Limit: 4}}}
	first, err := s.Sync(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if first.Generation == 0 || first.Grants[0] != 4 {
		t.Fatalf("fresh Redis: generation %d, grant %d; want a generation and the whole limit at once", first.Generation, first.Grants[0])
	}
	again, err := s.Sync(ctx, req)
	if err != nil || again.Generation != first.Generation {
		t.Fatalf("generation moved from %d to %d without a loss (%v)", first.Generation, again.Generation, err)
	}
	time.Sleep(5 * time.Millisecond)
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	after, err := s.Sync(ctx, req)
	if err != nil || after.Generation == first.Generation || after.Generation == 0 {
		t.Fatalf("after a flush: generation %d (was %d), %v; want a new one", after.Generation, first.Generation, err)
	}
}

// Hold asks for exactly the floors: a balancer back from an outage takes no
// new slots.
func TestSyncHoldGrantsTheFloor(t *testing.T) {
	s, _ := newRedis(t)
	res, err := s.Sync(context.Background(), state.SyncRequest{Balancer: "a", Queued: 5, TTL: time.Second, Hold: true,
		Slots: []state.SlotUse{{ID: "w1", Local: 1, Floor: 2, Limit: 4}, {ID: "w2", Floor: 0, Limit: 4}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Grants[0] != 2 || res.Grants[1] != 0 {
		t.Fatalf("held grants %v, want the floors [2 0]", res.Grants)
	}
}

// Once a scaler has written the registry, an empty one (scaled to zero) is
// still the registry; an entry that does not decode is marked invalid
// rather than failing every sync.
func TestRegistryEmptyAndInvalid(t *testing.T) {
	s, _, rdb := newFreshRedis(t)
	ctx := context.Background()
	res, err := s.Sync(ctx, state.SyncRequest{Balancer: "a", TTL: time.Second})
	if err != nil || res.HasRegistry {
		t.Fatalf("no scaler yet: HasRegistry %v, %v", res.HasRegistry, err)
	}
	if err := s.PutBackend(ctx, state.Backend{ID: "web-1", Addr: "a:1", State: state.Ready}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveBackend(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	res, err = s.Sync(ctx, state.SyncRequest{Balancer: "a", TTL: time.Second})
	if err != nil || !res.HasRegistry || len(res.Registry) != 0 {
		t.Fatalf("scaled to zero: HasRegistry %v, registry %v, %v; want an empty registry", res.HasRegistry, res.Registry, err)
	}
	if err := rdb.HSet(ctx, s.Keys().Registry(), "web-9", "{not json").Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBackend(ctx, state.Backend{ID: "web-2", Addr: "b:1", State: state.Ready}); err != nil {
		t.Fatal(err)
	}
	res, err = s.Sync(ctx, state.SyncRequest{Balancer: "a", TTL: time.Second})
	if err != nil || len(res.Registry) != 2 || res.Registry[0].ID != "web-2" || res.Registry[1].State != state.Invalid {
		t.Fatalf("registry with a bad entry: %+v, %v", res.Registry, err)
	}
}

// TestClusterLoadSumsFlows: each balancer's published flow reaches the
// scaler summed (arrivals) and weighted by requests served (service time),
// on Redis and on the in-memory store alike.
func TestClusterLoadSumsFlows(t *testing.T) {
	rs, _ := newRedis(t)
	for name, s := range map[string]state.Store{"redis": rs, "memory": memstore.New(nil)} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			flows := map[string]state.Flow{
				"a": {Arrivals: 30, Done: 30, Service: 200 * time.Millisecond},
				"b": {Arrivals: 10, Done: 10, Service: 600 * time.Millisecond},
			}
			for id, f := range flows {
				req := state.SyncRequest{Balancer: id, TTL: 5 * time.Second, Flow: f,
					Slots: []state.SlotUse{{ID: "w1", Local: 1, Floor: 0, Limit: 4}}}
				if _, err := s.Sync(ctx, req); err != nil {
					t.Fatal(err)
				}
			}
			cl, err := s.ClusterLoad(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if cl.Arrivals != 40 || cl.Service != 300*time.Millisecond || cl.Inflight["w1"] != 2 {
				t.Fatalf("load = %v/s at %v, in flight %d; want 40/s at 300ms, 2", cl.Arrivals, cl.Service, cl.Inflight["w1"])
			}
		})
	}
}

// A balancer divides from the balancers it knew at its last sync; when the
// sync shows others (one left, another joined, the count unchanged) it asks
// again from the new ones in the same Sync instead of a sync later.
func TestSyncRedividesWhenMembersChange(t *testing.T) {
	s, _ := newRedis(t)
	ctx := context.Background()
	sync := func(id string, weight float64) state.SyncResult {
		t.Helper()
		res, err := s.Sync(ctx, state.SyncRequest{Balancer: id, Weight: weight, TTL: 10 * time.Second,
			Slots: []state.SlotUse{{ID: "w", Limit: 4}}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	sync("b", 100)
	if res := sync("a", 0); res.Targets[0] > 1 {
		t.Fatalf("a beside a busy b: target %d, want at most 1", res.Targets[0])
	}
	if err := s.Leave(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	sync("c", 0)
	res := sync("a", 0)
	if res.Balancers != 2 || res.Targets[0] != 2 || res.Grants[0] != 2 {
		t.Fatalf("a beside an idle c: %d balancers, target %d, grant %d; want 2, 2, 2", res.Balancers, res.Targets[0], res.Grants[0])
	}
}

// A balancer with requests in flight on a backend refreshes its last-seen
// time only every 10 s (the count shows it busy); once its requests there
// end, or it drops the backend, the time goes at once or at its next turn,
// so the scaler's idle timer starts from the last request, not from up to
// 10 s before it.
func TestLastSeenWhileBusy(t *testing.T) {
	s, _ := newRedis(t)
	ctx := context.Background()
	t0 := time.UnixMilli(time.Now().UnixMilli())
	sync := func(id string, local int64, seen time.Time, times int) state.SyncResult {
		t.Helper()
		var res state.SyncResult
		for range times {
			var err error
			res, err = s.Sync(ctx, state.SyncRequest{Balancer: id, TTL: 10 * time.Second,
				Slots: []state.SlotUse{{ID: "w", Local: local, Floor: local, Limit: 4, LastSeen: seen}}})
			if err != nil {
				t.Fatal(err)
			}
		}
		return res
	}
	sync("a", 1, t0, 1)
	sync("a", 1, t0.Add(2*time.Second), 8) // busy: not sent
	if got := sync("b", 0, time.Time{}, 1).LastSeen[0]; !got.Equal(t0) {
		t.Fatalf("b sees a's busy backend last seen at %v, want the first time sent %v", got, t0)
	}
	sync("a", 0, t0.Add(2*time.Second), 8) // its requests ended: sent in its turn
	if got := sync("b", 0, time.Time{}, 8).LastSeen[0]; !got.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("b sees the backend last seen at %v after a's requests ended, want %v", got, t0.Add(2*time.Second))
	}
	// A backend a drops while busy takes its latest time with it.
	sync("a", 1, t0.Add(5*time.Second), 1)
	if _, err := s.Sync(ctx, state.SyncRequest{Balancer: "a", TTL: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if got := sync("b", 0, time.Time{}, 8).LastSeen[0]; !got.Equal(t0.Add(5 * time.Second)) {
		t.Fatalf("b sees the backend last seen at %v after a dropped it, want %v", got, t0.Add(5*time.Second))
	}
}
