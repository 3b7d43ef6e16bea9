package policy

import (
	"math"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"

	"lbscale/balancer/pool"
)

// DefaultLatencyDecay is least-latency's EWMA time constant (LATENCY_DECAY),
// Finagle's and Linkerd's 10 s: long enough that one fast answer does not
// erase a slow backend's record, short enough that a recovered backend is
// tried again within tens of seconds.
const DefaultLatencyDecay = 10 * time.Second

// unobservedBusy ranks a backend with no observation yet and requests in
// flight (plus their number): above any observed backend's log-cost, so an
// unknown backend is probed one request at a time. Keys reach 1e12 only
// after 300 years at the shortest LATENCY_DECAY.
const unobservedBusy = 1e12

// LeastLatency scores each available backend by its peak-EWMA response time
// × (requests in flight + 1) and picks the lowest, as Finagle's and Linkerd's
// peak-EWMA balancers do. So it moves traffic off a backend that got slow
// at its first slow answer, without waiting for it to fail, and still
// weighs load: a fast backend stops winning once it holds enough requests.
//
// The estimate (PeakEWMA) jumps at once to a slower observation and decays
// toward faster ones with time constant tau; between observations it also
// decays toward zero, so a backend that was slow once and then got no
// traffic is tried again (after tau × ln(its cost / the best cost)). A
// backend with no observation yet costs 0 while idle (it is tried first)
// and more than any observed backend while busy (one probe at a time).
//
// Observations are the time to response headers of answers below 500; a
// 5xx or a gateway failure is the outlier detector's business, and counting
// a fast 500 as a fast answer would draw traffic to a failing backend.
// Estimates live on pool.Backend, so they outlive set changes. Ties are
// broken by reservoir sampling, as in least-connections.
type LeastLatency struct {
	src   *lockedSource
	now   func() time.Time
	epoch time.Time // times on the backends are nanoseconds since epoch
	tau   time.Duration
}

var (
	_ Policy   = (*LeastLatency)(nil)
	_ Observer = (*LeastLatency)(nil)
)

// NewLeastLatency returns a least-latency policy with EWMA time constant
// tau (0: DefaultLatencyDecay), clock now (nil: time.Now) and tie-breaks
// drawn from src (see NewRandom). A policy's estimates are its own: two
// least-latency policies must not share backends.
func NewLeastLatency(src rand.Source, tau time.Duration, now func() time.Time) *LeastLatency {
	if tau <= 0 {
		tau = DefaultLatencyDecay
	}
	if now == nil {
		now = time.Now
	}
	return &LeastLatency{src: newLockedSource(src), now: now, epoch: now(), tau: tau}
}

// Observe records a response time of b. It stores, beside the estimate v
// made at time at, the key ln v + at/tau: b's cost at any later t is
// v × e^(-(t-at)/tau) × (n+1), whose logarithm is key − t/tau + ln(n+1), and
// t/tau is the same for every backend of a pick. So a pick ranks by
// key + ln(n+1) and needs neither the clock nor an exponential per backend.
func (p *LeastLatency) Observe(b *pool.Backend, rtt time.Duration) {
	t := int64(p.now().Sub(p.epoch)) // monotonic with time.Now
	obs := float64(max(rtt, 1))      // 0 means "no observation"
	for {
		old := b.Latency.Value.Load()
		at := b.Latency.At.Load()
		next := PeakEWMA(math.Float64frombits(old), time.Duration(t-at), obs, p.tau)
		if b.Latency.Value.CompareAndSwap(old, math.Float64bits(next)) {
			raise(&b.Latency.At, t)
			b.Latency.Key.Store(math.Float64bits(math.Log(next) + float64(t)/float64(p.tau)))
			return
		}
	}
}

// raise sets v to t unless it already holds a later time.
func raise(v *atomic.Int64, t int64) {
	for {
		cur := v.Load()
		if cur >= t || v.CompareAndSwap(cur, t) {
			return
		}
	}
}

// PeakEWMA is the next estimate after observing obs (any unit) elapsed
// after the estimate prev was made (0: none yet): obs itself if it is
// slower, else the exponentially weighted mean with weight e^(-elapsed/tau)
// on prev. E.g. tau 10s, prev 100ms: an observation of 10ms 1s later gives
// 91.4ms, 10s later 43.1ms; one of 300ms gives 300ms at once.
func PeakEWMA(prev float64, elapsed time.Duration, obs float64, tau time.Duration) float64 {
	if prev == 0 || obs >= prev {
		return obs
	}
	w := 1.0
	if elapsed > 0 {
		w = math.Exp(-float64(elapsed) / float64(tau))
	}
	return prev*w + obs*(1-w)
}

// logs[n] is ln(n+1), for in-flight counts up to its length.
var logs = func() (l [256]float64) {
	for i := range l {
		l[i] = math.Log(float64(i + 1))
	}
	return l
}()

// rank is b's log-cost up to a term common to all backends; lower is better.
func rank(b *pool.Backend) float64 {
	n := b.Inflight()
	if b.Latency.Value.Load() == 0 {
		if n == 0 {
			return math.Inf(-1)
		}
		return unobservedBusy + float64(n)
	}
	k := math.Float64frombits(b.Latency.Key.Load())
	if n >= 0 && n < int64(len(logs)) {
		return k + logs[n]
	}
	return k + math.Log(float64(n+1))
}

// Pick returns an available backend with the lowest cost.
func (p *LeastLatency) Pick(set *pool.Set, _ http.ResponseWriter, _ *http.Request) *pool.Backend {
	return lowest(set, draw{src: p.src}, rank)
}
