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

// Backlog is the concurrency that serves a queue of queued requests within
// drain, on top of the steady load. Each queued request holds a slot for
// service, so q requests over drain keep q × service / drain slots busy;
// never more than q, since a request needs one slot however short drain is.
// Unknown service time: one slot per queued request (the old, standing
// rule, which scale from zero needs: there is nothing to measure yet).
//
// E.g. 20 queued, 200 ms, drain 2 s: 2 slots, one container of target 2;
// 20 queued at 5 s each: 20 slots (5 s > 2 s, every request needs its own).
func Backlog(queued float64, service, drain time.Duration) float64 {
	q := max(queued, 0)
	if service <= 0 || drain <= 0 || service >= drain {
		return q
	}
	return q * service.Seconds() / drain.Seconds()
}

// Windows keeps the leader's recent samples, for the panic and stable
// windows. It is pure bookkeeping: the time comes with each sample.
type Windows struct {
	// Stable and Panic are STABLE_WINDOW and PANIC_WINDOW.
	Stable, Panic time.Duration
	// Every is the least spacing of recorded samples: readings taken more
	// often (on demand signals, which come with every balancer sync while
	// requests queue) would weigh busy moments more than quiet ones in
	// the means.
	Every   time.Duration
	samples []Sample // oldest first, none older than the longer window
	first   time.Time
}

// Add records s unless it comes within Every of the previous one; samples
// must come in time order.
func (w *Windows) Add(s Sample) {
	if w.first.IsZero() {
		w.first = s.At
	}
	if n := len(w.samples); n > 0 && s.At.Sub(w.samples[n-1].At) < w.Every {
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

// Reset forgets every sample: a new leader has no history of its own.
func (w *Windows) Reset() { w.samples, w.first = w.samples[:0], time.Time{} }

// Full reports whether the samples cover a whole stable window up to now;
// until they do, a scale-down would act on a part of the window (a leader
// that just took over, say, knows nothing of the minute before).
func (w *Windows) Full(now time.Time) bool {
	return !w.first.IsZero() && now.Sub(w.first) >= w.Stable
}

// PanicMean is the mean steady concurrency over the panic window up to now
// (0 with no sample in it).
func (w *Windows) PanicMean(now time.Time) float64 {
	return w.panicMean(now, Sample.Steady)
}

// PanicQueued is the mean queue length over the panic window up to now.
func (w *Windows) PanicQueued(now time.Time) float64 {
	return w.panicMean(now, func(s Sample) float64 { return float64(max(s.Queued, 0)) })
}

func (w *Windows) panicMean(now time.Time, f func(Sample) float64) float64 {
	var sum float64
	n := 0
	for _, s := range w.samples {
		if now.Sub(s.At) < w.Panic && !s.At.After(now) {
			sum += f(s)
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// recorded reports whether s is the latest sample recorded.
func (w *Windows) recorded(s Sample) bool {
	return len(w.samples) > 0 && w.samples[len(w.samples)-1] == s
}

// panicSamples counts the samples in the panic window up to now.
func (w *Windows) panicSamples(now time.Time) int {
	n := 0
	for _, s := range w.samples {
		if now.Sub(s.At) < w.Panic && !s.At.After(now) {
			n++
		}
	}
	return n
}

// StableMax is the highest steady concurrency over the stable window up to
// now (0 with no sample in it).
//
// Why the maximum rather than a mean with headroom: a mean lets the pool
// shrink inside a minute that held a burst, so the next burst of the same
// shape starts containers again (a flap, and its cold starts sit in the
// latency); the maximum shrinks only to what every moment of the last
// window needed, so a pool shrunk by it fits every second of the window.
// The cost is the window itself: after a step down the surplus runs for
// STABLE_WINDOW more (the price Knative and the HPA's 300 s stabilisation
// pay too), and under Poisson arrivals the maximum sits a little above the
// mean (about two standard deviations of a one-second count).
func (w *Windows) StableMax(now time.Time) float64 {
	var m float64
	for _, s := range w.samples {
		if now.Sub(s.At) < w.Stable && !s.At.After(now) {
			m = max(m, s.Steady())
		}
	}
	return m
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
	// BacklogDrain is the time a queue should take to drain (BACKLOG_DRAIN).
	BacklogDrain time.Duration
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

// Up is how many containers the demand needs now: the steady concurrency
// plus what drains the backlog within BacklogDrain, over the target.
//
// The steady part is the panic window's mean, so a one-second blip of
// Poisson arrivals on a pool that keeps up starts nothing; but while
// requests queue the pool is short for certain, and the latest reading
// (the balancers' last second) counts at once if it is higher, so a step up
// is met within a poll rather than over the panic window.
//
// The backlog is the panic window's mean queue, not the latest: a queue
// that comes and goes within a second (several balancers sharing a
// backend's slots by demand leave a few idle at times, so a pool near its
// target queues now and then) is not a shortage worth a container, and
// the first second of a step, which the new containers will have drained
// by the time they are ready, is not sized as if it lasted. A queue that
// lasts fills the mean within the window.
//
// E.g. target 2, 200 ms, drain 2 s. Steady 30 req/s, pool just started on 1
// container and a mean of 20 queued: 30×0.2 = 6 in flight + 20×0.2/2 = 2 for
// the backlog, ceil(8/2) = 4, not the ceil((2+20)/2) = 11 the queue would
// read as standing concurrency. Once the queue is gone: ceil(6/2) = 3.
//
// Connections count from the latest reading, not a window's mean: an open
// connection is a level, not a rate that fluctuates from second to second,
// and clients that connected wait on the pool now. So a step is met in one
// move: 0 → 450 connections at TargetConns 100 asks ceil(450/100) = 5
// containers at once, whatever the requests ask (if they ask more, theirs).
func (z Sizing) Up(w *Windows, cur Sample) int {
	steady := w.PanicMean(cur.At)
	queued := w.PanicQueued(cur.At)
	if n := w.panicSamples(cur.At); !w.recorded(cur) {
		// A reading not recorded (within Every of the last) still counts.
		queued = (queued*float64(n) + float64(max(cur.Queued, 0))) / float64(n+1)
	}
	if cur.Queued > 0 {
		steady = max(steady, cur.Steady())
	}
	return max(z.containers(steady+Backlog(queued, cur.Service, z.BacklogDrain)), z.connContainers(float64(cur.Conns)))
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
	need := max(w.StableMax(cur.At), cur.Steady(), float64(max(cur.Inflight, 0)))
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
	// Keep is the fewest ready containers to leave: Sizing.Down, never
	// below what Sizing.Up asks at the same reading (or the next poll would
	// start again what this drains: a flap), MIN_REPLICAS or 1 (only the
	// idle rule empties a pool).
	Keep int
	// Rate is MAX_SCALE_DOWN_RATE: one decision leaves at least
	// floor(ready / Rate), as Knative's max scale-down rate does.
	Rate float64
	// Starting containers or queued requests mean the pool is growing or
	// short right now: no shrinking while either lasts.
	Starting int
	Queued   int64
}

// Shrink picks the containers to drain so that the ready count comes down
// toward Keep, at most by the rate bound per decision. Victims come in
// drain order (see byDrainCost): stale ones first (a deploy replaces them
// anyway, so a container of the current image is not drained only for a
// stale one to be drained next), then the fewest open long-lived
// connections (a drain cuts every one of them, and their clients all
// reconnect at once: one with none cuts nothing), then the least busy
// (fewest in flight, so the drain is short), newest first on ties (the
// newest were started for a burst that passed; the oldest are fully ramped
// up and hold clients' keep-alive connections).
//
// E.g. 6 ready, Keep 1, Rate 2: leave max(1, floor(6/2)) = 3, drain 3.
// Then 3 → max(1, 1) = 1, drain 2. So 6 → 3 → 1 in two decisions. Were
// 2 connections open on the newest idle container of the six, one with 1
// request in flight would go before it: a drain that waits for a request
// costs less than one that cuts two connections.
func Shrink(in ShrinkInput) []string {
	leave := in.Keep
	if in.Rate > 1 {
		leave = max(leave, int(math.Floor(float64(len(in.Ready))/in.Rate)))
	}
	leave = max(leave, 1)
	n := len(in.Ready) - leave
	if n <= 0 || in.Starting > 0 || in.Queued > 0 {
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

// Pool is the leader's count of its containers by phase.
type Pool struct {
	Ready, Starting, Draining, Stopping int
}

// Poll records cur and decides a scale-up: the result of Up for the demand
// Sizing.Up reads. lastUp and notBefore are the last demand start and the
// failure back-off (see UpInput).
func (a *Autoscaler) Poll(cur Sample, p Pool, lastUp, notBefore time.Time) UpResult {
	a.Win.Add(cur)
	return Up(UpInput{
		Desired: a.Sizing.Up(&a.Win, cur),
		Ready:   p.Ready, Starting: p.Starting, Draining: p.Draining, Stopping: p.Stopping,
		Min: a.Sizing.Min, Max: a.Sizing.Max,
		LastUp: lastUp, Cooldown: a.Cooldown, NotBefore: notBefore,
	}, cur.At)
}

// ScaleDown records cur and picks the containers to drain: surplus ones
// (RuleDemand, once the window is full) and then idle ones among the rest,
// never leaving fewer than the current demand needs.
func (a *Autoscaler) ScaleDown(cur Sample, ready []Candidate, starting int) (surplus, idle []string) {
	a.Win.Add(cur)
	if a.Rule == RuleDemand && a.Win.Full(cur.At) {
		surplus = Shrink(ShrinkInput{
			Ready: ready, Keep: max(a.Sizing.Down(&a.Win, cur), a.Sizing.Up(&a.Win, cur), a.Sizing.Min),
			Rate: a.Rate, Starting: starting, Queued: cur.Queued,
		})
		if len(surplus) > 0 {
			ready = slices.DeleteFunc(slices.Clone(ready), func(k Candidate) bool { return slices.Contains(surplus, k.ID) })
		}
	}
	idle = Idle(IdleInput{Ready: ready, Keep: a.Sizing.Up(&a.Win, cur), IdleTimeout: a.IdleTimeout, Queued: cur.Queued}, cur.At)
	return surplus, idle
}
