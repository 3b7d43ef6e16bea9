package redisstore_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"lbscale/internal/state"
	"lbscale/internal/state/redisstore"
)

// scaleBackends is B for the scale tests: enough backends that a protocol
// which sent, read or divided every backend at every sync would be caught
// by the guarantees below failing, not merely run slowly.
const scaleBackends = 400

// fleetBalancer is one simulated balancer doing around each sync what
// cluster.Syncer and pool.Backend do: requests start only within the grant
// (TryAcquire); a request that finishes while the grant is above the target
// gives its slot back (Release); before a sync the grant shrinks toward the
// target, never below in flight, and that is the Floor (ShrinkGrant); after
// it the grant is the store's, except that an answer from a store that lost
// its state raises nothing and the balancer holds (Hold) until the test
// lets go, as the Syncer does for a TTL.
type fleetBalancer struct {
	id    string
	store *redisstore.Store
	ttl   time.Duration
	epoch time.Duration
	// weight is the demand weight sent (0: the store's default, in flight
	// plus queued).
	weight float64
	// clients is a closed loop: every client has a request in flight or
	// queued.
	clients int64
	// done is the chance that a request in flight finishes between two
	// syncs: 0.5 is a service time of about two sync intervals.
	done   float64
	hold   bool
	gen    int64 // generation of the last answer
	limit  int64
	ids    []string
	local  []int64
	grant  []int64
	target []int64
}

// fleet is B backends shared by simulated balancers on one real Redis, with
// a raw client to read what the sync script recorded.
type fleet struct {
	rdb   *redis.Client
	keys  state.Keys
	limit int64
	ids   []string
	bals  []*fleetBalancer
	rng   *rand.Rand
}

// newFleet starts Redis and one balancer per clients entry (ids a, b, c,
// ...), each with its own Store as separate processes would have, all
// knowing every backend with the same limit.
func newFleet(t *testing.T, limit int64, clients ...int64) *fleet {
	t.Helper()
	first, srv, rdb := newFreshRedis(t)
	f := &fleet{rdb: rdb, keys: first.Keys(), limit: limit, rng: rand.New(rand.NewPCG(uint64(len(t.Name())), 42))}
	for i := range scaleBackends {
		f.ids = append(f.ids, fmt.Sprintf("web-%03d", i))
	}
	for j, c := range clients {
		store := first
		if j > 0 {
			var err error
			if store, err = redisstore.New(srv.URL(), "test"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { store.Close() })
		}
		n := len(f.ids)
		f.bals = append(f.bals, &fleetBalancer{id: string(rune('a' + j)), store: store, ttl: 10 * time.Second,
			epoch: time.Hour, clients: c, done: 0.5, limit: limit, ids: slices.Clone(f.ids),
			local: make([]int64, n), grant: make([]int64, n), target: make([]int64, n)})
	}
	return f
}

// finish ends each request in flight with chance done (its client queues
// again); a slot held above the target goes back with its request.
func (b *fleetBalancer) finish(rng *rand.Rand) {
	for i := range b.ids {
		for range b.local[i] {
			if rng.Float64() < b.done {
				b.local[i]--
				if b.grant[i] > b.target[i] {
					b.grant[i]--
				}
			}
		}
	}
}

// start dispatches queued clients into free granted slots, from a random
// backend on.
func (b *fleetBalancer) start(rng *rand.Rand) {
	room := b.clients - sumOf(b.local)
	off := rng.IntN(len(b.ids) + 1)
	for k := range b.ids {
		i := (off + k) % len(b.ids)
		if take := min(b.grant[i]-b.local[i], room); take > 0 {
			b.local[i] += take
			room -= take
		}
	}
}

// sync runs one heartbeat and takes its answer. It fails the test if the
// store grants less than is in flight, or more than the floor under Hold.
func (b *fleetBalancer) sync(t *testing.T) state.SyncResult {
	t.Helper()
	req := state.SyncRequest{Balancer: b.id, Queued: max(0, b.clients-sumOf(b.local)), Weight: b.weight,
		TTL: b.ttl, Epoch: b.epoch, Interval: 25 * time.Millisecond, Hold: b.hold}
	for i, id := range b.ids {
		b.grant[i] = min(b.grant[i], max(b.local[i], b.target[i]))
		req.Slots = append(req.Slots, state.SlotUse{ID: id, Local: b.local[i], Floor: b.grant[i], Limit: b.limit})
	}
	res, err := b.store.Sync(t.Context(), req)
	if err != nil {
		t.Fatalf("sync %s: %v", b.id, err)
	}
	if len(res.Grants) != len(b.ids) || len(res.Targets) != len(b.ids) {
		t.Fatalf("sync %s: %d grants and %d targets for %d backends", b.id, len(res.Grants), len(res.Targets), len(b.ids))
	}
	lost := b.gen != 0 && res.Generation != b.gen
	b.gen = res.Generation
	for i, sl := range req.Slots {
		g := res.Grants[i]
		if g < sl.Floor {
			t.Fatalf("sync %s: granted %d on %s under its floor %d (%d in flight)", b.id, g, sl.ID, sl.Floor, sl.Local)
		}
		if req.Hold && g > sl.Floor {
			t.Fatalf("sync %s under Hold: granted %d on %s over its floor %d", b.id, g, sl.ID, sl.Floor)
		}
		if lost {
			g = sl.Floor
		}
		b.grant[i], b.target[i] = g, res.Targets[i]
	}
	if lost {
		b.hold = true
	}
	return res
}

// keep narrows the balancer's pool to ids (a subset of what it knows), as
// when the registry drops backends.
func (b *fleetBalancer) keep(ids []string) {
	var local, grant, target []int64
	for _, id := range ids {
		i := slices.Index(b.ids, id)
		local, grant, target = append(local, b.local[i]), append(grant, b.grant[i]), append(target, b.target[i])
	}
	b.ids, b.local, b.grant, b.target = slices.Clone(ids), local, grant, target
}

func sumOf(xs []int64) (n int64) {
	for _, x := range xs {
		n += x
	}
	return n
}

// step moves one balancer's requests on and syncs it, then checks the fleet.
func (f *fleet) step(t *testing.T, b *fleetBalancer, when string, strict bool) state.SyncResult {
	t.Helper()
	b.finish(f.rng)
	b.start(f.rng)
	res := b.sync(t)
	f.check(t, when, strict)
	return res
}

// round steps every balancer once, in order.
func (f *fleet) round(t *testing.T, when string, strict bool) {
	t.Helper()
	for _, b := range f.bals {
		f.step(t, b, fmt.Sprintf("%s, %s", when, b.id), strict)
	}
}

// granted is the balancers' local grants summed per backend.
func (f *fleet) granted() map[string]int64 {
	out := map[string]int64{}
	for _, b := range f.bals {
		for i, id := range b.ids {
			out[id] += b.grant[i]
		}
	}
	return out
}

// check asserts the guarantees after a sync. Always: no balancer has more
// in flight than its grant, the grants on a backend sum to at most its
// limit, and Redis's running sums hold exactly the sums of the i: and g:
// fields of the balancer hashes it records (none zero). When strict (not
// in the sync round right after Redis lost its state, when balancers still
// hold grants Redis forgot): the recorded grants also keep the limit, and
// no balancer's grant exceeds what Redis records for it.
func (f *fleet) check(t *testing.T, when string, strict bool) {
	t.Helper()
	for _, b := range f.bals {
		for i, id := range b.ids {
			if b.local[i] > b.grant[i] {
				t.Fatalf("%s: %s has %d in flight on %s over its grant %d", when, b.id, b.local[i], id, b.grant[i])
			}
		}
	}
	for id, g := range f.granted() {
		if g > f.limit {
			t.Fatalf("%s: grants on %s sum to %d > limit %d", when, id, g, f.limit)
		}
	}
	agg, per := f.recorded(t)
	sums := map[string]int64{}
	for bal, h := range per {
		for k, v := range h {
			if v == 0 {
				t.Fatalf("%s: %s's hash records a zero %s", when, bal, k)
			}
			sums[k] += v
		}
	}
	if !maps.Equal(agg, sums) {
		t.Fatalf("%s: the sums differ from the balancers' fields: %s", when, mapDiff(agg, sums))
	}
	if !strict {
		return
	}
	for k, v := range sums {
		if strings.HasPrefix(k, state.FieldGranted) && v > f.limit {
			t.Fatalf("%s: recorded grants on %s sum to %d > limit %d", when, k[2:], v, f.limit)
		}
	}
	for _, b := range f.bals {
		for i, id := range b.ids {
			if rec := per[b.id][state.FieldGranted+id]; b.grant[i] > rec {
				t.Fatalf("%s: %s holds %d on %s, Redis records %d", when, b.id, b.grant[i], id, rec)
			}
		}
	}
}

// recorded reads the running sums (as "i:<id>" from Keys.Inflight at each
// backend's Keys.Index, "g:<id>" from Keys.Granted; zeros left out) and
// every balancer hash's i: and g: fields (by balancer id), in one round trip.
func (f *fleet) recorded(t *testing.T) (agg map[string]int64, per map[string]map[string]int64) {
	t.Helper()
	ctx := t.Context()
	prefix := f.keys.BalancerPrefix()
	keys, err := f.rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var granted, index *redis.MapStringStringCmd
	var inflight *redis.StringCmd
	cmds := make([]*redis.MapStringStringCmd, len(keys))
	if _, err := f.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		granted = p.HGetAll(ctx, f.keys.Granted())
		index = p.HGetAll(ctx, f.keys.Index())
		inflight = p.Get(ctx, f.keys.Inflight())
		for j, k := range keys {
			cmds[j] = p.HGetAll(ctx, k)
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	counts := func(m map[string]string, prefix string) map[string]int64 {
		out := map[string]int64{}
		for k, v := range m {
			if prefix != "" || strings.HasPrefix(k, state.FieldInflight) || strings.HasPrefix(k, state.FieldGranted) {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatalf("field %s = %q: %v", k, v, err)
				}
				out[prefix+k] = n
			}
		}
		return out
	}
	agg = counts(granted.Val(), state.FieldGranted)
	raw := inflight.Val()
	for id, v := range index.Val() {
		n, err := strconv.Atoi(v)
		if err != nil || 4*n+4 > len(raw) {
			continue
		}
		if c := int32(binary.BigEndian.Uint32([]byte(raw[4*n : 4*n+4]))); c != 0 {
			agg[state.FieldInflight+id] = int64(c)
		}
	}
	per = map[string]map[string]int64{}
	for j, k := range keys {
		per[strings.TrimPrefix(k, prefix)] = counts(cmds[j].Val(), "")
	}
	return agg, per
}

// mapDiff names up to five fields on which two count maps differ.
func mapDiff(got, want map[string]int64) string {
	keys := slices.Collect(maps.Keys(got))
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		if got[k] != want[k] {
			out = append(out, fmt.Sprintf("%s: %d, fields sum to %d", k, got[k], want[k]))
		}
	}
	if len(out) > 5 {
		out = append(out[:5], fmt.Sprintf("and %d more", len(out)-5))
	}
	return strings.Join(out, "; ")
}

// totalGranted is every grant of the fleet summed.
func (f *fleet) totalGranted() (n int64) {
	for _, g := range f.granted() {
		n += g
	}
	return n
}

// TestScaleGrantsNeverExceedLimit drives four balancers over 400 backends
// with skewed, wandering demand and a division that moves every 20 ms, and
// checks after every sync that the limit holds on every backend, locally
// and as recorded, and that Redis's running sums match the balancers'
// fields. Then every balancer wants more than the cluster has: nearly every
// slot must be handed out, since a guarantee kept by granting nothing is
// worth nothing.
func TestScaleGrantsNeverExceedLimit(t *testing.T) {
	f := newFleet(t, 3, 3000, 60, 60, 60)
	for _, b := range f.bals {
		b.epoch = 20 * time.Millisecond
	}
	for step := range 400 {
		b := f.bals[0]
		if f.rng.IntN(2) == 0 {
			b = f.bals[1+f.rng.IntN(len(f.bals)-1)]
			if f.rng.IntN(6) == 0 {
				b.clients = f.rng.Int64N(150)
			}
		}
		f.step(t, b, fmt.Sprintf("step %d, %s", step, b.id), true)
	}
	for _, b := range f.bals {
		b.epoch, b.clients = time.Hour, max(b.clients, 600)
	}
	f.handsOutMost(t, "saturated")
}

// TestScaleNoStarvationOfSmallBalancer: a balancer of demand 1 beside three
// of demand 200 that fill every slot they hold, MAX_INFLIGHT 2: its share
// is far under one slot per backend (2.6 slots over 400 backends). Rounding
// per backend would give it nothing, forever; the division by sampling must
// give it a slot in most syncs and about its share on average.
//
// A slot reaches it only once a busy one's request on it finished and that
// one synced, and before the division moves on, so the epoch must outlast a
// few syncs: cluster.Syncer's is 10 intervals. (With an epoch under one sync
// a busy one whose target is back up by its next sync takes the slot it just
// freed, and the small one's targets average its share while its grants
// stay at zero.)
func TestScaleNoStarvationOfSmallBalancer(t *testing.T) {
	// Rounds are paced at period, so an epoch lasts epoch/period syncs.
	const period = 15 * time.Millisecond
	// A busy one's request finishes within two syncs (fleetBalancer.done).
	cases := []struct {
		name  string
		epoch time.Duration
	}{
		{"epoch of 10 syncs", 10 * period},
		{"epoch of 4 syncs", 4 * period},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t, 2, 1, 5000, 5000, 5000)
			small := f.bals[0]
			for _, b := range f.bals {
				b.epoch, b.weight = tc.epoch, 200
			}
			small.weight = 1
			share := 2.0 / (2 + 3*201) * float64(scaleBackends) * float64(f.limit)
			// Let the busy ones fill the cluster first: the small one's
			// first sync, alone, would take every slot.
			for _, b := range f.bals[1:] {
				f.step(t, b, "warm-up, "+b.id, true)
			}
			const rounds = 200
			held, total := 0, int64(0)
			next := time.Now()
			for r := range rounds {
				for _, b := range f.bals {
					b.finish(f.rng)
					b.start(f.rng)
					b.sync(t)
					if g := sumOf(b.grant); b == small && g > 0 {
						held++
						total += g
					}
				}
				f.check(t, fmt.Sprintf("round %d", r), r%20 == 19)
				next = next.Add(period)
				time.Sleep(time.Until(next))
			}
			avg := float64(total) / rounds
			t.Logf("small balancer: a grant in %d of %d syncs, %.2f slots on average, share %.2f", held, rounds, avg, share)
			if held < rounds*8/10 {
				t.Errorf("small balancer held a slot in only %d of %d syncs", held, rounds)
			}
			if avg < share/3 || avg > share*3 {
				t.Errorf("small balancer held %.2f slots on average, share %.2f: not within a factor 3", avg, share)
			}
		})
	}
}

// TestScaleDeadBalancerGrantsExpire: a busy balancer holding most slots
// stops syncing. Once its TTL passes, the next sync of any other balancer
// takes its grants out of the sums and deletes its hash (or Leave does at
// once), and the live ones then take the whole limit of every backend.
func TestScaleDeadBalancerGrantsExpire(t *testing.T) {
	cases := []struct {
		name string
		// end stops the dead balancer and returns once it is gone.
		end func(t *testing.T, f *fleet, dead *fleetBalancer)
	}{
		{"ttl", func(t *testing.T, f *fleet, dead *fleetBalancer) {
			time.Sleep(dead.ttl + 150*time.Millisecond)
			f.step(t, f.bals[0], "reaping sync", true)
		}},
		{"leave", func(t *testing.T, f *fleet, dead *fleetBalancer) {
			if err := dead.store.Leave(t.Context(), dead.id); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// The live three want slots but start no requests, so that
			// their grants can settle exactly on their targets.
			f := newFleet(t, 3, 0, 0, 0, 5000)
			dead := f.bals[3]
			dead.weight, dead.ttl = 300, 250*time.Millisecond
			for _, b := range f.bals[:3] {
				b.weight = 20
			}
			for r := range 4 {
				f.round(t, fmt.Sprintf("round %d", r), true)
			}
			if g, slots := sumOf(dead.grant), int64(scaleBackends)*f.limit; g < slots/2 {
				t.Fatalf("setup: the busy balancer holds only %d of %d slots", g, slots)
			}
			f.bals = f.bals[:3]
			tc.end(t, f, dead)
			ctx := t.Context()
			if n := f.rdb.Exists(ctx, f.keys.Balancer(dead.id)).Val(); n != 0 {
				t.Errorf("dead balancer's hash still exists")
			}
			if err := f.rdb.ZScore(ctx, f.keys.Balancers(), dead.id).Err(); err != redis.Nil {
				t.Errorf("dead balancer still listed among the balancers (%v)", err)
			}
			// The running sums equal the live hashes' sums: none of the dead
			// one's grants or counts remain.
			f.check(t, "after it died", true)
			var short []string
			for r := range 10 {
				f.round(t, fmt.Sprintf("live round %d", r), true)
				short = short[:0]
				for id, g := range f.granted() {
					if g != f.limit {
						short = append(short, fmt.Sprintf("%s: %d", id, g))
					}
				}
				if len(short) == 0 {
					return
				}
			}
			slices.Sort(short)
			t.Fatalf("live balancers did not take the whole limit on %d backends, e.g. %v", len(short), short[:min(5, len(short))])
		})
	}
}

// TestScaleRedisLosesState: Redis is flushed under load. Every balancer's
// next answer carries a new generation; it takes no raise from that answer
// and holds; while held the store grants no more than the floors; the
// running sums match the balancers' fields throughout; and once the hold
// ends the cluster hands out nearly every slot again.
func TestScaleRedisLosesState(t *testing.T) {
	f := newFleet(t, 3, 900, 300, 300, 300)
	for r := range 4 {
		f.round(t, fmt.Sprintf("round %d", r), true)
	}
	old := f.bals[0].gen
	time.Sleep(2 * time.Millisecond) // the generation is a unix ms
	if err := f.rdb.FlushAll(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	var gen int64
	for _, b := range f.bals {
		// Balancers not yet synced hold grants Redis forgot: not strict.
		res := f.step(t, b, "first sync after the flush, "+b.id, false)
		if res.Generation == 0 || res.Generation == old {
			t.Fatalf("%s: generation %d after the flush (was %d), want a new one", b.id, res.Generation, old)
		}
		if gen != 0 && res.Generation != gen {
			t.Fatalf("%s: generation %d, another balancer got %d", b.id, res.Generation, gen)
		}
		gen = res.Generation
		if !b.hold {
			t.Fatalf("%s did not notice the flush", b.id)
		}
	}
	// Held: every sync asks for its floor and gets no more (sync checks).
	f.round(t, "second round after the flush", false)
	f.check(t, "after every balancer reported under Hold", true)
	f.round(t, "held round", true)
	for _, b := range f.bals {
		b.hold = false
	}
	f.handsOutMost(t, "after the hold")
}

// handsOutMost runs 8 rounds, checking each, and then wants at least 90%
// of all slots granted: demand exceeds capacity, so slots left unused mean
// the division or the cap lost some.
func (f *fleet) handsOutMost(t *testing.T, when string) {
	t.Helper()
	for r := range 8 {
		f.round(t, fmt.Sprintf("%s, round %d", when, r), true)
	}
	total, slots := f.totalGranted(), int64(scaleBackends)*f.limit
	t.Logf("%s: %d of %d slots granted", when, total, slots)
	if total*10 < slots*9 {
		t.Errorf("%s: demand exceeds capacity, yet only %d of %d slots are granted", when, total, slots)
	}
}

// TestScaleBackendsLeaving: 100 of the 400 backends leave the pool. The
// first balancer to drop them loses its fields for them at once while the
// others' grants stay counted; once no balancer reports them and the
// scaler's registry no longer lists them, they leave the sums, the
// in-flight index and the last-seen feed, whichever of the two happened
// first, so none grows with every container ever started.
func TestScaleBackendsLeaving(t *testing.T) {
	for _, registryFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("registry first %v", registryFirst), func(t *testing.T) {
			f := newFleet(t, 3, 900, 300, 300, 300)
			for r := range 3 {
				f.round(t, fmt.Sprintf("round %d", r), true)
			}
			var kept, dropped []string
			for i, id := range f.ids {
				if i%4 == 1 {
					dropped = append(dropped, id)
				} else {
					kept = append(kept, id)
				}
			}
			ctx := t.Context()
			scaler := func() {
				for i, id := range kept {
					b := state.Backend{ID: id, Addr: fmt.Sprintf("10.0.%d.%d:8080", i/256, i%256), State: state.Ready}
					if err := f.bals[0].store.PutBackend(ctx, b); err != nil {
						t.Fatal(err)
					}
				}
				for _, id := range dropped {
					if err := f.bals[0].store.RemoveBackend(ctx, id); err != nil {
						t.Fatal(err)
					}
				}
			}
			a := f.bals[0]
			a.keep(kept)
			f.step(t, a, "a dropped them", true)
			_, per := f.recorded(t)
			others := 0
			for _, id := range dropped {
				if _, ok := per[a.id][state.FieldGranted+id]; ok {
					t.Fatalf("a dropped %s but its hash still has g:%s", id, id)
				}
				if _, ok := per[a.id][state.FieldInflight+id]; ok {
					t.Fatalf("a dropped %s but its hash still has i:%s", id, id)
				}
				for _, b := range f.bals[1:] {
					if per[b.id][state.FieldGranted+id] > 0 {
						others++
					}
				}
			}
			if others == 0 {
				t.Fatalf("the other balancers' grants on the dropped backends vanished with a's")
			}
			if registryFirst {
				scaler()
			}
			for _, b := range f.bals[1:] {
				b.keep(kept)
				f.step(t, b, b.id+" dropped them", true)
			}
			if !registryFirst {
				scaler()
			}
			f.round(t, "after", true)
			agg, per := f.recorded(t)
			index, err := f.rdb.HGetAll(ctx, f.keys.Index()).Result()
			if err != nil {
				t.Fatal(err)
			}
			seen, err := f.rdb.ZRange(ctx, f.keys.SeenFeed(), 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range dropped {
				for _, k := range []string{state.FieldInflight + id, state.FieldGranted + id} {
					if _, ok := agg[k]; ok {
						t.Errorf("the sums still have %s", k)
					}
					for bal, h := range per {
						if _, ok := h[k]; ok {
							t.Errorf("%s's hash still has %s", bal, k)
						}
					}
				}
				if _, ok := index[id]; ok {
					t.Errorf("the in-flight index still lists %s", id)
				}
				if slices.Contains(seen, id) {
					t.Errorf("the last-seen feed still lists %s", id)
				}
			}
			free, err := f.rdb.SCard(ctx, f.keys.FreeIndexes()).Result()
			if err != nil {
				t.Fatal(err)
			}
			if int(free)+len(index) < len(kept) || len(index) > len(kept) {
				t.Errorf("%d indexes in use and %d free for %d kept backends", len(index), free, len(kept))
			}
			for _, id := range kept {
				if agg[state.FieldGranted+id] == 0 {
					t.Fatalf("kept backend %s lost its grants", id)
				}
			}
		})
	}
}
