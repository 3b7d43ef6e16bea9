package decide

import (
	"slices"
	"testing"
	"time"
)

// steadyFor feeds w a sample every 250 ms for d up to end: rate req/s at
// service, queued as given, and returns the last sample.
func steadyFor(w *Windows, end time.Time, d time.Duration, rate float64, service time.Duration, inflight, queued int64) Sample {
	var s Sample
	for x := d; x > 0; x -= 250 * ms {
		s = Sample{At: end.Add(-x + 250*ms), Arrivals: rate, Service: service, Inflight: inflight, Queued: queued}
		w.Add(s)
	}
	return s
}

// TestUnknownServiceTime: readings without a service time (the balancers
// restarted, or no request finished in their last second) are read with
// the last one measured; and once one is measured, the samples taken
// without it stop holding a surplus.
func TestUnknownServiceTime(t *testing.T) {
	z := Sizing{Target: 4, Min: 1, Max: 1000, BacklogDrain: 2 * time.Second}
	// 500 req/s at 400 ms: 200 in flight, 50 containers, for a minute.
	w := &Windows{Stable: time.Minute, Panic: 6 * time.Second, Every: 125 * ms}
	steadyFor(w, t0, time.Minute, 500, 400*ms, 200, 0)
	// The balancers restart with 1,000 queued: 6 s of readings without a
	// service time. The old rule read 1,000 queued as 1,000 slots: 250
	// containers. Read with 400 ms: 200 steady + 1,000 × 0.4 s / 2 s = 200
	// for the backlog: 100.
	cur := steadyFor(w, t0.Add(6*time.Second), 6*time.Second, 500, 0, 0, 1000)
	if up := z.Up(w, cur, Pool{Ready: 50}); up != 100 {
		t.Errorf("service time remembered: Up = %d, want 100", up)
	}

	// Never measured: a leader that took over while nothing finished
	// reads in flight and queued as concurrency, the standing rule.
	fresh := &Windows{Stable: time.Minute, Panic: 6 * time.Second, Every: 125 * ms}
	cur = steadyFor(fresh, t0, 6*time.Second, 500, 0, 40, 1000)
	if up := z.Up(fresh, cur, Pool{Ready: 10}); up != 260 {
		t.Errorf("never measured: Up = %d, want 260 ((40 + 1,000) / 4)", up)
	}
	// The in-flight counts of those readings (a pool working off the
	// queue runs full) are no standing demand once a service time is
	// known: the minute is read again at 500 req/s × 400 ms = 200.
	steadyFor(fresh, t0.Add(time.Minute), time.Minute, 500, 0, 1000, 0)
	steadyFor(fresh, t0.Add(time.Minute+250*ms), 250*ms, 500, 400*ms, 200, 0)
	if m := fresh.StableMax(t0.Add(time.Minute + 250*ms)); !near(m, 200) {
		t.Errorf("after the first service time: StableMax = %.1f, want 200 (not the 1,000 in flight)", m)
	}
}

// TestStepWithLongColdStart: with a cold start longer than BACKLOG_DRAIN,
// the queue keeps growing while the containers started for a step boot.
// They were sized for it, so the polls until they are ready ask for
// nothing more: a step from 200 to 2,000 req/s is one move, where the old
// rule climbed from 112 to 432 containers (need: 100).
func TestStepWithLongColdStart(t *testing.T) {
	const cold = 10 * time.Second
	a := &Autoscaler{
		Sizing: Sizing{Target: 4, Min: 1, Max: 2000, BacklogDrain: 2 * time.Second},
		Rule:   RuleDemand, Rate: 2, Cooldown: time.Second,
		Win: Windows{Stable: time.Minute, Panic: 6 * time.Second, Every: 125 * ms},
	}
	// 200 req/s at 200 ms on 10 containers for a minute.
	steadyFor(&a.Win, t0, time.Minute, 200, 200*ms, 40, 0)
	ready, boot := 10, []time.Time{}
	var q float64
	var moves []int
	var lastUp time.Time
	for now := t0.Add(250 * ms); now.Before(t0.Add(cold)); now = now.Add(250 * ms) {
		q += (2000 - float64(ready*4)/0.2) * 0.25
		var left time.Duration
		for _, b := range boot {
			left += b.Sub(now)
		}
		p := Pool{Ready: ready, Starting: len(boot), ColdStart: cold}
		if len(boot) > 0 {
			p.StartingLeft = left / time.Duration(len(boot))
		}
		res := a.Poll(Sample{At: now, Arrivals: 2000, Service: 200 * ms, Inflight: int64(ready * 4), Queued: int64(q)}, p, lastUp, time.Time{})
		if res.Start > 0 {
			moves = append(moves, res.Start)
			lastUp = now
			for range res.Start {
				boot = append(boot, now.Add(cold))
			}
		}
	}
	// Work when they are ready: the queue of the first poll plus 10 s of
	// the 1,800 req/s the 10 containers cannot serve, 3,600 slot-s, over
	// 10 s (the horizon is at least the cold start): 360 slots on top of
	// 400. ceil(760 / 4) = 190 containers: 180 starts, in one move.
	if len(moves) != 1 || moves[0] > 185 || moves[0] < 170 {
		t.Fatalf("starts %v during the cold start, want one move of about 180", moves)
	}
}

// TestGapInSamples: a leader that could not read the load for longer than
// the stable window (Redis unreachable while its lease held) does not
// shrink on the first reading after: the window must fill again.
func TestGapInSamples(t *testing.T) {
	a := &Autoscaler{
		Sizing: Sizing{Target: 4, Min: 1, Max: 20, BacklogDrain: 2 * time.Second},
		Rule:   RuleDemand, Rate: 2,
		Win: Windows{Stable: time.Minute, Panic: 6 * time.Second, Every: 125 * ms},
	}
	// 10 containers' worth (200 req/s at 200 ms) for a minute.
	steadyFor(&a.Win, t0, time.Minute, 200, 200*ms, 40, 0)
	var ready []Candidate
	for i := range 10 {
		ready = append(ready, Candidate{ID: string(rune('a' + i)), ReadySince: ago(time.Hour), LastSeen: t0})
	}
	// 90 s without a reading, then 20 req/s.
	at := t0.Add(90 * time.Second)
	cur := Sample{At: at, Arrivals: 20, Service: 200 * ms, Inflight: 4}
	if surplus, _ := a.ScaleDown(cur, ready, Pool{Ready: 10}); len(surplus) > 0 {
		t.Fatalf("drained %v on the first reading after a 90 s gap", surplus)
	}
	// A whole window of readings later it does, by the rate bound: 10 → 5.
	cur = steadyFor(&a.Win, at.Add(time.Minute), time.Minute, 20, 200*ms, 4, 0)
	if surplus, _ := a.ScaleDown(cur, ready, Pool{Ready: 10}); len(surplus) != 5 {
		t.Fatalf("after a full window: drained %v, want 5", surplus)
	}
	// A short gap (a reading failed for a second) keeps the record.
	b := &Windows{Stable: time.Minute, Panic: 6 * time.Second, Every: 125 * ms}
	steadyFor(b, t0, time.Minute, 200, 200*ms, 40, 0)
	b.Add(Sample{At: t0.Add(2 * time.Second), Arrivals: 200, Service: 200 * ms})
	if !b.Full(t0.Add(2 * time.Second)) {
		t.Error("a 2 s gap within the panic window broke the record")
	}
}

// TestStartsDoNotBlockShrinking: at 1,000 containers something is nearly
// always starting (a replacement, a deploy's surge); that alone must not
// hold a surplus for ever.
func TestStartsDoNotBlockShrinking(t *testing.T) {
	a := &Autoscaler{
		Sizing: Sizing{Target: 4, Min: 1, Max: 2000, BacklogDrain: 2 * time.Second},
		Rule:   RuleDemand, Rate: 2,
		Win: Windows{Stable: time.Minute, Panic: 6 * time.Second, Every: 125 * ms},
	}
	// 2,000 req/s at 200 ms (100 containers) for a minute, on 1,000 ready
	// and 2 starting.
	cur := steadyFor(&a.Win, t0, 61*time.Second, 2000, 200*ms, 400, 0)
	var ready []Candidate
	for i := range 1000 {
		ready = append(ready, Candidate{ID: string(rune(0x4e00 + i)), ReadySince: ago(time.Hour), LastSeen: t0})
	}
	surplus, _ := a.ScaleDown(cur, ready, Pool{Ready: 1000, Starting: 2})
	if len(surplus) != 500 {
		t.Fatalf("1,000 ready, 2 starting, need 100: drained %d, want 500 (the rate bound)", len(surplus))
	}
}

// TestWeightedMeans: readings taken on demand signals while requests queue
// come twice as often as the polls; each sample weighs the time it stands
// for, so the busy half of the window does not count twice.
func TestWeightedMeans(t *testing.T) {
	w := &Windows{Stable: time.Minute, Panic: 6 * time.Second, Every: 125 * ms}
	// 3 s at 20 req/s (4 slots) polled every 250 ms, then 3 s at 40 req/s
	// (8 slots, queueing) read every 125 ms.
	for x := 250 * ms; x <= 3*time.Second; x += 250 * ms {
		w.Add(Sample{At: t0.Add(x), Arrivals: 20, Service: 200 * ms})
	}
	for x := 3*time.Second + 125*ms; x <= 6*time.Second; x += 125 * ms {
		w.Add(Sample{At: t0.Add(x), Arrivals: 40, Service: 200 * ms, Queued: 5})
	}
	// Unweighted: (12 × 4 + 24 × 8) / 36 = 6.67. By time: 6.
	if m := w.PanicMean(t0.Add(6 * time.Second)); !near(m, 6) {
		t.Errorf("PanicMean = %.3f, want 6 (half the time at each)", m)
	}
	if q := w.PanicQueued(t0.Add(6 * time.Second)); !near(q, 2.5) {
		t.Errorf("PanicQueued = %.3f, want 2.5", q)
	}
}

// TestStaffing: square-root staffing's headroom, from the wait target.
func TestStaffing(t *testing.T) {
	for _, tt := range []struct {
		name          string
		r             float64
		wait, service time.Duration
		want          float64 // slots, ±0.05
	}{
		{"12 slots, wait target = service time: 27% headroom", 12, 200 * ms, 200 * ms, 15.23},
		{"400 slots: 1%", 400, 200 * ms, 200 * ms, 404.32},
		{"4,000 slots: 0.1%", 4000, 200 * ms, 200 * ms, 4004.51},
		{"400 slots, a wait target of half a service time: 2%", 400, 100 * ms, 200 * ms, 408.12},
		{"no wait target: no headroom", 12, 0, 200 * ms, 12},
		{"no load", 0, 200 * ms, 200 * ms, 0},
	} {
		z := Sizing{WaitTarget: tt.wait}
		if got := z.Staff(tt.r, tt.service); got < tt.want-0.05 || got > tt.want+0.05 {
			t.Errorf("%s: Staff = %.2f, want %.2f", tt.name, got, tt.want)
		}
	}
	if b := Beta(12, 0, 0.01); b < 2.3 || b > 2.45 {
		t.Errorf("no wait allowed: β = %.3f, want about 2.375 (α(β) = 1%%)", b)
	}
}

// TestComposeStep is the step a new user tries first: 5 req/s, then 60
// req/s at 200 ms on containers of 4 (ideal 3), cold start 1.3 s, wait
// target 200 ms. The balancers' arrival rate takes a second to reach the
// new rate, so the moves come over that second; the pool reaches 4 and
// no more, and the queue is gone within 5 s.
func TestComposeStep(t *testing.T) {
	const cold = 1300 * ms
	a := &Autoscaler{
		Sizing: Sizing{Target: 4, Min: 1, Max: 10, BacklogDrain: 2 * time.Second, WaitTarget: 200 * ms},
		Rule:   RuleDemand, Rate: 2, Cooldown: 0,
		Win: Windows{Stable: time.Minute, Panic: 6 * time.Second, Every: 125 * ms},
	}
	steadyFor(&a.Win, t0, time.Minute, 5, 200*ms, 1, 0)
	ready, boot := 1, []time.Time{}
	var q float64
	peak, drained := 1, time.Duration(0)
	for x := 250 * ms; x <= 10*time.Second; x += 250 * ms {
		now := t0.Add(x)
		boot = slices.DeleteFunc(boot, func(b time.Time) bool {
			if !b.After(now) {
				ready++
				return true
			}
			return false
		})
		q = max(q+(60-float64(ready*4)/0.2)*0.25, 0)
		if q == 0 && drained == 0 && x > time.Second {
			drained = x
		}
		seen := min(60, 60*x.Seconds()) // the balancers' one-second rate
		p := Pool{Ready: ready, Starting: len(boot), ColdStart: cold}
		for _, b := range boot {
			p.StartingLeft += b.Sub(now) / time.Duration(len(boot))
		}
		res := a.Poll(Sample{At: now, Arrivals: seen, Service: 200 * ms, Inflight: int64(min(ready*4, 12)), Queued: int64(q)}, p, time.Time{}, time.Time{})
		for range res.Start {
			boot = append(boot, now.Add(cold))
		}
		peak = max(peak, ready+len(boot))
	}
	if peak != 4 || drained == 0 || drained > 6*time.Second {
		t.Fatalf("peak %d containers (want 4), queue gone at %v (want within 6 s)", peak, drained)
	}
}

func TestForRate(t *testing.T) {
	for _, tt := range []struct {
		name    string
		z       Sizing
		rate    float64
		service time.Duration
		want    int
	}{
		{"60 req/s at 200 ms, staffed: 15.2 slots", Sizing{Target: 4, WaitTarget: 200 * ms}, 60, 200 * ms, 4},
		{"no wait target: 12 slots", Sizing{Target: 4}, 60, 200 * ms, 3},
		{"no service time: nothing known", Sizing{Target: 4}, 60, 0, 0},
		{"no rate", Sizing{Target: 4, WaitTarget: 200 * ms}, 0, 200 * ms, 0},
		{"not bounded by Max", Sizing{Target: 4, Max: 2}, 2000, 200 * ms, 100},
	} {
		if got := tt.z.ForRate(tt.rate, tt.service); got != tt.want {
			t.Errorf("%s: ForRate = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestNoiseIsNoStep: while requests queue, a reading above the panic
// window's mean counts at once only beyond three standard deviations of a
// one-second Poisson count: a step, not a fluctuation.
func TestNoiseIsNoStep(t *testing.T) {
	z := Sizing{Target: 4, Min: 1, Max: 1000, BacklogDrain: 2 * time.Second}
	for _, tt := range []struct {
		name    string
		reading float64
		want    int
	}{
		// The mean holds the reading's quarter second (401 slots: 101);
		// the queued request adds a hair of backlog to the reading (111).
		{"2,120 req/s (+2.7σ): the mean", 2120, 101},
		{"2,200 req/s (+4.5σ, a 10% step): the reading", 2200, 111},
	} {
		w := &Windows{Stable: time.Minute, Panic: 6 * time.Second, Every: 125 * ms}
		steadyFor(w, t0, 30*time.Second, 2000, 200*ms, 400, 0)
		cur := Sample{At: t0.Add(250 * ms), Arrivals: tt.reading, Service: 200 * ms, Inflight: 400, Queued: 1}
		w.Add(cur)
		if got := z.Up(w, cur, Pool{Ready: 100}); got != tt.want {
			t.Errorf("%s: Up = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestNoShrinkWhileRising: a rise through the whole stable window keeps
// setting new maxima, so a surplus seen during one is kept until it stops;
// after a step the surplus goes as usual.
func TestNoShrinkWhileRising(t *testing.T) {
	for _, tt := range []struct {
		name      string
		rate      func(x time.Duration) float64 // x ≤ 0: seconds before now
		wantDrain bool
	}{
		{"flat at 10,000 req/s: the surplus goes", func(time.Duration) float64 { return 10000 }, true},
		{"rising 10 req/s every second for the window: kept", func(x time.Duration) float64 { return 10600 + 10*x.Seconds() }, false},
		{"a step 20 s ago, flat since: goes", func(x time.Duration) float64 {
			if x > -20*time.Second {
				return 10400
			}
			return 10000
		}, true},
	} {
		a := &Autoscaler{
			Sizing: Sizing{Target: 4, Min: 1, Max: 2000, BacklogDrain: 2 * time.Second},
			Rule:   RuleDemand, Rate: 2,
			Win: Windows{Stable: time.Minute, Panic: 6 * time.Second, Every: 125 * ms},
		}
		var cur Sample
		for x := -70 * time.Second; x <= 0; x += 250 * ms {
			rate := tt.rate(x)
			cur = Sample{At: t0.Add(x), Arrivals: rate, Service: 200 * ms, Inflight: int64(rate * 0.2)}
			a.Win.Add(cur)
		}
		var ready []Candidate
		for i := range 900 {
			ready = append(ready, Candidate{ID: string(rune(0x4e00 + i)), ReadySince: ago(time.Hour), LastSeen: t0})
		}
		surplus, _ := a.ScaleDown(cur, ready, Pool{Ready: 900})
		if got := len(surplus) > 0; got != tt.wantDrain {
			t.Errorf("%s: drained %d, want a drain %v (rising %v)", tt.name, len(surplus), tt.wantDrain, a.Win.Rising(cur.At))
		}
	}
}
