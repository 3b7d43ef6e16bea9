package decide

import (
	"math"
	"time"
)

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
	return int(min(max(z.ceil(conc), float64(z.Min)), float64(z.Max)))
}

// ceil is ceil(conc / target), at least 0, unbounded otherwise.
func (z Sizing) ceil(conc float64) float64 {
	n := math.Ceil(conc/float64(max(z.Target, 1)) - 1e-9)
	if math.IsNaN(n) || n < 0 {
		return 0
	}
	return n
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
	return int(min(z.ceil(z.Staff(rate*service.Seconds(), service)), math.MaxInt32))
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
