// Package pool holds the balancer's live view of its backends: one Backend
// record per web server with atomic counters, and immutable Sets of them that
// the proxy swaps when the registry changes.
//
// Everything a policy reads on the request path lives here as an atomic, so a
// pick takes no lock and allocates nothing; the sync loop, health checker and
// load poller write these fields from their own goroutines.
package pool

import (
	"math"
	"net/url"
	"sync/atomic"
	"time"
)

// Backend is one upstream web server as this balancer sees it.
//
// Slot accounting: Local is the exact number of requests this balancer has
// in flight to the backend; Grant is how many it may have at once. With shared
// state the grant is this balancer's lease of the backend's cluster-wide
// MAX_INFLIGHT (see internal/state); without it, the whole limit. A request
// may only start after TryAcquire succeeded, so Local never exceeds Grant.
type Backend struct {
	// ID names the backend in the registry, /status and metrics (the
	// container name for scaler-managed backends, host:port for static ones).
	ID string
	// Addr is host:port of the web server.
	Addr string
	// URL is http://Addr, built once so the proxy does not parse per request.
	URL *url.URL
	// Weight is the relative share for weighted round robin (>= 1).
	Weight int
	// Since is when the backend became ready; slow start ramps from it.
	Since time.Time

	// slots packs grant<<32 | local into one word so that acquiring a slot
	// and shrinking the grant are each one CAS: a grant can never be set
	// below what is already in flight without the setter seeing it.
	slots    atomic.Uint64
	target   atomic.Int64 // fair share from the last sync; slots above it are lent
	remote   atomic.Int64
	limit    atomic.Int64
	healthy  atomic.Bool
	draining atomic.Bool
	load     atomic.Uint64 // math.Float64bits of the last /load utilisation
	lastSeen atomic.Int64  // unix nanoseconds of the last request sent (cluster-wide max after sync)
	served   atomic.Uint64 // requests completed through this balancer
	failures atomic.Uint64 // failed attempts (5xx answers, gateway failures) through this balancer
	busy     atomic.Int64  // summed service time (ns) of the served requests, long-lived connections excluded

	// Long-lived connections (upgrades, streams) hold no request slot:
	// they count here, against a connection capacity of their own.
	conns       atomic.Int64 // open through this balancer
	remoteConns atomic.Int64 // open through the other balancers, as last reported

	// Outlier ejection (balancer/outlier decides; the pool only stores).
	// ejectedUntil is unix nanoseconds, 0 when not ejected: one word, so the
	// lazy clear on expiry (a CAS to 0) can never erase a newer ejection.
	consecutive  atomic.Int64  // failures since the last success or ejection
	ejectedUntil atomic.Int64  // end of the current ejection; 0: none
	lastEjection atomic.Int64  // end of the latest ejection, kept after it ends
	ejectLevel   atomic.Int64  // multiplier of the latest ejection
	ejections    atomic.Uint64 // ejections so far

	// Latency is a latency estimate kept for the least-latency policy,
	// which defines its arithmetic; the pool only stores it so it outlives
	// set changes like the other counters.
	Latency Latency
}

// Latency is a per-backend latency estimate: a value, when it was last
// updated, and the owner's sort key derived from both, each one atomic word.
// Updates race benignly: a writer that loses a CompareAndSwap on Value
// recomputes from the winner's, and a reader may see a key one update old.
type Latency struct {
	// Value is math.Float64bits of the estimate in nanoseconds; 0 means
	// no observation yet.
	Value atomic.Uint64
	// At is when Value was last updated, in nanoseconds on the owner's clock.
	At atomic.Int64
	// Key is math.Float64bits of what the owner ranks backends by.
	Key atomic.Uint64
}

// New returns a healthy backend with the given per-backend limit, holding the
// whole limit as its grant (the single-balancer case; the sync loop lowers it).
func New(id, addr string, weight int, limit int64) *Backend {
	if weight < 1 {
		weight = 1
	}
	b := &Backend{ID: id, Addr: addr, URL: &url.URL{Scheme: "http", Host: addr}, Weight: weight}
	b.limit.Store(limit)
	b.slots.Store(pack(limit, 0))
	b.target.Store(limit)
	b.healthy.Store(true)
	return b
}

// Available reports whether a request could start on b now: routable
// (healthy, not draining, not ejected) and a free slot in this balancer's
// grant. Policies pick only among available backends.
func (b *Backend) Available() bool {
	g, l := unpack(b.slots.Load())
	return l < g && b.Routable()
}

func pack(grant, local int64) uint64 { return uint64(grant)<<32 | uint64(uint32(local)) }

func unpack(v uint64) (grant, local int64) { return int64(v >> 32), int64(uint32(v)) }

// Routable reports whether b takes new requests at all (healthy, not
// draining, not ejected), whatever its slots. The clock is read only while
// an ejection is set, so the common case costs three atomic loads.
func (b *Backend) Routable() bool {
	if !b.healthy.Load() || b.draining.Load() {
		return false
	}
	return b.ejectedUntil.Load() == 0 || !b.Ejected(time.Now())
}

// Ejected reports whether b is ejected at now, and clears an ejection whose
// time is up so later checks skip the clock.
func (b *Backend) Ejected(now time.Time) bool {
	u := b.ejectedUntil.Load()
	if u == 0 {
		return false
	}
	if now.UnixNano() < u {
		return true
	}
	b.ejectedUntil.CompareAndSwap(u, 0)
	return false
}

// EjectedUntil is the end of b's current ejection, or zero when b is not
// ejected (as of the last check; an expired one may still show until then).
func (b *Backend) EjectedUntil() time.Time {
	if u := b.ejectedUntil.Load(); u != 0 {
		return time.Unix(0, u)
	}
	return time.Time{}
}

// LastEjection is the end of b's latest ejection (zero: never ejected) and
// its multiplier, which the next ejection's length grows from.
func (b *Backend) LastEjection() (until time.Time, level int) {
	if u := b.lastEjection.Load(); u != 0 {
		until = time.Unix(0, u)
	}
	return until, int(b.ejectLevel.Load())
}

// Ejections is the number of times b was ejected.
func (b *Backend) Ejections() uint64 { return b.ejections.Load() }

// Eject takes b out of rotation until until (level: the ejection's
// multiplier) and restarts its count of consecutive failures. Only one
// goroutine may eject at a time (the outlier detector holds a lock).
func (b *Backend) Eject(until time.Time, level int) {
	b.consecutive.Store(0)
	b.ejectLevel.Store(int64(level))
	b.lastEjection.Store(until.UnixNano())
	b.ejections.Add(1)
	b.ejectedUntil.Store(until.UnixNano())
}

// TryAcquire takes one slot if b is available; the caller must Release it.
func (b *Backend) TryAcquire() bool {
	if !b.Routable() {
		return false
	}
	for {
		v := b.slots.Load()
		if g, l := unpack(v); l >= g {
			return false
		}
		if b.slots.CompareAndSwap(v, v+1) {
			b.lastSeen.Store(time.Now().UnixNano())
			return true
		}
	}
}

// Release gives back a slot taken by TryAcquire. While b holds more slots
// than its fair share (its target), the slot is returned to the cluster —
// the grant drops with the in-flight count — instead of being reused by the
// next queued request here; otherwise a saturated balancer, which refills
// every freed slot at once, would never yield slots to the others.
func (b *Backend) Release() {
	b.served.Add(1)
	for {
		v := b.slots.Load()
		g, l := unpack(v)
		if g > b.target.Load() {
			g--
		}
		if b.slots.CompareAndSwap(v, pack(g, l-1)) {
			return
		}
	}
}

// Inflight is the cluster-wide number of requests in flight to b: this
// balancer's exact count plus the others' as of the last sync.
func (b *Backend) Inflight() int64 { return b.Local() + b.remote.Load() }

// Local is this balancer's exact in-flight count.
func (b *Backend) Local() int64 { _, l := unpack(b.slots.Load()); return l }

// Target is this balancer's fair share of b's slots as of the last sync.
func (b *Backend) Target() int64 { return b.target.Load() }

// Grant is the number of slots this balancer may use on b.
func (b *Backend) Grant() int64 { g, _ := unpack(b.slots.Load()); return g }

// Limit is b's cluster-wide in-flight limit (MAX_INFLIGHT, lower during slow start).
func (b *Backend) Limit() int64 { return b.limit.Load() }

// Load is the backend's last reported utilisation (in-flight / capacity,
// from its /load endpoint), or the in-flight ratio when never polled.
func (b *Backend) Load() float64 {
	if v := b.load.Load(); v != 0 {
		return math.Float64frombits(v)
	}
	if l := b.limit.Load(); l > 0 {
		return float64(b.Inflight()) / float64(l)
	}
	return 0
}

// LastSeen is when a request was last sent to b (cluster-wide after a sync).
func (b *Backend) LastSeen() time.Time {
	if n := b.lastSeen.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Healthy reports the last health verdict.
func (b *Backend) Healthy() bool { return b.healthy.Load() }

// Draining reports whether the scaler is draining b.
func (b *Backend) Draining() bool { return b.draining.Load() }

// Served is the number of requests this balancer completed on b.
func (b *Backend) Served() uint64 { return b.served.Load() }

// Failures is the number of failed attempts (5xx answers, gateway failures
// and upstream timeouts) this balancer saw on b.
func (b *Backend) Failures() uint64 { return b.failures.Load() }

// ConsecutiveFailures is b's current run of failures: since its last
// success or ejection, and 0 with outlier detection off.
func (b *Backend) ConsecutiveFailures() int64 { return b.consecutive.Load() }

// SetRemote records the other balancers' in-flight sum from a sync.
func (b *Backend) SetRemote(n int64) { b.remote.Store(n) }

// SetGrant records this balancer's slot grant and fair-share target from a
// sync. A grant below the current in-flight count is allowed: no new request
// starts until enough finish.
func (b *Backend) SetGrant(n, target int64) {
	b.target.Store(target)
	for {
		v := b.slots.Load()
		_, l := unpack(v)
		if b.slots.CompareAndSwap(v, pack(n, l)) {
			return
		}
	}
}

// ShrinkGrant lowers the grant to max(target, in-flight) atomically and
// returns the new grant: the most this balancer can have in flight until
// the grant is raised again. The sync loop reports it as its floor.
func (b *Backend) ShrinkGrant(target int64) int64 {
	b.target.Store(target)
	for {
		v := b.slots.Load()
		g, l := unpack(v)
		n := max(target, l)
		if n >= g {
			return g
		}
		if b.slots.CompareAndSwap(v, pack(n, l)) {
			return n
		}
	}
}

// SetLimit records b's cluster-wide limit.
func (b *Backend) SetLimit(n int64) { b.limit.Store(n) }

// SetHealthy records a health verdict.
func (b *Backend) SetHealthy(ok bool) { b.healthy.Store(ok) }

// SetDraining records the registry's draining flag.
func (b *Backend) SetDraining(d bool) { b.draining.Store(d) }

// SetLoad records a utilisation reading from /load.
func (b *Backend) SetLoad(f float64) { b.load.Store(math.Float64bits(f)) }

// SeenAt raises LastSeen to t (a later time seen by another balancer).
func (b *Backend) SeenAt(t time.Time) {
	n := t.UnixNano()
	for {
		cur := b.lastSeen.Load()
		if n <= cur || b.lastSeen.CompareAndSwap(cur, n) {
			return
		}
	}
}

// Busy is the summed service time of the requests this balancer served
// on b (long-lived connections excluded).
func (b *Backend) Busy() time.Duration { return time.Duration(b.busy.Load()) }

// AddBusy adds one served request's service time.
func (b *Backend) AddBusy(d time.Duration) { b.busy.Add(int64(d)) }

// Conns is the number of long-lived connections this balancer holds open
// on b.
func (b *Backend) Conns() int64 { return b.conns.Load() }

// ClusterConns is the cluster-wide number of long-lived connections on b:
// this balancer's exact count plus the others' as last reported.
func (b *Backend) ClusterConns() int64 { return b.conns.Load() + b.remoteConns.Load() }

// OpenConn counts a long-lived connection opened on b; CloseConn its end.
func (b *Backend) OpenConn()  { b.conns.Add(1) }
func (b *Backend) CloseConn() { b.conns.Add(-1) }

// SetRemoteConns records the other balancers' long-lived connections on b.
func (b *Backend) SetRemoteConns(n int64) { b.remoteConns.Store(n) }

// Failed counts a failed attempt on b (a 5xx answer or a gateway failure).
func (b *Backend) Failed() { b.failures.Add(1) }

// ExtendFailureRun adds a failure to b's run of consecutive failures and
// returns the run's length.
func (b *Backend) ExtendFailureRun() int64 { return b.consecutive.Add(1) }

// Succeeded ends b's run of consecutive failures. It writes only when there
// is a run to end, so the common case does not bounce the cache line
// between cores.
func (b *Backend) Succeeded() {
	if b.consecutive.Load() != 0 {
		b.consecutive.Store(0)
	}
}

// Set is an immutable snapshot of the backends, replaced as a whole when
// the registry changes, so policies may cache per-set structures (a hash
// ring) keyed by Version.
type Set struct {
	// Backends in a stable order (sorted by ID).
	Backends []*Backend
	// Version increases with every new Set.
	Version uint64
}
