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
