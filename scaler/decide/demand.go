package decide

import (
	"cmp"
	"math"
	"slices"
	"time"
)

// Sample is one reading of the cluster's demand, taken by the leader at
// every POLL_INTERVAL from what the balancers published.
type Sample struct {
	At time.Time
	// Arrivals is the offered rate, requests per second, summed over the
	// balancers (each measures it over the last second).
	Arrivals float64
	// Service is the mean backend service time (0: never measured).
	Service time.Duration
	// Inflight and Queued are the cluster-wide counts at the reading.
	Inflight, Queued int64
	// Conns is the cluster-wide number of open long-lived connections
	// (WebSocket, SSE) at the reading. They hold a container for as long as
	// they last yet are no request in flight, so they size the pool by a
	// target of their own (Sizing.TargetConns) rather than through Steady.
	Conns int64
}

// Steady is the concurrency the arrival rate keeps busy, by Little's law:
// Arrivals × Service. Unlike in-flight plus queued, it does not count a
// backlog as if it stood for ever, and unlike in-flight alone it is not
// capped by the pool's present size. Without a measured service time (no
// request served yet, e.g. the first scale from zero) it falls back to the
// in-flight count.
//
// E.g. 30 req/s at 200 ms: 6 requests in flight, whatever the queue holds.
func (s Sample) Steady() float64 {
	if s.Service <= 0 {
		return float64(max(s.Inflight, 0))
	}
	return s.Arrivals * s.Service.Seconds()
}

// Backlog is the concurrency that works off a backlog of work slot-seconds
// within horizon: work / horizon, never negative. Sizing.Up computes the work
// (the queue, and what a cold start adds to it) and the horizon.
//
// E.g. 20 queued at 200 ms (4 slot-seconds) over 2 s: 2 slots.
func Backlog(work float64, horizon time.Duration) float64 {
	if work <= 0 || horizon <= 0 {
		return 0
	}
	return work / horizon.Seconds()
}

// Windows keeps the leader's recent samples, for the panic and stable
// windows. It is pure bookkeeping: the time comes with each sample.
type Windows struct {
	// Stable and Panic are STABLE_WINDOW and PANIC_WINDOW.
	Stable, Panic time.Duration
	// Every is the least spacing of recorded samples (half a poll): readings
	// taken more often (on demand signals, which come with every balancer
	// sync while requests queue) are not recorded. The means weigh each
	// sample by the time it stands for (see weight), so the busy moments
	// the demand signals sample more densely do not weigh more than quiet
	// ones.
	Every time.Duration
	// Gap is the longest time between two samples that still counts as a
	// continuous record (0: the panic window, and at least four Every). After a longer gap (the load
	// could not be read, say, while the lease held) the record restarts:
	// Full waits for a whole stable window again, since what happened in
	// the gap is unknown and a scale-down must not act on it.
	Gap time.Duration

	samples []Sample // oldest first, none older than the longer window
	first   time.Time
	// service is the latest measured service time. A sample without one
	// (the balancers restarted, or no request finished in their last
	// second) is read with it, rather than as if its arrivals cost nothing.
	service time.Duration
}

// Add records s unless it comes within Every of the previous one; samples
// must come in time order. Its service time, if measured, is remembered
// either way.
func (w *Windows) Add(s Sample) {
	if s.Service > 0 {
		w.service = s.Service
	}
	n := len(w.samples)
	if w.first.IsZero() || n > 0 && s.At.Sub(w.samples[n-1].At) > w.gap() {
		w.first = s.At
	}
	if n > 0 && s.At.Sub(w.samples[n-1].At) < w.Every {
		return
	}
	w.samples = append(w.samples, s)
	keep := s.At.Add(-max(w.Stable, w.Panic))
	i := 0
	for i < len(w.samples)-1 && w.samples[i].At.Before(keep) {
		i++
	}
	if i > 0 {
		w.samples = append(w.samples[:0], w.samples[i:]...)
	}
}

func (w *Windows) gap() time.Duration {
	if w.Gap > 0 {
		return w.Gap
	}
	return max(w.Panic, 4*w.Every)
}

// Reset forgets every sample and the service time: a new leader has no
// history of its own.
func (w *Windows) Reset() {
	w.samples, w.first, w.service = w.samples[:0], time.Time{}, 0
}

// Full reports whether the samples cover a whole stable window up to now
// without a gap; until they do, a scale-down would act on a part of the
// window (a leader that just took over, or one that could not read the
// load for a while, knows nothing of the minute before).
func (w *Windows) Full(now time.Time) bool {
	if w.first.IsZero() || now.Sub(w.first) < w.Stable {
		return false
	}
	n := len(w.samples)
	return n > 0 && now.Sub(w.samples[n-1].At) <= w.gap()
}

// Service is cur's service time, or the latest measured one when cur has
// none (0: never measured).
func (w *Windows) Service(cur Sample) time.Duration {
	if cur.Service > 0 {
		return cur.Service
	}
	return w.service
}

// steady is s.Steady with the latest measured service time when s has
// none: arrivals the balancers counted while no request finished still
// cost what requests cost.
func (w *Windows) steady(s Sample) float64 {
	if s.Service <= 0 && w.service > 0 {
		s.Service = w.service
	}
	return s.Steady()
}

// weight is the time sample i stands for: the time since the sample
// before it, at most two Every (a poll); the first one weighs a poll.
// Equal weights when Every is 0.
func (w *Windows) weight(i int) float64 {
	if w.Every <= 0 {
		return 1
	}
	poll := 2 * w.Every
	if i == 0 {
		return poll.Seconds()
	}
	return min(w.samples[i].At.Sub(w.samples[i-1].At), poll).Seconds()
}

// PanicMean is the time-weighted mean steady concurrency over the panic
// window up to now (0 with no sample in it).
func (w *Windows) PanicMean(now time.Time) float64 {
	return w.panicMean(now, w.steady, nil)
}

// PanicQueued is the time-weighted mean queue length over the panic window
// up to now.
func (w *Windows) PanicQueued(now time.Time) float64 {
	return w.panicMean(now, queued, nil)
}

func queued(s Sample) float64 { return float64(max(s.Queued, 0)) }

// panicMean is f's time-weighted mean over the panic window up to now;
// extra, if not nil, is a reading not recorded (within Every of the last)
// that counts too, for the time since the last recorded one.
func (w *Windows) panicMean(now time.Time, f func(Sample) float64, extra *Sample) float64 {
	var sum, total float64
	for i, s := range w.samples {
		if now.Sub(s.At) < w.Panic && !s.At.After(now) {
			wt := w.weight(i)
			sum += wt * f(s)
			total += wt
		}
	}
	if extra != nil {
		wt := 1.0
		if n := len(w.samples); w.Every > 0 && n > 0 {
			wt = max(extra.At.Sub(w.samples[n-1].At), time.Millisecond).Seconds()
		}
		sum += wt * f(*extra)
		total += wt
	}
	if total == 0 {
		return 0
	}
	return sum / total
}

// recorded reports whether s is the latest sample recorded.
func (w *Windows) recorded(s Sample) bool {
	return len(w.samples) > 0 && w.samples[len(w.samples)-1] == s
}

// StableMax is the highest steady concurrency over the stable window up to
// now (0 with no sample in it). Samples taken without a service time are
// read with the latest one measured, so the in-flight counts of a pool
// working off a queue before any request finished do not stand as demand.
//
// Why the maximum rather than a mean with headroom: a mean lets the pool
// shrink inside a minute that held a burst, so the next burst of the same
// shape starts containers again (a flap, and its cold starts sit in the
// latency); the maximum shrinks only to what every moment of the last
// window needed, so a pool shrunk by it fits every second of the window.
// The cost is the window itself: after a step down the surplus runs for
// STABLE_WINDOW more (the price Knative and the HPA's 300 s stabilisation
// pay too), and under Poisson arrivals the maximum sits a little above the
// mean (about two standard deviations of a one-second count). Read as the
// panic window's means instead, the maximum sits closer to the rate, but
// a scale-up while requests queue reads the latest second, so the pool
// shrinks below what the next such second asks: measured in simulation,
// 10 times the flaps.
func (w *Windows) StableMax(now time.Time) float64 {
	var m float64
	for _, s := range w.samples {
		if now.Sub(s.At) < w.Stable && !s.At.After(now) {
			m = max(m, w.steady(s))
		}
	}
	return m
}

// Rising reports whether the steady demand has been rising through the
// stable window: the panic window's mean now, half a window back and a
// window back each above the next by more than two standard deviations
// of the difference of two such means under Poisson arrivals. While it
// rises, no surplus is drained: a rise keeps setting new maxima, so what a
// scale-up started above the window's maximum (its backlog, a step read at
// once) is needed again before the window is out, and draining it is a
// flap (measured: 10 an hour at 1,000 containers on a compressed day). A
// step is no rise by this test (one of the two halves is flat), so the
// backlog a step started still goes as soon as the queue is worked off.
//
// E.g. a 60 s window with a 6 s panic window at 200 ms: means of 10,000,
// 10,210 and 10,420 req/s, 27 s apart, each 210 above the one before with
// a noise of 2√(2 × 10,420 / 6) = 118: rising. 10,000, 10,000, 10,420
// (a step in the last half): not.
func (w *Windows) Rising(now time.Time) bool {
	if w.Panic <= 0 || w.service <= 0 || w.Stable <= w.Panic || len(w.samples) == 0 {
		return false
	}
	back := w.Stable - w.Panic
	if now.Sub(w.samples[0].At) < back {
		return false
	}
	m0 := w.panicMean(now, w.steady, nil)
	m1 := w.panicMean(now.Add(-back/2), w.steady, nil)
	m2 := w.panicMean(now.Add(-back), w.steady, nil)
	s := w.service.Seconds()
	noise := 2 * math.Sqrt(2*max(m0, m1, m2)/s/w.Panic.Seconds()) * s
	return m0-m1 > noise && m1-m2 > noise
}

// StableMaxConns is the highest connection count over the stable window up
// to now (0 with no sample in it). The maximum, as for StableMax: a pool
// shrunk by it carries every moment of the window, and connections that
// come back after a dip (clients reconnecting after a network blip) find
// their containers still there.
func (w *Windows) StableMaxConns(now time.Time) int64 {
	var m int64
	for _, s := range w.samples {
		if now.Sub(s.At) < w.Stable && !s.At.After(now) {
			m = max(m, s.Conns)
		}
	}
	return m
}

// Sizing turns concurrency into containers.
type Sizing struct {
	// Target is the concurrency one container should carry (TARGET_INFLIGHT).
	Target int
	// Min and Max are MIN_REPLICAS and MAX_REPLICAS.
	Min, Max int
	// BacklogDrain is the time a queue should take to drain (BACKLOG_DRAIN)
	// once the containers started for it are ready.
	BacklogDrain time.Duration
	// WaitTarget is the queue wait the pool is sized for at the 99th
	// percentile (LATENCY_TARGET): Staff adds the headroom that random
	// arrivals need for it. 0: no headroom (the pool runs at its target).
	WaitTarget time.Duration
	// TargetConns is the number of long-lived connections one container
	// should carry (TARGET_CONNECTIONS); 0: connections do not size the
	// pool. The pool is the larger of what its requests and its
	// connections need, since a container holding its share of
	// connections still serves requests beside them and the reverse.
	TargetConns int
}

// containers is ceil(conc / target) within [Min, Max]. A need a hair above
// a whole number (float error in rate × time) does not round up.
func (z Sizing) containers(conc float64) int {
	t := float64(max(z.Target, 1))
	n := math.Ceil(conc/t - 1e-9)
	if math.IsNaN(n) || n < 0 {
		n = 0
	}
	return int(min(max(n, float64(z.Min)), float64(z.Max)))
}

// connContainers is ceil(conns / TargetConns) within [Min, Max]; 0 when
// connections do not size the pool (TargetConns 0).
func (z Sizing) connContainers(conns float64) int {
	if z.TargetConns <= 0 {
		return 0
	}
	n := math.Ceil(max(conns, 0)/float64(z.TargetConns) - 1e-9)
	if math.IsNaN(n) || n < 0 {
		n = 0
	}
	return int(min(max(n, float64(z.Min)), float64(z.Max)))
}

// Staff is the slots that carry an offered load of r slots (arrivals ×
// service) with a 99th-percentile queue wait within WaitTarget: r + β√r,
// square-root staffing, with β the least that meets the goal (Beta). The
// headroom grows with the square root of the load, so a big pool needs a
// smaller share of it than a small one: the fluctuation of Poisson
// arrivals is √r around r.
//
// E.g. 200 ms service, wait target 200 ms: 12 slots (60 req/s) → 15.3
// (β 0.95, 27%); 400 slots (2,000 req/s) → 405.5 (β 0.27, 1.4%). Wait
// target 0: r.
func (z Sizing) Staff(r float64, service time.Duration) float64 {
	if r <= 0 || z.WaitTarget <= 0 || service <= 0 {
		return max(r, 0)
	}
	return r + Beta(r, z.WaitTarget.Seconds()/service.Seconds(), 0.01)*math.Sqrt(r)
}

// ForRate is the containers an arrival rate (req/s) needs at a service
// time, staffed as Up staffs the steady demand, not bounded by Min or Max:
// what a forecast of the rate asks for ahead of time, so that the pool it
// starts is the one the reactive rule would keep. 0 with no service time
// (a rate then says nothing about concurrency).
//
// E.g. target 4, wait target 200 ms: 60 req/s at 200 ms is 12 slots, 15.2
// with headroom, 4 containers; with no wait target 3.
func (z Sizing) ForRate(rate float64, service time.Duration) int {
	if rate <= 0 || service <= 0 || math.IsNaN(rate) {
		return 0
	}
	n := math.Ceil(z.Staff(rate*service.Seconds(), service)/float64(max(z.Target, 1)) - 1e-9)
	return int(min(max(n, 0), math.MaxInt32))
}

// Beta is the square-root staffing factor for an offered load of r slots:
// the least β ≥ 0 with P(wait > t·S) ≤ p in the Halfin–Whitt approximation
// of a queue with c = r + β√r servers, where a request waits at all with
// probability α(β) = 1 / (1 + β·Φ(β)/φ(β)) and, if it waits, longer than
// t service times with probability exp(−β√r·t) (the queue drains at the
// spare rate β√r / S). Φ and φ are the standard normal's distribution and
// density. Found by bisection; at most 6.
//
// E.g. r 12, t 1, p 1%: β 0.95. r 400: 0.27. t 0 (no wait allowed): the β
// with α(β) = p, 2.5.
func Beta(r, t, p float64) float64 {
	if r <= 0 || p >= 1 {
		return 0
	}
	tail := func(b float64) float64 {
		phi := math.Exp(-b*b/2) / math.Sqrt(2*math.Pi)
		Phi := 0.5 * math.Erfc(-b/math.Sqrt2)
		alpha := 1 / (1 + b*Phi/phi)
		return alpha * math.Exp(-b*math.Sqrt(r)*max(t, 0))
	}
	lo, hi := 0.0, 6.0
	if tail(lo) <= p {
		return 0
	}
	if tail(hi) > p {
		return hi
	}
	for range 50 {
		mid := (lo + hi) / 2
		if tail(mid) <= p {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// Up is how many containers the demand needs now: the steady concurrency
// with its staffing headroom (Staff), plus what works off the backlog,
// over the target. p is the pool as it stands (ready and starting
// containers, and the measured cold start).
//
// The steady part is the panic window's mean, so a one-second blip of
// Poisson arrivals starts nothing; but while requests queue, the latest
// reading (the balancers' last second) counts at once if it is above the
// mean by more than its own noise, three standard deviations of a
// one-second Poisson count (3√λ requests, 3√λ·S slots), so a step up is
// met within a poll rather than over the panic window. A reading above
// the mean by less is a fluctuation the staffing headroom absorbs: a
// container started for it would be drained at the next scale-down and
// started again at the next such second. Measured in simulation at 100
// containers (an hour of steps, Poisson): 11 flaps an hour when any
// higher reading counted, 2 with the gate. E.g. 2,000 req/s at 200 ms, 30
// queued: a reading of 2,120 (+2.7σ) leaves the mean (400 slots); one of
// 2,200 (+4.5σ, a 10% step) counts (440).
//
// The backlog is the work that will be waiting when containers started now
// are ready: the panic window's mean queue (a queue that comes and goes
// within a second is no shortage; but while the steady load exceeds the
// pool with what is starting, the queue is growing and the latest count
// stands), plus what the steady load adds over the
// cold start beyond the ready containers' target, less what the starting
// ones work off once they are ready. That work is to be done within
// BACKLOG_DRAIN after the cold start (and never faster than a cold start
// or a service time: the horizon is the longest of the three), by the
// slots beyond the steady load, the staffing headroom among them. Sizing
// from the work at the moment new containers can help, not from the queue
// now, is what makes a step one move: the queue grows while they start,
// but they were sized for it, so the next polls ask for nothing more. A
// cold start longer than BACKLOG_DRAIN no longer reads the growing queue
// as a growing shortage.
//
// E.g. target 4, 200 ms, drain 2 s, cold start 1.3 s, wait target 200 ms.
// One container ready at 5 req/s, then 60 req/s: 12 slots, 15.2 with the
// headroom. The balancers' rate takes a second to reach 60, so the moves
// come over that second (2, 3, then 4 containers), and none after while
// they boot: the queue they face when ready is what they were sized for
// (TestComposeStep). A step from 200 to 2,000 req/s with a 10 s cold
// start: 180 starts in one move, where sizing from the queue now climbed
// to 432 containers over the cold start (TestStepWithLongColdStart).
//
// With no service time ever measured (scale from zero, or a leader that
// took over while no request finished), arrivals cannot be turned into
// concurrency: in flight and queued count one slot each, the standing rule
// (Knative's). The first requests served give the service time and the
// next poll sizes from it; the samples taken without one are read with it
// then (Windows), so what the guess started is surplus at the next
// scale-down rather than for a whole stable window. A service time once
// measured stands in for readings without one (the balancers restarted):
// 1,000 queued at 500 req/s and 400 ms ask 100 containers, where the
// standing rule asked 250.
//
// Connections count from the latest reading, not a window's mean: an open
// connection is a level, not a rate that fluctuates from second to second,
// and clients that connected wait on the pool now. So a step is met in one
// move: 0 → 450 connections at TargetConns 100 asks ceil(450/100) = 5
// containers at once, whatever the requests ask (if they ask more, theirs).
func (z Sizing) Up(w *Windows, cur Sample, p Pool) int {
	conns := z.connContainers(float64(cur.Conns))
	service := w.Service(cur)
	if service <= 0 {
		return max(z.containers(float64(max(cur.Inflight, 0)+max(cur.Queued, 0))), conns)
	}
	var extra *Sample
	if !w.recorded(cur) {
		extra = &cur // a reading not recorded (within Every of the last) still counts
	}
	steady := w.panicMean(cur.At, w.steady, extra)
	if now := w.steady(cur); cur.Queued > 0 && now-steady > 3*math.Sqrt(max(cur.Arrivals, 0))*service.Seconds() {
		steady = now
	}
	staffed := z.Staff(steady, service)
	s := service.Seconds()
	t := float64(max(z.Target, 1))
	cold := p.ColdStart.Seconds()
	q := w.panicMean(cur.At, queued, extra)
	if steady > float64(p.Ready+p.Starting)*t {
		// Short even with what is on its way: the queue is growing, and its
		// mean over the panic window lags it.
		q = max(q, queued(cur))
	}
	work := q*s +
		(steady-float64(p.Ready)*t)*cold -
		float64(p.Starting)*t*max(cold-p.StartingLeft.Seconds(), 0)
	horizon := max(z.BacklogDrain, p.ColdStart, service)
	backlog := max(Backlog(work, horizon)-(staffed-steady), 0)
	return max(z.containers(staffed+backlog), conns)
}

// DownTolerance is the share of one container's target a scale-down leaves
// free: the pool shrinks to k containers only if the need fits in k × target
// − DownTolerance × target. Without it, a need a hair under k × target
// (39 req/s at 202 ms on containers of 2: 7.9 of 8 slots) shrinks to k,
// where the slack is thinner than what the balancers' slot division idles
// (a balancer with little traffic holds a slot it seldom uses) and than the
// unevenness of arrivals: a queue forms, the next poll starts the container
// again, and the pool flaps at every scale-down period (measured: 13 flaps
// in 6 minutes of a compressed day, 0 with it). Scale-up keeps the full
// target, so between the two there is a band of a quarter container where
// the pool stays as it is, as the HPA has a tolerance band. It is absolute,
// not a share of the pool, so that a pool of 1,000 does not pay 25% for it.
const DownTolerance = 0.25

// Down is the fewest containers the stable window allows: its highest
// steady concurrency, and at least the current reading's (recorded or not)
// and what is in flight now, plus DownTolerance of a container, over the
// target.
//
// E.g. target 2: 40 req/s at 200 ms until 70 s ago, 4 req/s since, stable
// 60 s: (0.8 + 0.5) / 2 → 1 container. The same 20 s after the step:
// (8 + 0.5) / 2 → 5 (4 would run at 100%). 29 req/s: (5.8 + 0.5) / 2 → 4,
// where Up asks 3: the band.
//
// Connections keep their own share the same way: the stable window's
// highest count (and at least the current one) plus DownTolerance of
// TargetConns, over TargetConns. E.g. TargetConns 100: 450 connections
// keep 5 (4.75 of 5 containers' worth); 480 keep 6 (5.05), where Up asks
// 5: the same band of a quarter container as for requests.
func (z Sizing) Down(w *Windows, cur Sample) int {
	need := max(w.StableMax(cur.At), w.steady(cur))
	need = max(z.Staff(need, w.Service(cur)), float64(max(cur.Inflight, 0)))
	n := z.containers(need + DownTolerance*float64(max(z.Target, 1)))
	if z.TargetConns > 0 {
		conns := max(w.StableMaxConns(cur.At), cur.Conns)
		n = max(n, z.connContainers(float64(conns)+DownTolerance*float64(z.TargetConns)))
	}
	return n
}

// ShrinkInput is the snapshot a demand scale-down reads.
type ShrinkInput struct {
	// Ready are the ready containers (draining ones are leaving already).
	Ready []Candidate
	// Keep is the fewest containers to leave, ready and starting together:
	// Sizing.Down, never below what Sizing.Up asks at the same reading (or
	// the next poll would start again what this drains: a flap),
	// MIN_REPLICAS or 1 (only the idle rule empties a pool).
	Keep int
	// Rate is MAX_SCALE_DOWN_RATE: one decision leaves at least
	// floor(ready / Rate) ready, as Knative's max scale-down rate does. So
	// 1 leaves every one (the surplus rule never shrinks; idleness still
	// may), and 0 (or less) is no bound.
	Rate float64
	// Starting containers count toward Keep: they will be ready soon, and a
	// start does not mean the pool is short (a replacement, a deploy's
	// surge). When it does, Up asked for them and Keep covers them.
	Starting int
	// Queued requests mean the pool is short right now: no shrinking while
	// they wait.
	Queued int64
}

// Shrink picks the containers to drain so that the ready and starting
// count comes down toward Keep, at most by the rate bound per decision.
// Victims come in drain order (see byDrainCost): stale ones first (a
// deploy replaces them anyway, so a container of the current image is not
// drained only for a stale one to be drained next), then the fewest open
// long-lived connections (a drain cuts every one of them, and their
// clients all reconnect at once: one with none cuts nothing), then the
// least busy (fewest in flight, so the drain is short), newest first on
// ties (the newest were started for a burst that passed; the oldest are
// fully ramped up and hold clients' keep-alive connections).
//
// E.g. 6 ready, Keep 1, Rate 2: leave max(1, floor(6/2)) = 3, drain 3.
// Then 3 → max(1, 1) = 1, drain 2. So 6 → 3 → 1 in two decisions. Were
// 2 connections open on the newest idle container of the six, one with 1
// request in flight would go before it: a drain that waits for a request
// costs less than one that cuts two connections. 6 ready and 2 starting,
// Keep 5: drain 3 (the starting ones count), however many start.
func Shrink(in ShrinkInput) []string {
	if in.Queued > 0 {
		return nil
	}
	leave := max(in.Keep-max(in.Starting, 0), 1)
	if in.Rate > 0 {
		leave = max(leave, int(math.Floor(float64(len(in.Ready))/in.Rate)))
	}
	n := len(in.Ready) - leave
	if n <= 0 {
		return nil
	}
	c := slices.Clone(in.Ready)
	slices.SortFunc(c, byDrainCost)
	victims := make([]string, 0, n)
	for _, k := range c[:n] {
		victims = append(victims, k.ID)
	}
	return victims
}

// byDrainCost orders containers by what draining them costs, cheapest
// first: stale before current (a deploy drains those anyway), then fewest
// open connections (each one is cut and reconnects elsewhere), fewest in
// flight (the drain waits for them), newest (the least ramped up), and id
// for a stable choice.
func byDrainCost(a, b Candidate) int {
	if a.Stale != b.Stale {
		if a.Stale {
			return -1
		}
		return 1
	}
	if d := cmp.Compare(max(a.Conns, 0), max(b.Conns, 0)); d != 0 {
		return d
	}
	if d := cmp.Compare(a.Inflight, b.Inflight); d != 0 {
		return d
	}
	if d := b.ReadySince.Compare(a.ReadySince); d != 0 {
		return d
	}
	return cmp.Compare(a.ID, b.ID)
}

// Flap reports whether a scale-up at now undoes a scale-down at lastDown:
// one that came within the stable window, which the scale-down should have
// foreseen. Zero lastDown: no scale-down yet, no flap.
func Flap(lastDown, now time.Time, window time.Duration) bool {
	return !lastDown.IsZero() && now.Sub(lastDown) < window
}

// Rule names a scale-down rule (SCALE_DOWN).
type Rule string

// Scale-down rules.
const (
	// RuleDemand shrinks to what the stable window needed; idleness
	// still applies (and alone empties a pool).
	RuleDemand Rule = "demand"
	// RuleIdle stops only containers idle past the idle timeout.
	RuleIdle Rule = "idle"
)

// Autoscaler is the leader's scaling policy across polls: the demand
// windows and the settings that turn them into decisions. The controller
// and the simulator (scaler/sim) drive the same one, so what the simulator
// measures is what the scaler does. Not safe for concurrent use.
type Autoscaler struct {
	Sizing Sizing
	// Rule is the scale-down rule.
	Rule Rule
	// Rate is MAX_SCALE_DOWN_RATE; IdleTimeout is IDLE_TIMEOUT.
	Rate        float64
	IdleTimeout time.Duration
	// Cooldown is SCALE_UP_COOLDOWN.
	Cooldown time.Duration
	// Win holds the samples; set its Stable, Panic and Every.
	Win Windows
}

// Pool is the leader's count of its containers by phase, and what it
// measured of their starts.
type Pool struct {
	Ready, Starting, Draining, Stopping int
	// ColdStart is the time a start takes to a ready container, as
	// measured on the pool's recent starts (0: none measured yet).
	ColdStart time.Duration
	// StartingLeft is how long the starting containers still need, on
	// average, by ColdStart and their age (0 with none starting).
	StartingLeft time.Duration
}

// Poll records cur and decides a scale-up: the result of Up for the demand
// Sizing.Up reads. lastUp and notBefore are the last demand start and the
// failure back-off (see UpInput).
func (a *Autoscaler) Poll(cur Sample, p Pool, lastUp, notBefore time.Time) UpResult {
	a.Win.Add(cur)
	res := Up(UpInput{
		Desired: a.Sizing.Up(&a.Win, cur, p),
		Ready:   p.Ready, Starting: p.Starting, Draining: p.Draining, Stopping: p.Stopping,
		Min: a.Sizing.Min, Max: a.Sizing.Max,
		LastUp: lastUp, Cooldown: a.Cooldown, NotBefore: notBefore,
	}, cur.At)
	res.Panic = res.Reason == ReasonDemand && (res.Start > 0 || res.Reclaim > 0) && cur.Queued > 0 &&
		a.Win.steady(cur) > float64((p.Ready+p.Starting)*max(a.Sizing.Target, 1))
	return res
}

// ScaleDown records cur and picks the containers to drain: surplus ones
// (RuleDemand, once the window is full) and then idle ones among the rest,
// never leaving fewer than the current demand needs.
func (a *Autoscaler) ScaleDown(cur Sample, ready []Candidate, p Pool) (surplus, idle []string) {
	a.Win.Add(cur)
	up := a.Sizing.Up(&a.Win, cur, p)
	if a.Rule == RuleDemand && a.Win.Full(cur.At) && !a.Win.Rising(cur.At) {
		surplus = Shrink(ShrinkInput{
			Ready: ready, Keep: max(a.Sizing.Down(&a.Win, cur), up, a.Sizing.Min),
			Rate: a.Rate, Starting: p.Starting, Queued: cur.Queued,
		})
		if len(surplus) > 0 {
			ready = slices.DeleteFunc(slices.Clone(ready), func(k Candidate) bool { return slices.Contains(surplus, k.ID) })
		}
	}
	idle = Idle(IdleInput{Ready: ready, Keep: up, IdleTimeout: a.IdleTimeout, Queued: cur.Queued}, cur.At)
	return surplus, idle
}
