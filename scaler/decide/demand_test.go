package decide

import (
	"slices"
	"testing"
	"time"
)

const ms = time.Millisecond

func TestSteadyAndBacklog(t *testing.T) {
	for _, tt := range []struct {
		name string
		s    Sample
		want float64
	}{
		{"Little's law: 30/s at 200ms", Sample{Arrivals: 30, Service: 200 * ms, Inflight: 2, Queued: 20}, 6},
		{"not capped by the pool: 40/s at 200ms on one container", Sample{Arrivals: 40, Service: 200 * ms, Inflight: 2}, 8},
		{"no service time yet: in flight", Sample{Arrivals: 5, Inflight: 3, Queued: 7}, 3},
		{"nothing", Sample{}, 0},
	} {
		if got := tt.s.Steady(); got < tt.want-1e-9 || got > tt.want+1e-9 {
			t.Errorf("%s: Steady = %v, want %v", tt.name, got, tt.want)
		}
	}
	for _, tt := range []struct {
		name    string
		work    float64
		horizon time.Duration
		want    float64
	}{
		{"20 queued at 200ms over 2s: 2 slots", 4, 2 * time.Second, 2},
		{"no work", 0, 2 * time.Second, 0},
		{"negative work (spare capacity) is none", -4, 2 * time.Second, 0},
		{"no horizon", 4, 0, 0},
	} {
		if got := Backlog(tt.work, tt.horizon); !near(got, tt.want) {
			t.Errorf("%s: Backlog = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// trace feeds w one sample per 250 ms: rate(t) req/s at service, from
// start for d.
func trace(w *Windows, start time.Time, d time.Duration, service time.Duration, rate func(time.Duration) float64) time.Time {
	var at time.Time
	for x := time.Duration(0); x < d; x += 250 * ms {
		at = start.Add(x)
		w.Add(Sample{At: at, Arrivals: rate(x), Service: service})
	}
	return at
}

func TestWindows(t *testing.T) {
	w := &Windows{Stable: 60 * time.Second, Panic: 6 * time.Second, Every: 100 * ms}
	if w.Full(t0) || w.PanicMean(t0) != 0 || w.StableMax(t0) != 0 {
		t.Fatal("an empty window is neither full nor loaded")
	}
	// 40/s for 10 s, then 4/s for 70 s, at 200 ms: steady 8 then 0.8.
	end := trace(w, t0, 80*time.Second, 200*ms, func(x time.Duration) float64 {
		if x < 10*time.Second {
			return 40
		}
		return 4
	})
	for _, tt := range []struct {
		at               time.Duration
		full             bool
		panicMean, stMax float64
	}{
		{5 * time.Second, false, 8, 8},
		{30 * time.Second, false, 0.8, 8},
		{60 * time.Second, true, 0.8, 8},
		{69500 * ms, true, 0.8, 8},   // the last 40/s sample (9.75 s) is still inside
		{69750 * ms, true, 0.8, 0.8}, // and now (60 s later) it is out
	} {
		now := t0.Add(tt.at)
		// Reading at an earlier time sees only what the window held then,
		// so replay up to it.
		ww := &Windows{Stable: w.Stable, Panic: w.Panic, Every: w.Every}
		trace(ww, t0, tt.at+ms, 200*ms, func(x time.Duration) float64 {
			if x < 10*time.Second {
				return 40
			}
			return 4
		})
		if ww.Full(now) != tt.full || !near(ww.PanicMean(now), tt.panicMean) || !near(ww.StableMax(now), tt.stMax) {
			t.Errorf("at %v: full %v panic %.3f max %.3f; want %v %.3f %.3f", tt.at, ww.Full(now), ww.PanicMean(now), ww.StableMax(now), tt.full, tt.panicMean, tt.stMax)
		}
	}
	if n := len(w.samples); n > 60*4+2 {
		t.Errorf("window keeps %d samples; older than the stable window should go", n)
	}
	_ = end
	// Samples closer than Every are not recorded.
	v := &Windows{Stable: time.Minute, Panic: 6 * time.Second, Every: 100 * ms}
	v.Add(Sample{At: t0, Inflight: 1})
	v.Add(Sample{At: t0.Add(10 * ms), Inflight: 100})
	if len(v.samples) != 1 || v.StableMax(t0.Add(20*ms)) != 1 {
		t.Errorf("a burst of readings within Every should not all count: %+v", v.samples)
	}
	v.Reset()
	if v.Full(t0.Add(2*time.Minute)) || len(v.samples) != 0 {
		t.Error("Reset should forget the history")
	}
}

func near(a, b float64) bool { return a-b < 1e-6 && b-a < 1e-6 }

func TestSizing(t *testing.T) {
	z := Sizing{Target: 2, Min: 1, Max: 6, BacklogDrain: 2 * time.Second}
	steadyAt := func(rate float64, d time.Duration) *Windows {
		w := &Windows{Stable: 60 * time.Second, Panic: 6 * time.Second}
		trace(w, t0.Add(-d), d, 200*ms, func(time.Duration) float64 { return rate })
		return w
	}
	for _, tt := range []struct {
		name     string
		w        *Windows
		cur      Sample
		up, down int
	}{
		{"steady 30/s needs 3, the first second's backlog adds one, not 3",
			steadyAt(30, 3*time.Second), Sample{At: t0, Arrivals: 30, Service: 200 * ms, Inflight: 2, Queued: 20}, 4, 4},
		{"steady 30/s, queue gone: up 3; down keeps 4 if it has them (6 of 6 slots is past the tolerance)",
			steadyAt(30, 10*time.Second), Sample{At: t0, Arrivals: 30, Service: 200 * ms, Inflight: 6}, 3, 4},
		{"steady 25/s: 5 of 6 slots is within the tolerance, 3 both ways",
			steadyAt(25, 10*time.Second), Sample{At: t0, Arrivals: 25, Service: 200 * ms, Inflight: 5}, 3, 3},
		{"40/s burst needs 4, however long the queue (bounded by max)",
			steadyAt(40, 10*time.Second), Sample{At: t0, Arrivals: 40, Service: 200 * ms, Inflight: 8}, 4, 5},
		{"a step up while queueing counts at once, not over the panic window",
			steadyAt(4, 30*time.Second), Sample{At: t0, Arrivals: 40, Service: 200 * ms, Inflight: 2, Queued: 4}, 5, 5},
		{"a blip that queues nothing waits for the panic mean (but down keeps it)",
			steadyAt(4, 30*time.Second), Sample{At: t0, Arrivals: 12, Service: 200 * ms, Inflight: 2}, 1, 2},
		{"a big backlog is bounded by max",
			steadyAt(30, 3*time.Second), Sample{At: t0, Arrivals: 30, Service: 200 * ms, Queued: 1000}, 6, 4},
		{"from zero: one queued request, nothing measured",
			&Windows{Stable: time.Minute, Panic: 6 * time.Second}, Sample{At: t0, Queued: 1}, 1, 1},
		{"down never below what is in flight now",
			steadyAt(4, 70*time.Second), Sample{At: t0, Arrivals: 4, Service: 200 * ms, Inflight: 5}, 1, 3},
		{"float error in rate × time does not round up: 30 × 0.2 / 2",
			steadyAt(30, 70*time.Second), Sample{At: t0, Arrivals: 30, Service: 200 * ms}, 3, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if up := z.Up(tt.w, tt.cur, Pool{}); up != tt.up {
				t.Errorf("Up = %d, want %d", up, tt.up)
			}
			if down := z.Down(tt.w, tt.cur); down != tt.down {
				t.Errorf("Down = %d, want %d", down, tt.down)
			}
		})
	}
	// A queue that flickers (one reading in the panic window) is no
	// shortage; one that lasts the window is.
	for _, tt := range []struct {
		name   string
		every  int // a queue of 10 at every n-th reading
		wantUp int
	}{
		{"flickering queue at 35/s: stays 4", 100, 4},
		{"lasting queue at 35/s: one more", 1, 5},
	} {
		w := &Windows{Stable: 60 * time.Second, Panic: 3 * time.Second}
		var cur Sample
		for i := range 40 {
			cur = Sample{At: t0.Add(time.Duration(i-39) * 250 * ms), Arrivals: 35, Service: 203 * ms, Inflight: 7}
			if i%tt.every == 0 || i == 39 {
				cur.Queued = 10
			}
			w.Add(cur)
		}
		if up := z.Up(w, cur, Pool{Ready: 4}); up != tt.wantUp {
			t.Errorf("%s: Up = %d, want %d", tt.name, up, tt.wantUp)
		}
	}
	zero := Sizing{Target: 4, Min: 0, Max: 10, BacklogDrain: time.Second}
	if n := zero.Up(&Windows{Stable: time.Minute, Panic: time.Second}, Sample{At: t0}, Pool{}); n != 0 {
		t.Errorf("min 0, no demand: Up = %d, want 0", n)
	}
}

func TestShrink(t *testing.T) {
	c := func(id string, readyAgo time.Duration, inflight int64) Candidate {
		return Candidate{ID: id, ReadySince: ago(readyAgo), Inflight: inflight}
	}
	six := []Candidate{c("a", 60*time.Minute, 2), c("b", 50*time.Minute, 0), c("c", 40*time.Minute, 1),
		c("d", 30*time.Minute, 0), c("e", 20*time.Minute, 0), c("f", 10*time.Minute, 3)}
	for _, tt := range []struct {
		name string
		in   ShrinkInput
		want []string
	}{
		{"halving bound: 6 ready, keep 1, rate 2 leaves 3; idle newest first", ShrinkInput{Ready: six, Keep: 1, Rate: 2}, []string{"e", "d", "b"}},
		{"then 3 → 1 in one more step", ShrinkInput{Ready: six[:3], Keep: 1, Rate: 2}, []string{"b", "c"}},
		{"keep binds before the rate", ShrinkInput{Ready: six, Keep: 5, Rate: 2}, []string{"e"}},
		{"rate 0 means no bound", ShrinkInput{Ready: six, Keep: 1, Rate: 0}, []string{"e", "d", "b", "c", "a"}},
		{"rate 1 means never: floor(6 / 1) = 6 stay, as Knative reads it", ShrinkInput{Ready: six, Keep: 1, Rate: 1}, nil},
		{"never below one (idleness alone empties a pool)", ShrinkInput{Ready: six[:2], Keep: 0, Rate: 0}, []string{"b"}},
		{"nothing to spare", ShrinkInput{Ready: six[:2], Keep: 2, Rate: 2}, nil},
		{"starting containers count toward keep: 6 ready + 2 starting, keep 5 drains 3", ShrinkInput{Ready: six, Keep: 5, Rate: 2, Starting: 2}, []string{"e", "d", "b"}},
		{"however many start: 6 ready + 1 starting, keep 1, rate 2 halves the ready", ShrinkInput{Ready: six, Keep: 1, Rate: 2, Starting: 1}, []string{"e", "d", "b"}},
		{"starting ones covering keep leave one ready", ShrinkInput{Ready: six[:2], Keep: 3, Rate: 0, Starting: 4}, []string{"b"}},
		{"queued requests: the pool is short, no shrink", ShrinkInput{Ready: six, Keep: 1, Rate: 2, Queued: 1}, nil},
		{"ties on in-flight and age: by id", ShrinkInput{Ready: []Candidate{c("y", time.Minute, 0), c("x", time.Minute, 0)}, Keep: 1, Rate: 2}, []string{"x"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Shrink(tt.in); !slices.Equal(got, tt.want) {
				t.Fatalf("Shrink = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFlap(t *testing.T) {
	for _, tt := range []struct {
		name     string
		lastDown time.Time
		want     bool
	}{
		{"no scale-down yet", time.Time{}, false},
		{"up 10s after a down, window 60s", ago(10 * time.Second), true},
		{"up exactly a window later is no flap", ago(60 * time.Second), false},
	} {
		if got := Flap(tt.lastDown, t0, 60*time.Second); got != tt.want {
			t.Errorf("%s: Flap = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestAutoscalerStepDown drives the policy as the controller does (a poll
// every 250 ms, a scale-down tick every 2 s) through 40 req/s for 10 s and
// then 4 req/s, at 200 ms and target 2: the pool sized for the burst
// shrinks to one container only once the burst has left the 20 s stable
// window, by halving steps.
func TestAutoscalerStepDown(t *testing.T) {
	a := &Autoscaler{
		Sizing: Sizing{Target: 2, Min: 1, Max: 6, BacklogDrain: 2 * time.Second},
		Rule:   RuleDemand, Rate: 2, IdleTimeout: 10 * time.Second, Cooldown: time.Second,
		Win: Windows{Stable: 20 * time.Second, Panic: 6 * time.Second, Every: 100 * ms},
	}
	ready := []Candidate{}
	for i := range 5 { // what the burst left: 5 containers (8.1 in flight)
		ready = append(ready, Candidate{ID: string(rune('a' + i)), ReadySince: t0})
	}
	type down struct {
		at time.Duration
		n  int
	}
	var downs []down
	for x := time.Duration(0); x <= 60*time.Second; x += 250 * ms {
		rate := 40.0
		if x >= 10*time.Second {
			rate = 4
		}
		cur := Sample{At: t0.Add(x), Arrivals: rate, Service: 202 * ms, Inflight: int64(rate * 0.202)}
		res := a.Poll(cur, Pool{Ready: len(ready)}, time.Time{}, time.Time{})
		if res.Start > 0 || res.Reclaim > 0 {
			t.Fatalf("at %v: scale-up %+v on a falling load", x, res)
		}
		for i := range ready { // least-connections reaches every container
			ready[i].LastSeen = cur.At
		}
		if x%(2*time.Second) == 0 {
			surplus, idle := a.ScaleDown(cur, ready, Pool{Ready: len(ready)})
			if len(idle) > 0 {
				t.Fatalf("at %v: idle victims %v under steady traffic", x, idle)
			}
			if len(surplus) > 0 {
				downs = append(downs, down{x, len(surplus)})
				ready = slices.DeleteFunc(ready, func(k Candidate) bool { return slices.Contains(surplus, k.ID) })
			}
		}
	}
	// The last 40/s sample (9.75 s) leaves the window at 29.75 s: the tick
	// at 30 s halves 5 → 2, the one at 32 s goes 2 → 1.
	want := []down{{30 * time.Second, 3}, {32 * time.Second, 1}}
	if !slices.Equal(downs, want) || len(ready) != 1 {
		t.Fatalf("scale-downs %v (left %d), want %v", downs, len(ready), want)
	}
}

// TestScaleDownKeepsWhatUpWants: a scale-down never leaves fewer
// containers than a scale-up at the same reading would ask for, or the
// next poll would start them again (a flap). Here the queue just emptied
// but the panic window's mean backlog still wants 5 containers.
func TestScaleDownKeepsWhatUpWants(t *testing.T) {
	a := &Autoscaler{
		Sizing: Sizing{Target: 2, Min: 1, Max: 8, BacklogDrain: 2 * time.Second},
		Rule:   RuleDemand, Rate: 2, IdleTimeout: time.Minute,
		Win: Windows{Stable: 10 * time.Second, Panic: 3 * time.Second},
	}
	var cur Sample
	for i := range 60 { // 15 s at 35 req/s; a queue of 30 in the last 2 s
		cur = Sample{At: t0.Add(time.Duration(i-59) * 250 * ms), Arrivals: 35, Service: 200 * ms, Inflight: 7}
		if i >= 52 && i < 59 {
			cur.Queued = 30
		}
		a.Win.Add(cur)
	}
	var ready []Candidate
	for i := range 6 {
		ready = append(ready, Candidate{ID: string(rune('a' + i)), ReadySince: ago(time.Minute), LastSeen: t0})
	}
	up := a.Sizing.Up(&a.Win, cur, Pool{Ready: 6})
	surplus, _ := a.ScaleDown(cur, ready, Pool{Ready: len(ready)})
	if left := len(ready) - len(surplus); left < up || up != 5 {
		t.Fatalf("Up wants %d (want 5); scale-down left %d", up, left)
	}
}

// connTrace feeds w one sample per 250 ms from start for d, with conns(x)
// open connections and rate req/s at 200 ms.
func connTrace(w *Windows, start time.Time, d time.Duration, rate float64, conns func(time.Duration) int64) {
	for x := time.Duration(0); x < d; x += 250 * ms {
		w.Add(Sample{At: start.Add(x), Arrivals: rate, Service: 200 * ms, Conns: conns(x)})
	}
}

func TestWindowsStableMaxConns(t *testing.T) {
	w := &Windows{Stable: 60 * time.Second, Panic: 6 * time.Second}
	if w.StableMaxConns(t0) != 0 {
		t.Fatal("an empty window holds no connections")
	}
	// 450 connections for 10 s, then 50; the window forgets the 450.
	connTrace(w, t0, 80*time.Second, 4, func(x time.Duration) int64 {
		if x < 10*time.Second {
			return 450
		}
		return 50
	})
	for _, tt := range []struct {
		at   time.Duration
		want int64
	}{
		{69500 * ms, 450}, // the last 450 (9.75 s) is still inside
		{69750 * ms, 50},  // and now it is out
	} {
		ww := &Windows{Stable: w.Stable, Panic: w.Panic}
		connTrace(ww, t0, tt.at+ms, 4, func(x time.Duration) int64 {
			if x < 10*time.Second {
				return 450
			}
			return 50
		})
		if got := ww.StableMaxConns(t0.Add(tt.at)); got != tt.want {
			t.Errorf("at %v: StableMaxConns = %d, want %d", tt.at, got, tt.want)
		}
	}
}

func TestSizingConns(t *testing.T) {
	z := Sizing{Target: 2, Min: 1, Max: 20, BacklogDrain: 2 * time.Second, TargetConns: 100}
	// flat: 4 req/s (one container at target 2) and conns connections
	// for d; flatAt: rate req/s.
	flatAt := func(rate float64, conns int64, d time.Duration) *Windows {
		w := &Windows{Stable: 60 * time.Second, Panic: 6 * time.Second}
		connTrace(w, t0.Add(-d), d, rate, func(time.Duration) int64 { return conns })
		return w
	}
	flat := func(conns int64, d time.Duration) *Windows { return flatAt(4, conns, d) }
	stepDown := func(from, to int64, ago time.Duration) *Windows {
		w := &Windows{Stable: 60 * time.Second, Panic: 6 * time.Second}
		connTrace(w, t0.Add(-90*time.Second), 90*time.Second, 4, func(x time.Duration) int64 {
			if x < 90*time.Second-ago {
				return from
			}
			return to
		})
		return w
	}
	at := func(rate float64, conns int64) Sample {
		return Sample{At: t0, Arrivals: rate, Service: 200 * ms, Inflight: int64(rate * 0.2), Conns: conns}
	}
	for _, tt := range []struct {
		name     string
		z        Sizing
		w        *Windows
		cur      Sample
		up, down int
	}{
		{"a step 0 → 450 is met in one move: ceil(450/100) = 5", z, flat(0, 30*time.Second), at(4, 450), 5, 5},
		{"450 steady: 4.5 + 0.25 fits 5 both ways", z, flat(450, 70*time.Second), at(4, 450), 5, 5},
		{"480: up 5, down keeps 6 (5.05 is past the tolerance): the band", z, flat(480, 70*time.Second), at(4, 480), 5, 6},
		{"475 exactly fills 5 with the tolerance", z, flat(475, 70*time.Second), at(4, 475), 5, 5},
		{"dropped to 50 within the stable window: up 1, down keeps what 450 needed", z, stepDown(450, 50, 20*time.Second), at(4, 50), 1, 5},
		{"dropped to 50 a window ago: 1 both ways", z, stepDown(450, 50, 70*time.Second), at(4, 50), 1, 1},
		{"down counts the current reading if it is higher than the window", z, flat(50, 70*time.Second), at(4, 320), 4, 4},
		{"requests need more than connections: theirs", z, flatAt(30, 150, 70*time.Second), at(30, 150), 3, 4},
		{"connections need more than requests: theirs", z, flat(150, 70*time.Second), at(4, 1000), 10, 11},
		{"bounded by max", z, flat(0, 10*time.Second), at(4, 100_000), 20, 20},
		{"negative count (skewed balancers) is none", z, flat(0, 70*time.Second), at(4, -300), 1, 1},
		{"TargetConns 0: connections do not size the pool", Sizing{Target: 2, Min: 1, Max: 20, BacklogDrain: 2 * time.Second},
			flat(10_000, 70*time.Second), at(4, 10_000), 1, 1},
		{"min 0, nothing at all: empty", Sizing{Target: 2, Min: 0, Max: 20, TargetConns: 100},
			&Windows{Stable: time.Minute, Panic: time.Second}, Sample{At: t0}, 0, 1}, // down: the requests' tolerance, as before
		{"min 0, one connection and no request: one container", Sizing{Target: 2, Min: 0, Max: 20, TargetConns: 100},
			&Windows{Stable: time.Minute, Panic: time.Second}, Sample{At: t0, Conns: 1}, 1, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if up := tt.z.Up(tt.w, tt.cur, Pool{}); up != tt.up {
				t.Errorf("Up = %d, want %d", up, tt.up)
			}
			if down := tt.z.Down(tt.w, tt.cur); down != tt.down {
				t.Errorf("Down = %d, want %d", down, tt.down)
			}
		})
	}
}

// TestAutoscalerConns drives the policy through a step of connections and
// back: 450 WebSockets open at once on a pool of 1 with next to no
// requests, held for 30 s, then closed. The step starts 4 in one poll;
// scale-down waits for the stable window, keeps the containers that carry
// connections, and idleness never drains one with a connection open.
func TestAutoscalerConns(t *testing.T) {
	a := &Autoscaler{
		Sizing: Sizing{Target: 2, Min: 1, Max: 10, BacklogDrain: 2 * time.Second, TargetConns: 100},
		Rule:   RuleDemand, Rate: 0, IdleTimeout: 5 * time.Second, Cooldown: time.Second,
		Win: Windows{Stable: 20 * time.Second, Panic: 6 * time.Second, Every: 100 * ms},
	}
	cur := Sample{At: t0, Conns: 450}
	res := a.Poll(cur, Pool{Ready: 1}, time.Time{}, time.Time{})
	if res.Desired != 5 || res.Start != 4 {
		t.Fatalf("step to 450 connections: %+v, want desired 5, start 4 at once", res)
	}
	// The connections sit on the five, none on "e"; no request for a
	// minute, so every one is idle by time.
	ready := []Candidate{
		{ID: "a", ReadySince: ago(time.Hour), Conns: 100}, {ID: "b", ReadySince: t0, Conns: 100},
		{ID: "c", ReadySince: t0, Conns: 100}, {ID: "d", ReadySince: t0, Conns: 150},
		{ID: "e", ReadySince: t0},
	}
	for x := 250 * ms; x <= 30*time.Second; x += 250 * ms {
		cur = Sample{At: t0.Add(x), Conns: 450}
		a.Poll(cur, Pool{Ready: 5}, t0, time.Time{})
	}
	surplus, idle := a.ScaleDown(cur, ready, Pool{Ready: len(ready)})
	if len(surplus) != 0 || !slices.Equal(idle, nil) {
		t.Fatalf("450 connections on 5: surplus %v idle %v, want none", surplus, idle)
	}
	// Clients of "d" leave: 300 left. Down keeps 5 (the window's 450) for
	// 20 s more; meanwhile Up asks 3 and the two without connections are
	// idle. Then Down keeps 4 (3.25 of a container's target) and Up 3: one
	// goes as surplus (the cheapest: no connection, by id), the other as
	// idle; the three holding 100 each stay, idle by time or not.
	ready[3].Conns = 0
	for x := 30*time.Second + 250*ms; x <= 60*time.Second; x += 250 * ms {
		cur = Sample{At: t0.Add(x), Conns: 300}
		a.Poll(cur, Pool{Ready: 5}, t0, time.Time{})
		if x == 40*time.Second {
			if s, i := a.ScaleDown(cur, ready, Pool{Ready: len(ready)}); len(s) != 0 || len(i) != 2 {
				t.Fatalf("at %v, window still holds 450: surplus %v, idle %v; want no surplus and the two without connections idle", x, s, i)
			}
		}
	}
	surplus, idle = a.ScaleDown(cur, ready, Pool{Ready: len(ready)})
	if !slices.Equal(surplus, []string{"d"}) || !slices.Equal(idle, []string{"e"}) {
		t.Fatalf("300 connections on 5: surplus %v idle %v, want surplus [d], idle [e]", surplus, idle)
	}
}

func TestShrinkConnsAndStale(t *testing.T) {
	type k = Candidate
	at := func(d time.Duration) time.Time { return ago(d) }
	for _, tt := range []struct {
		name  string
		ready []Candidate
		keep  int
		want  []string
	}{
		{"fewest connections before fewest in flight: a drain that cuts nothing", []Candidate{
			k{ID: "ws", ReadySince: at(time.Hour), Conns: 3},
			k{ID: "busy", ReadySince: at(time.Hour), Inflight: 2},
		}, 1, []string{"busy"}},
		{"else the fewest connections: the drain cuts the least", []Candidate{
			k{ID: "many", ReadySince: at(time.Minute), Conns: 40},
			k{ID: "few", ReadySince: at(time.Hour), Conns: 3, Inflight: 5},
			k{ID: "some", ReadySince: at(time.Hour), Conns: 10},
		}, 1, []string{"few", "some"}},
		{"equal connections: fewest in flight, then newest", []Candidate{
			k{ID: "old", ReadySince: at(time.Hour), Conns: 2},
			k{ID: "new", ReadySince: at(time.Minute), Conns: 2},
			k{ID: "inflight", ReadySince: at(time.Second), Conns: 2, Inflight: 1},
		}, 1, []string{"new", "old"}},
		{"stale first, however busy: a deploy drains it anyway", []Candidate{
			k{ID: "current", ReadySince: at(time.Minute)},
			k{ID: "stale", ReadySince: at(time.Hour), Conns: 50, Inflight: 3, Stale: true},
		}, 1, []string{"stale"}},
		{"among stale ones, fewest connections", []Candidate{
			k{ID: "s1", ReadySince: at(time.Hour), Conns: 9, Stale: true},
			k{ID: "s2", ReadySince: at(time.Hour), Conns: 1, Stale: true},
			k{ID: "cur", ReadySince: at(time.Hour)},
		}, 2, []string{"s2"}},
		{"negative counts (skewed balancers) read as none", []Candidate{
			k{ID: "a", ReadySince: at(time.Hour), Conns: 1},
			k{ID: "b", ReadySince: at(time.Hour), Conns: -4},
		}, 1, []string{"b"}},
		{"the doc's six, 2 connections on the newest idle one: one in flight goes before it", func() []Candidate {
			six := []Candidate{k{ID: "a", ReadySince: at(60 * time.Minute), Inflight: 2}, k{ID: "b", ReadySince: at(50 * time.Minute)},
				k{ID: "c", ReadySince: at(40 * time.Minute), Inflight: 1}, k{ID: "d", ReadySince: at(30 * time.Minute)},
				k{ID: "e", ReadySince: at(20 * time.Minute), Conns: 2}, k{ID: "f", ReadySince: at(10 * time.Minute), Inflight: 3}}
			return six
		}(), 3, []string{"d", "b", "c"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.ready)
			if got := Shrink(ShrinkInput{Ready: in, Keep: tt.keep, Rate: 0}); !slices.Equal(got, tt.want) {
				t.Fatalf("Shrink = %v, want %v", got, tt.want)
			}
			if !slices.Equal(in, tt.ready) {
				t.Fatal("Shrink reordered its input")
			}
		})
	}
}
