// Package cluster keeps a balancer's pool in step with the rest of the
// cluster: one goroutine syncs with the Store on a short interval (and at
// once when a request starts queueing), turns the registry into the pool.Set
// the proxy picks from, and applies slot grants, other balancers' in-flight
// counts and last-seen times. The request path only reads what it wrote.
package cluster

import (
	"context"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"lbscale/balancer/flow"
	"lbscale/balancer/pool"
	"lbscale/internal/slowstart"
	"lbscale/internal/state"
)

// Static is a backend from BACKENDS.
type Static struct {
	Addr   string
	Weight int
}

// Options configure a Syncer.
type Options struct {
	Store state.Store
	// ID is this balancer's unique id in the store.
	ID string
	// Share divides MAX_INFLIGHT among balancers (SHARE_STATE). When false
	// each balancer enforces the whole limit alone, yet still publishes its
	// counts so the scaler sees the load.
	Share    bool
	Interval time.Duration
	// Limit is MAX_INFLIGHT per backend.
	Limit int64
	// SlowStart ramps a new backend's limit from 1 to Limit over this long.
	SlowStart time.Duration
	// Static backends, used while no scaler has written a registry.
	Static []Static
	// Queued reports this balancer's queue depth (the demand signal).
	Queued func() int64
	// Flow is the request path's arrival and service counter; its rates
	// are published at every sync for the scaler (nil: none published).
	Flow *flow.Counter
	// Reports receives this balancer's Report every ReportEvery, for the
	// scalers' dashboard (nil: none written).
	Reports state.Reports
	// OnCapacity is called when slots may have appeared (the queue dispatches).
	OnCapacity func()
	Now        func() time.Time
	Log        *slog.Logger
}

// Syncer owns the pool. Set is safe for concurrent use; everything else
// runs on Run's goroutine.
type Syncer struct {
	o    Options
	ttl  time.Duration
	set  atomic.Pointer[pool.Set]
	kick chan struct{}

	version   uint64
	weight    float64
	started   time.Time
	lastOK    time.Time
	holdUntil time.Time // after an outage: take no new slots until then
	up        atomic.Bool
	owned     atomic.Bool // a scaler has written the registry
	starting  atomic.Bool // the registry lists a container starting
	peers     atomic.Int64
	rank      int64
	gen       int64 // the store's generation at the last sync (0: none yet)
	degraded  bool
	raised    bool // degraded, and grants raised to the outage shares

	// retired holds backends that left the set with requests still in
	// flight, so that if the same backend returns (a registry rebuilt after
	// Redis lost it, a container re-adopted) it comes back with its true
	// count instead of a fresh zero that would let the cluster over-grant it.
	retired map[string]*pool.Backend

	flow *flow.Window // nil without Options.Flow

	statMu   sync.Mutex
	states   map[string]state.Status
	lastSync time.Duration
	syncs    atomic.Uint64
	failures atomic.Uint64

	// For Report, which runs on another goroutine.
	lastOKMs atomic.Int64  // unix ms of the latest successful sync
	arrivals atomic.Uint64 // math.Float64bits of the latest published arrival rate
}

// New returns a Syncer whose pool starts with the static backends (holding no
// slots until the first sync when sharing).
func New(o Options) *Syncer {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Queued == nil {
		o.Queued = func() int64 { return 0 }
	}
	if o.OnCapacity == nil {
		o.OnCapacity = func() {}
	}
	s := &Syncer{o: o, kick: make(chan struct{}, 1), states: map[string]state.Status{}, retired: map[string]*pool.Backend{}, started: o.Now()}
	if o.Flow != nil {
		s.flow = flow.NewWindow(o.Flow, flow.DefaultSpan)
	}
	// A dead balancer's slots come back after ttl: long enough to ride out a
	// few slow syncs, short enough that its share is not missed for long.
	s.ttl = max(10*o.Interval, time.Second)
	var entries []state.Backend
	for _, st := range o.Static {
		entries = append(entries, state.Backend{ID: st.Addr, Addr: st.Addr, State: state.Ready, Weight: st.Weight})
	}
	s.set.Store(&pool.Set{})
	s.apply(entries)
	return s
}

// Set is the current pool, for the request path.
func (s *Syncer) Set() *pool.Set { return s.set.Load() }

// Kick asks for a sync now (a request started queueing).
func (s *Syncer) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Coming reports whether capacity may come to a pool that has no backend
// up: the registry lists a container starting, or a scaler owns the pool
// (it has written the registry, even an empty one) and may start one on
// demand, as it does to scale from zero, or there are no static BACKENDS,
// so the pool can only ever come from a scaler (with MIN_REPLICAS=0 it has
// written nothing before the first request's demand starts a container).
// With static BACKENDS only, nothing comes but the health checks bringing a
// backend back.
func (s *Syncer) Coming() bool {
	return s.starting.Load() || s.owned.Load() || len(s.o.Static) == 0
}

// StoreUp reports whether the last sync reached the store.
func (s *Syncer) StoreUp() bool { return s.up.Load() }

// Peers is the number of live balancers at the last sync, this one included.
func (s *Syncer) Peers() int { return int(s.peers.Load()) }

// State is the registry state of backend id.
func (s *Syncer) State(id string) state.Status {
	s.statMu.Lock()
	defer s.statMu.Unlock()
	return s.states[id]
}

// Stats returns sync counts and the last sync's duration.
func (s *Syncer) Stats() (syncs, failures uint64, last time.Duration) {
	s.statMu.Lock()
	defer s.statMu.Unlock()
	return s.syncs.Load(), s.failures.Load(), s.lastSync
}

// Run syncs until ctx ends, then leaves the cluster so this balancer's
// slots are free at once.
func (s *Syncer) Run(ctx context.Context) {
	// Balancers started together would sync in step, all at the same
	// instant of every interval, each waiting behind the others' scripts on
	// Redis's one thread. A random phase spreads them over the interval.
	t := time.NewTimer(rand.N(s.o.Interval) + 1)
	defer t.Stop()
	if s.o.Reports != nil {
		rctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); s.runReports(rctx, s.o.Reports) }()
		defer func() { stop(); <-done }()
	}
	last := time.Now()
	s.Sync(ctx)
	for {
		var wait <-chan time.Time
		select {
		case <-ctx.Done():
		case <-t.C:
			t.Reset(s.o.Interval)
		case <-s.kick:
			if gap := KickGap(s.o.Interval) - time.Since(last); gap > 0 {
				wait = time.After(gap)
			}
		}
		if wait != nil {
			select {
			case <-ctx.Done():
			case <-wait:
			}
		}
		if ctx.Err() != nil {
			lctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = s.o.Store.Leave(lctx, s.o.ID)
			cancel()
			return
		}
		last = time.Now()
		s.Sync(ctx)
	}
}

// KickGap is the least time from one sync to a sync a kick asks for. The
// queue kicks for every request that starts waiting, and under saturation
// that would be back-to-back syncs, each a script call on Redis's one
// thread, for slots that free only as fast as requests finish. A quarter
// interval keeps the wait for new slots short (6 ms at the default 25 ms)
// and bounds a balancer to 5 syncs per interval.
func KickGap(interval time.Duration) time.Duration { return interval / 4 }

// Sync runs one round: report, receive, apply.
func (s *Syncer) Sync(ctx context.Context) {
	set := s.set.Load()
	now := s.o.Now()
	// Fractional slot shares rotate every 10 syncs: often enough that a
	// balancer with a small share waits little, rarely enough that moving
	// slots (each move idles one for up to an interval) costs little.
	req := state.SyncRequest{Balancer: s.o.ID, Queued: s.o.Queued(), TTL: s.ttl, Epoch: 10 * s.o.Interval, Interval: s.o.Interval, Hold: s.degraded || now.Before(s.holdUntil)}
	demand := float64(req.Queued)
	for _, b := range set.Backends {
		demand += float64(b.Local())
	}
	s.weight = DemandWeight(s.weight, demand, s.o.Interval)
	req.Weight = s.weight
	if s.flow != nil {
		req.Flow = s.flow.Rates(now)
		s.arrivals.Store(math.Float64bits(req.Flow.Arrivals))
	}
	for _, b := range set.Backends {
		limit := s.limitFor(b, now)
		b.SetLimit(limit)
		floor := limit
		if s.o.Share {
			// Give back lent slots before asking: the grant drops to the
			// target (never below in-flight), and the store never grants less
			// than this floor, so in-flight <= grant <= recorded grant holds.
			floor = b.ShrinkGrant(b.Target())
		}
		req.Slots = append(req.Slots, state.SlotUse{ID: b.ID, Local: b.Local(), Floor: floor, Limit: limit, LastSeen: b.LastSeen()})
	}
	sctx, cancel := context.WithTimeout(ctx, SyncTimeout(s.o.Interval))
	start := time.Now()
	res, err := s.o.Store.Sync(sctx, req)
	cancel()
	s.statMu.Lock()
	s.lastSync = time.Since(start)
	s.statMu.Unlock()
	s.syncs.Add(1)
	if err != nil {
		s.failures.Add(1)
		s.syncFailed(set, now, err)
		return
	}
	if !s.up.Swap(true) && !s.lastOK.IsZero() {
		s.o.Log.Info("store reachable again; shared counts resume")
	}
	// Hold (take no new slots) for a TTL when the store does not know what
	// this balancer holds: after an outage served on fallback shares it
	// never recorded, or when it lost its state and everyone's grants with
	// it. The other balancers then report theirs before any grant grows.
	// A grant raised by this very answer is not taken either.
	lost := s.gen != 0 && res.Generation != s.gen
	if s.degraded || lost {
		s.holdUntil = now.Add(s.ttl)
		for i := range set.Backends {
			res.Grants[i] = min(res.Grants[i], req.Slots[i].Floor)
		}
		if lost {
			s.o.Log.Warn("store lost its state (restart or flush); holding grants for a TTL", "ttl", s.ttl.String())
		}
	}
	s.gen = res.Generation
	s.lastOK, s.degraded, s.raised = now, false, false
	s.lastOKMs.Store(now.UnixMilli())
	s.peers.Store(int64(res.Balancers))
	s.rank = int64(res.Rank)
	raised := false
	for i, b := range set.Backends {
		g := res.Grants[i]
		if !s.o.Share {
			g = req.Slots[i].Limit
			res.Targets[i], res.Remote[i] = g, 0
		}
		if g > b.Grant() {
			raised = true
		}
		b.SetGrant(g, res.Targets[i])
		b.SetRemote(res.Remote[i])
		b.SeenAt(res.LastSeen[i])
	}
	s.owned.Store(res.HasRegistry)
	if res.HasRegistry && s.apply(res.Registry) {
		// New backends hold no slots yet: ask for them now rather than a
		// whole interval later, since queued requests may be waiting for them.
		s.Kick()
	}
	if raised {
		s.o.OnCapacity()
	}
}

// syncFailed keeps serving on what this balancer knows: local counts, the
// last registry and grants. Once the outage outlasts the TTL the store has
// forgotten everyone's grants anyway, so each balancer moves to its
// DegradedShare of each limit: the shares of the balancers live at the last
// sync add up to exactly the limit. A balancer that has never reached the
// store knows no peers; after a TTL it serves on one slot per backend.
func (s *Syncer) syncFailed(set *pool.Set, now time.Time, err error) {
	if s.up.Swap(false) || s.lastOK.IsZero() {
		s.o.Log.Warn("store unreachable; serving on local counts", "err", err)
	}
	since := s.lastOK
	if since.IsZero() {
		since = s.started
	}
	out := now.Sub(since)
	// The balancers do not reach the TTL at one instant: each counts from
	// its own last sync, up to an interval or so apart. So each first only
	// lowers the grants above its share, and raises the ones below a
	// RaiseDelay later, once every peer has lowered its own: raising at
	// once would add its share to a peer's old grant not yet lowered.
	raise := out >= s.ttl+RaiseDelay(s.o.Interval)
	if out < s.ttl || (s.degraded && (s.raised || !raise)) {
		return
	}
	s.degraded = true
	s.raised = raise
	peers := max(s.peers.Load(), 1)
	for i, b := range set.Backends {
		var share int64
		switch {
		case !s.o.Share:
			share = b.Limit()
		case s.lastOK.IsZero():
			share = min(1, b.Limit())
		default:
			share = DegradedShare(b.Limit(), peers, s.rank, int64(i))
		}
		b.SetRemote(0)
		switch {
		case share < b.Grant():
			// Above its share: lend nothing more, and give slots back as
			// requests finish (Release drops a grant above its target).
			b.ShrinkGrant(share)
		case raise:
			b.SetGrant(share, share)
		}
	}
	if raise {
		s.o.OnCapacity()
	}
}

// RaiseDelay is how long after its TTL a balancer cut off from the store
// waits before raising grants to its outage shares. Its peers reach their
// TTLs within an interval of its own, and each tries a sync at least every
// SyncTimeout plus an interval while the store does not answer: by then
// every peer has lowered its grants.
func RaiseDelay(interval time.Duration) time.Duration { return SyncTimeout(interval) + 2*interval }

// SyncTimeout bounds one sync: a few intervals, so that a slow store does
// not stall the loop, and at least half a second, so that a loaded one
// still answers.
func SyncTimeout(interval time.Duration) time.Duration { return max(4*interval, 500*time.Millisecond) }

// DegradedShare is balancer rank's slots of backend index's limit while the
// store is unreachable, among peers balancers. The limit is cut into peers
// near-equal parts (floor or ceil of limit/peers) that add up to exactly the
// limit, and each backend rotates which balancer gets which part, so with
// more balancers than slots every balancer still holds some slot somewhere.
// E.g. limit 4, 3 balancers: backend 0 gives 1, 1, 2; backend 1 gives 1, 2, 1.
func DegradedShare(limit, peers, rank, index int64) int64 {
	if peers <= 1 || limit <= 0 {
		return max(limit, 0)
	}
	pos := (rank + index) % peers
	if pos < 0 {
		pos += peers
	}
	return (pos+1)*limit/peers - pos*limit/peers
}

// retire keeps the backends of old that are not in next and still have
// requests in flight, and forgets retired ones whose requests have ended.
// It runs only when the membership changed, not at every sync.
func (s *Syncer) retire(old, next []*pool.Backend) {
	kept := make(map[*pool.Backend]bool, len(next))
	for _, b := range next {
		kept[b] = true
	}
	for _, b := range old {
		if !kept[b] && b.Local() > 0 {
			s.retired[b.ID] = b
		}
	}
	for id, b := range s.retired {
		if b.Local() == 0 {
			delete(s.retired, id)
		}
	}
}

func (s *Syncer) limitFor(b *pool.Backend, now time.Time) int64 {
	if s.o.SlowStart <= 0 || b.Since.IsZero() {
		return s.o.Limit
	}
	return slowstart.Limit(s.o.Limit, now.Sub(b.Since), s.o.SlowStart)
}

// DemandWeight is the demand this balancer claims slots by: it follows a
// rise at once (a burst needs slots now) and decays over about a second.
// In-flight plus queued jitters by a few requests from one sync to the next
// under steady load; fed raw into the division it would move a slot between
// balancers every few syncs, and each move idles the slot for up to a sync
// interval. E.g. demand 34, 36, 35, 36 at 25 ms gives 34, 36, 35.98, 36.
func DemandWeight(prev, now float64, interval time.Duration) float64 {
	a := min(1, interval.Seconds())
	return max(now, prev*(1-a)+now*a)
}

// apply turns registry entries into the pool: ready and draining backends are
// in the set (draining ones only so their in-flight requests are tracked),
// starting ones are not. Backends keep their counters across changes. It
// reports whether the membership changed.
func (s *Syncer) apply(entries []state.Backend) bool {
	old := s.set.Load()
	byID := make(map[string]*pool.Backend, len(old.Backends))
	for _, b := range old.Backends {
		byID[b.ID] = b
	}
	states := make(map[string]state.Status, len(entries))
	var next []*pool.Backend
	changed, starting := false, false
	for _, e := range entries {
		states[e.ID] = e.State
		starting = starting || e.State == state.Starting
		if e.State != state.Ready && e.State != state.Draining {
			continue
		}
		b, ok := byID[e.ID]
		if !ok {
			b, ok = s.retired[e.ID]
			if ok && b.Addr == e.Addr && b.Local() > 0 {
				delete(s.retired, e.ID)
				changed = true
			} else {
				ok = false
			}
		}
		if !ok || b.Addr != e.Addr {
			b = pool.New(e.ID, e.Addr, e.Weight, s.o.Limit)
			b.Since = e.Since
			if s.o.Share {
				b.SetGrant(0, 0) // no slots until the store grants some
			}
			changed = true
		}
		if b.Draining() != (e.State == state.Draining) {
			b.SetDraining(e.State == state.Draining)
			changed = true
		}
		next = append(next, b)
	}
	if len(next) != len(old.Backends) {
		changed = true
	}
	s.statMu.Lock()
	s.states = states
	s.statMu.Unlock()
	s.starting.Store(starting)
	if !changed {
		return false
	}
	s.retire(old.Backends, next)
	s.version++
	s.set.Store(&pool.Set{Backends: next, Version: s.version})
	s.o.Log.Info("pool changed", "backends", len(next))
	return true
}
