package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"lbscale/internal/state"
)

// The cost model. A sync used to send every backend's counts, read every
// other balancer's hash and divide every backend's slots in Redis: work in
// backends × balancers on every call, on Redis's one thread. Now Redis does
// work in what changed:
//
//   - a balancer sends only the backends whose grant, floor, wanted share or
//     in-flight count moved (counts in their turn, see countsEvery), and a
//     last-seen time that advanced by seenStep (seenBusyStep while busy);
//   - Redis keeps each backend's grant sum (Keys.Granted) and in-flight sum
//     (Keys.Inflight), so capping a grant reads one sum, not every
//     balancer's hash;
//   - a balancer reads the in-flight sums (one GET) only when the sequence
//     moved, the last-seen times that moved (Keys.SeenFeed), the registry
//     and the index only when their versions moved;
//   - the division into fair targets (Divide) runs here, in the balancer,
//     from the live balancers' demand weights as of the last sync; Redis only
//     caps what is asked for by what the others leave free.
//
// So a sync costs Redis a fixed part (about 20 commands inside the script),
// one HGET per live balancer, a few operations per backend sent, and, on a
// counts turn when something moved, a GET of 4 bytes per backend. At rest
// nothing moves, and the cost does not depend on the number of backends.

// countsEvery is how many syncs apart a balancer sends a backend's
// in-flight count that changed (each backend in its turn, the turns
// staggered so that no sync carries them all) and reads the others'.
// Grants, floors and wants go at every sync: they keep the limit and move
// slots to where requests queue. The counts only inform: least-connections
// picks across the cluster, /status, the scaler (which reads them once a
// second and waits a second before stopping a drained container). Under
// load nearly every backend's count changes at every sync, so sending them
// at every sync makes Redis's work follow the request rate times the
// number of balancers. Every 8th sync, the others see a count at most 8
// intervals old (200 ms at the default 25 ms), and a backend whose count
// changed several times in between is sent once. Measured at 400 backends
// behind 4 balancers under scripts/bench-state's load, Redis spent 9% of a
// core with every 4th sync and 7-8% with every 8th.
const countsEvery = 8

// seenStep is how far a backend's last-seen time must advance before a
// sync sends it, and seenBusyStep the same while this balancer has
// requests in flight on it. The scaler reads the time only to stop a
// container idle for IDLE_TIMEOUT with nothing in flight, so a busy
// backend's time may lag (its count shows it busy) as long as it is fresh
// by the turn after the last request on it ends. Sending every request's
// millisecond would make every busy backend a change at every turn: at
// 1,000 backends behind 10 balancers under load, last-seen times were most
// of what syncs sent.
const (
	seenStep     = time.Second
	seenBusyStep = 10 * time.Second
)

// seenAfter is how far the last-seen time of a backend with local requests
// in flight must advance before a sync sends it.
func seenAfter(local int64) int64 {
	if local > 0 {
		return seenBusyStep.Milliseconds()
	}
	return seenStep.Milliseconds()
}

// registryEvery is how often a balancer reads the whole registry even
// though its version did not move: a hand edit, or a writer that does not
// raise the version, is still seen.
const registryEvery = 10 * time.Second

// view is what this process knows of one balancer's record in Redis, so
// that a sync sends only what changed and reads only what others changed.
type view struct {
	gen      int64             // the store's generation (0: unknown, send everything)
	pos      int64             // Sequence read up to
	regVer   int64             // registry version held (-1: none)
	regAt    time.Time         // when the registry was last read
	registry []state.Backend   // as of regVer
	owned    bool              // a scaler has written the registry
	sent     map[string]record // backend -> what Redis records for this balancer
	sums     map[string]int64  // backend -> cluster in-flight sum, from the feed
	seen     map[string]int64  // backend -> cluster last-seen ms, from the feed
	live     []string          // live balancers in id order, at the last sync
	demands  []float64         // their demand weights
	clock    int64             // Redis's unix ms at the last sync
	at       time.Time         // local time the last sync returned
	ixVer    int64             // index version held (-1: none)
	index    map[string]int64  // backend -> its place in the in-flight sums
	scalars  []any             // the scalar fields last sent
	syncs    int               // syncs since the last full one
}

// record is one backend's entry in this balancer's hash.
// latest is the balancer's latest last-seen time for the backend, sent
// or not: a backend it drops takes that time with it.
type record struct{ local, grant, seen, latest int64 }

func newView() *view {
	return &view{regVer: -1, ixVer: -1, sent: map[string]record{}, sums: map[string]int64{}, seen: map[string]int64{}, index: map[string]int64{}}
}

// item is one backend sent to the script.
type item struct {
	id                        string
	local, floor, want, limit int64
	seen                      int64
	gone                      bool // no longer in the balancer's pool: sent as zeros
}

// Sync implements Store. The script and (when requests are queued) the
// demand signal go in one pipelined round trip; the first sync of a
// balancer, and one after Redis lost its state, takes two.
func (s *Store) Sync(ctx context.Context, req state.SyncRequest) (state.SyncResult, error) {
	s.mu.Lock()
	v := s.views[req.Balancer]
	if v == nil {
		v = newView()
		s.views[req.Balancer] = v
	}
	s.mu.Unlock()
	res, err := s.syncView(ctx, v, req)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// Redis restarted and forgot the script: load it and try once more.
		if lerr := syncScript.Load(ctx, s.rdb).Err(); lerr != nil {
			return state.SyncResult{}, fmt.Errorf("load sync script: %w", lerr)
		}
		res, err = s.syncView(ctx, v, req)
	}
	if err != nil {
		// Redis may have applied what it did not answer: send everything next
		// time rather than trust what this view believes is recorded.
		v.gen = 0
		return state.SyncResult{}, fmt.Errorf("sync balancer %s: %w", req.Balancer, err)
	}
	return res, nil
}

// syncView runs one sync for the balancer v describes. Callers do not
// sync one balancer from two goroutines at once (cluster.Syncer does not).
func (s *Store) syncView(ctx context.Context, v *view, req state.SyncRequest) (state.SyncResult, error) {
	weight := req.Weight
	if weight <= 0 {
		weight = float64(req.Queued)
		for _, sl := range req.Slots {
			weight += float64(sl.Local)
		}
	}
	full := v.gen == 0
	targets := v.divide(req, weight)
	members := slices.Clone(v.live) // call reuses v.live's array
	ok, err := s.call(ctx, v, req, weight, full, targets)
	if err == nil && !ok {
		// Redis does not hold what this view believes (its state was lost,
		// or this balancer was taken for dead): send everything.
		*v = *newView()
		targets = nil
		ok, err = s.call(ctx, v, req, weight, true, nil)
		if err == nil && !ok {
			err = errors.New("state changed during a full sync")
		}
	}
	if err != nil {
		return state.SyncResult{}, err
	}
	if targets == nil || !sameMembers(members, v.live, req.Balancer) {
		// No division was known before this sync, or balancers came or
		// went: ask for the fair shares now that the live balancers and
		// their demands are known, rather than a sync later.
		targets = v.divide(req, weight)
		short := false
		for i, sl := range req.Slots {
			short = short || v.sent[sl.ID].grant < targets[i]
		}
		if short && !req.Hold {
			if _, err := s.call(ctx, v, req, weight, false, targets); err != nil {
				return state.SyncResult{}, err
			}
		}
	}
	return v.result(req, targets), nil
}

// sameMembers reports whether live (after a sync) holds the balancers of
// before (as divided from), me included either way.
func sameMembers(before, live []string, me string) bool {
	if i, ok := slices.BinarySearch(before, me); !ok {
		before = slices.Insert(slices.Clone(before), i, me)
	}
	return slices.Equal(before, live)
}

// divide returns this balancer's targets from the demands known at the
// last sync, with its own demand as it is now; nil before any sync.
func (v *view) divide(req state.SyncRequest, weight float64) []int64 {
	if v.at.IsZero() {
		return nil
	}
	live, demands := v.live, v.demands
	me, found := slices.BinarySearch(live, req.Balancer)
	if !found {
		live = slices.Insert(slices.Clone(live), me, req.Balancer)
		demands = slices.Insert(slices.Clone(demands), me, 0)
	} else {
		demands = slices.Clone(demands)
	}
	demands[me] = weight
	epoch := req.Epoch
	if epoch <= 0 {
		epoch = state.DefaultEpoch
	}
	clock := time.UnixMilli(v.clock).Add(time.Since(v.at))
	ids := make([]string, len(req.Slots))
	limits := make([]int64, len(req.Slots))
	for i, sl := range req.Slots {
		ids[i], limits[i] = sl.ID, sl.Limit
	}
	return Divide(demands, me, ids, limits, Epoch(clock, epoch))
}

// call sends the script one sync: every backend when full, else only the
// changed ones. It reports false when Redis asks for a full sync instead.
func (s *Store) call(ctx context.Context, v *view, req state.SyncRequest, weight float64, full bool, targets []int64) (bool, error) {
	counts := full || v.syncs%countsEvery == 0
	items, moved := v.changes(req, full, targets)
	scalars := []any{state.FieldQueued, req.Queued, state.FieldWeight, formatRate(weight), state.FieldInterval, req.Interval.Milliseconds(),
		state.FieldArrivals, formatRate(req.Flow.Arrivals), state.FieldDone, formatRate(req.Flow.Done),
		state.FieldService, formatRate(float64(req.Flow.Service) / 1e6)}
	a := syncArgs{Balancer: req.Balancer, TTL: req.TTL, Hold: req.Hold, Full: full, Gen: v.gen, Pos: v.pos,
		RegVer: v.regVer, IxVer: v.ixVer, Scalars: scalars, Items: items, Moved: moved}
	if !full && slices.Equal(scalars, v.scalars) {
		a.Scalars = nil
	}
	if time.Since(v.regAt) >= registryEvery {
		a.RegVer = -1
	}
	if !counts {
		a.Pos = -1 // no feed this time
	}
	if full {
		a.IxVer = -1
	}
	var script *redis.Cmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		script = syncScript.EvalSha(ctx, p, s.scriptKeys(), a.encode(s.keys.BalancerPrefix())...)
		if req.Queued > 0 {
			p.Publish(ctx, s.keys.DemandChannel(), demandMessage(req.Balancer, req.Queued))
		}
		return nil
	})
	if err != nil {
		if serr := script.Err(); serr != nil {
			err = serr
		}
		return false, err
	}
	raw, err := script.Slice()
	if err != nil {
		return false, err
	}
	r, err := decodeSyncReply(raw, len(items))
	if err != nil || r.Resync {
		return false, err
	}
	if full {
		clear(v.sent)
	}
	for j, it := range items {
		if it.gone {
			delete(v.sent, it.id)
			continue
		}
		rec := v.sent[it.id]
		rec.local, rec.grant, rec.seen = it.local, r.Grants[j], max(rec.seen, it.seen)
		rec.latest = max(rec.latest, rec.seen)
		v.sent[it.id] = rec
	}
	for _, it := range moved {
		rec := v.sent[it.id]
		rec.local = it.local
		v.sent[it.id] = rec
	}
	s.sent.items.Add(uint64(len(items)))
	s.sent.counts.Add(uint64(len(moved)))
	v.scalars = scalars
	v.gen, v.clock = r.Gen, r.Now
	if counts {
		v.pos = r.Pos
	}
	v.at = time.Now()
	v.syncs++
	// What moved: the last-seen times, and (when read) every in-flight sum.
	for j, id := range r.SeenIDs {
		if j < len(r.SeenTimes) && r.SeenTimes[j] > 0 {
			v.seen[id] = r.SeenTimes[j]
		} else {
			delete(v.seen, id)
		}
	}
	if r.IxSent {
		clear(v.index)
		for j := 0; j+1 < len(r.Index); j += 2 {
			n, err := strconv.ParseInt(r.Index[j+1], 10, 64)
			if err == nil && n >= 0 {
				v.index[r.Index[j]] = n
			}
		}
		v.ixVer = r.IxVer
	}
	if r.CountsRead {
		v.sums = inflight(r.Counts, v.index, v.sums)
	}
	// Every balancer lays the division out in id order.
	order := make([]int, len(r.Live))
	for j := range order {
		order[j] = j
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(r.Live[a], r.Live[b]) })
	v.live, v.demands = v.live[:0], v.demands[:0]
	for _, j := range order {
		v.live = append(v.live, r.Live[j])
		w := ""
		if j < len(r.Weights) {
			w = r.Weights[j]
		}
		v.demands = append(v.demands, parseRate(w))
	}
	if r.RegSent {
		v.registry, v.regVer, v.regAt = decodeRegistry(pairsMap(r.Registry)), r.RegVer, time.Now()
	}
	v.owned = r.Owned
	return true, nil
}

// changes lists the backends to send: all of them when full, else those
// whose record in Redis differs from what the balancer holds now, those it
// wants more slots of, and those it no longer has (sent as zeros, which
// removes them). Backends whose in-flight count alone moved come apart, in
// moved: the script updates their counts without the grant arithmetic.
func (v *view) changes(req state.SyncRequest, full bool, targets []int64) (items, moved []item) {
	known := 0
	for i, sl := range req.Slots {
		want := sl.Floor
		if targets != nil && !req.Hold {
			want = targets[i]
		}
		var seen int64
		if !sl.LastSeen.IsZero() {
			seen = sl.LastSeen.UnixMilli()
		}
		r, ok := v.sent[sl.ID]
		if ok {
			known++
			if seen > r.latest {
				r.latest = seen
				v.sent[sl.ID] = r
			}
		}
		// Each backend's count has its turn every countsEvery syncs, the
		// backends' turns staggered, so that no sync carries them all.
		turn := full || (i+v.syncs)%countsEvery == 0
		if !turn || (!full && seen-r.seen < seenAfter(sl.Local)) {
			seen = 0
		}
		it := item{id: sl.ID, local: sl.Local, floor: sl.Floor, want: want, limit: sl.Limit, seen: seen}
		switch {
		case full || !ok || sl.Floor != r.grant || want > r.grant || seen > 0:
			items = append(items, it)
		case turn && sl.Local != r.local:
			moved = append(moved, it)
		}
	}
	if full || known == len(v.sent) {
		return items, moved
	}
	has := make(map[string]bool, len(req.Slots))
	for _, sl := range req.Slots {
		has[sl.ID] = true
	}
	for id, r := range v.sent {
		if !has[id] {
			it := item{id: id, gone: true}
			if r.latest > r.seen {
				it.seen = r.latest
			}
			items = append(items, it)
		}
	}
	return items, moved
}

// result is the SyncResult of req from what v knows after a sync.
func (v *view) result(req state.SyncRequest, targets []int64) state.SyncResult {
	n := len(req.Slots)
	res := state.SyncResult{
		Grants: make([]int64, n), Targets: targets, Remote: make([]int64, n), LastSeen: make([]time.Time, n),
		Balancers: len(v.live), Generation: v.gen,
	}
	if res.Targets == nil {
		res.Targets = make([]int64, n)
	}
	res.Rank, _ = slices.BinarySearch(v.live, req.Balancer)
	for i, sl := range req.Slots {
		r := v.sent[sl.ID]
		res.Grants[i] = r.grant
		res.Remote[i] = max(0, v.sums[sl.ID]-r.local)
		if ms := max(v.seen[sl.ID], r.seen); ms > 0 {
			res.LastSeen[i] = time.UnixMilli(ms)
		}
	}
	if len(v.registry) > 0 || v.owned {
		res.Registry, res.HasRegistry = v.registry, true
	}
	return res
}

func (s *Store) scriptKeys() []string {
	k := s.keys
	return []string{k.Balancers(), k.Granted(), k.Inflight(), k.Index(), k.FreeIndexes(), k.Sequence(),
		k.SeenFeed(), k.LastSeen(), k.Generation(), k.Registry(), k.RegistryVersion(), k.RegistryOwned(), k.IndexVersion()}
}

// Leave implements Store: the balancer's counts and grants leave the sums
// at once.
func (s *Store) Leave(ctx context.Context, balancer string) error {
	s.mu.Lock()
	delete(s.views, balancer)
	s.mu.Unlock()
	err := syncScript.Run(ctx, s.rdb, s.scriptKeys(), "leave", s.keys.BalancerPrefix(), balancer).Err()
	if err != nil {
		return fmt.Errorf("leave balancer %s: %w", balancer, err)
	}
	return nil
}

// ClusterLoad implements Store: the live balancers' scalars and the sums.
func (s *Store) ClusterLoad(ctx context.Context) (state.ClusterLoad, error) {
	raw, err := syncScript.Run(ctx, s.rdb, s.scriptKeys(), "load", s.keys.BalancerPrefix()).Slice()
	var r loadReply
	if err == nil {
		r, err = decodeLoadReply(raw)
	}
	if err != nil {
		return state.ClusterLoad{}, fmt.Errorf("read cluster load: %w", err)
	}
	cl := state.ClusterLoad{Inflight: map[string]int64{}, LastSeen: map[string]time.Time{}, Balancers: len(r.Scalars)}
	var flows []state.Flow
	for _, h := range r.Scalars {
		f := func(j int) string {
			if j < len(h) {
				return h[j]
			}
			return ""
		}
		// In loadScalars' order: queued, interval, arrivals, done, service.
		q, _ := strconv.ParseInt(f(0), 10, 64)
		ms, _ := strconv.ParseInt(f(1), 10, 64)
		cl.Queued += q
		cl.SyncInterval = max(cl.SyncInterval, time.Duration(ms)*time.Millisecond)
		flows = append(flows, state.Flow{Arrivals: parseRate(f(2)), Done: parseRate(f(3)), Service: time.Duration(parseRate(f(4)) * 1e6)})
	}
	cl.Arrivals, cl.Service = state.SumFlows(flows)
	index := make(map[string]int64, len(r.Index)/2)
	for j := 0; j+1 < len(r.Index); j += 2 {
		if n, err := strconv.ParseInt(r.Index[j+1], 10, 64); err == nil && n >= 0 {
			index[r.Index[j]] = n
		}
	}
	for id, n := range inflight(r.Counts, index, nil) {
		cl.Inflight[id] = n
	}
	for j := 0; j+1 < len(r.LastSeen); j += 2 {
		if ms, err := strconv.ParseInt(r.LastSeen[j+1], 10, 64); err == nil {
			cl.LastSeen[r.LastSeen[j]] = time.UnixMilli(ms)
		}
	}
	return cl, nil
}

// inflight decodes the in-flight sums (Keys.Inflight) of the backends in
// index into out (a new map when nil; entries of backends no longer
// indexed, or at zero, are removed).
func inflight(raw string, index map[string]int64, out map[string]int64) map[string]int64 {
	if out == nil {
		out = make(map[string]int64, len(index))
	}
	clear(out)
	for id, n := range index {
		if o := 4 * n; o+4 <= int64(len(raw)) {
			u := uint32(raw[o])<<24 | uint32(raw[o+1])<<16 | uint32(raw[o+2])<<8 | uint32(raw[o+3])
			if c := int64(int32(u)); c != 0 {
				out[id] = c
			}
		}
	}
	return out
}

// ints reads an array reply of integers (or numeric strings); anything
// else, a missing field's nil among them, reads as 0.
func ints(v any) []int64 {
	a, _ := v.([]any)
	out := make([]int64, len(a))
	for i, x := range a {
		switch x := x.(type) {
		case int64:
			out[i] = x
		case string:
			out[i], _ = strconv.ParseInt(x, 10, 64)
		}
	}
	return out
}

func strs(v any) []string {
	a, _ := v.([]any)
	out := make([]string, len(a))
	for i := range a {
		out[i] = strAt(a, i)
	}
	return out
}

func strAt(a []any, i int) string {
	if i >= len(a) {
		return ""
	}
	s, _ := a[i].(string)
	return s
}

func int64At(a []any, i int) int64 {
	if i >= len(a) {
		return 0
	}
	return ints([]any{a[i]})[0]
}
