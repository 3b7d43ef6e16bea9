package sim

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"lbscale/scaler/decide"
)

const ms = time.Millisecond

// fixed is Default with n ready containers that never change, and
// deterministic arrivals unless the test says otherwise.
func fixed(n int) Config {
	c := Default()
	c.Initial, c.Min, c.Max = n, 0, n
	c.Poisson = false
	c.Split = nil // one balancer: the pool's own behaviour, undivided
	return c
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol }

// A constant rate on a pool large enough for it: in flight is rate ×
// service (Little's law), nothing waits, every latency is the service time.
func TestLittlesLaw(t *testing.T) {
	for _, tt := range []struct {
		name    string
		rate    float64
		pool    int
		poisson bool
		jitter  float64
		service time.Duration
		// wantP99 is the p99 latency; the mean in flight must be within
		// tol of rate × service.
		tol     float64
		wantP99 time.Duration
	}{
		{"1000/s at 200ms on 60×4 slots", 1000, 60, false, 0, 200 * ms, 0.5, 200 * ms},
		{"exactly full: 1000/s on 50×4 slots", 1000, 50, false, 0, 200 * ms, 0.5, 200 * ms},
		{"odd rate, spaced arrivals: 333/s", 333, 20, false, 0, 200 * ms, 0.5, 200 * ms},
		{"Poisson 1000/s on 60×4 slots (83% busy)", 1000, 60, true, 0, 200 * ms, 2, 200 * ms},
		{"jittered service ±50%: same mean", 1000, 80, false, 0.5, 200 * ms, 2, 300 * ms},
		{"service 1s: 100/s keeps 100 busy", 100, 30, false, 0, time.Second, 0.5, time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fixed(tt.pool)
			cfg.Poisson, cfg.Jitter, cfg.Service = tt.poisson, tt.jitter, tt.service
			r := Run(cfg, Fixed{}, Constant(tt.rate, 10*time.Minute))
			want := tt.rate * tt.service.Seconds()
			if !near(r.MeanInflight, want, tt.tol) {
				t.Errorf("mean in flight %.2f, want %.2f ± %g (Little's law)", r.MeanInflight, want, tt.tol)
			}
			if r.Failed() != 0 || r.P99 > tt.wantP99 {
				t.Errorf("failed %d, p99 %v: want 0 and ≤ %v", r.Failed(), r.P99, tt.wantP99)
			}
			if !tt.poisson && r.PeakQueued != 0 {
				t.Errorf("peak queue %d, want 0", r.PeakQueued)
			}
			if want := float64(tt.pool) * 600; r.ContainerSeconds != want || r.PeakReplicas != tt.pool || r.Events() != 0 {
				t.Errorf("container-s %.0f, peak %d, events %d: want %.0f, %d, 0", r.ContainerSeconds, r.PeakReplicas, r.Events(), want, tt.pool)
			}
			if r.Served+r.Failed() > r.Offered || r.Offered-r.Served > int64(tt.rate) {
				t.Errorf("offered %d, served %d: requests lost", r.Offered, r.Served)
			}
		})
	}
}

// A pool too small builds a queue: it serves its capacity, the rest waits,
// FIFO, until QUEUE_TIMEOUT and fails (or is refused past QUEUE_MAX).
func TestPoolTooSmall(t *testing.T) {
	const secs = 300
	for _, tt := range []struct {
		name     string
		queueMax int
		// served, timed out and refused over the run; the longest queue.
		served, timedOut, refused, peakQueue float64
		p99                                  time.Duration
	}{
		// 1000/s offered, 800/s served from the head: the head's wait grows
		// by 0.2 s a second, reaches the 5 s time-out at 25 s, and from then
		// on the queue holds the last 5 s of arrivals and 200/s time out.
		{"unbounded queue: the excess times out", 0, 800 * secs, 200 * (secs - 25), 0, 5000, 5*time.Second + 200*ms},
		// The queue fills to 500 in 2.5 s; then 200/s are refused at once
		// and the rest wait 500/800 s.
		{"queue max 500: the excess is refused", 500, 800 * secs, 0, 200 * (secs - 2.5), 500, 650*ms + 200*ms},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fixed(40) // 160 slots at 200 ms: 800 req/s
			cfg.QueueTimeout, cfg.QueueMax = 5*time.Second, tt.queueMax
			r := Run(cfg, Fixed{}, Constant(1000, secs*time.Second))
			if !near(float64(r.Served), tt.served, 1000) {
				t.Errorf("served %d, want about %.0f", r.Served, tt.served)
			}
			if !near(float64(r.TimedOut), tt.timedOut, 100) || !near(float64(r.Refused), tt.refused, 100) {
				t.Errorf("timed out %d, refused %d; want about %.0f and %.0f", r.TimedOut, r.Refused, tt.timedOut, tt.refused)
			}
			if !near(r.MeanInflight, 160, 0.5) {
				t.Errorf("mean in flight %.1f, want the pool's 160 slots", r.MeanInflight)
			}
			if !near(float64(r.PeakQueued), tt.peakQueue, 60) {
				t.Errorf("peak queue %d, want about %.0f", r.PeakQueued, tt.peakQueue)
			}
			if r.P99 < tt.p99-100*ms || r.P99 > tt.p99+100*ms {
				t.Errorf("p99 %v, want about %v", r.P99, tt.p99)
			}
		})
	}
}

// script is a policy that acts at given polls.
type script struct {
	poll func(v View) Action
}

func (script) Name() string           { return "script" }
func (s script) Poll(v View) Action   { return s.poll(v) }
func (script) ScaleDown(View) Action  { return Action{} }
func since(v View) time.Duration      { return v.Sample.At.Sub(epoch) }
func at(v View, d time.Duration) bool { return since(v) == d }

// runFor steps s through d (or to its end) and returns it.
func (s *sim) runFor(d time.Duration) *sim {
	for end := s.k + int64(d/s.cfg.Step); s.k < end && s.k < s.end; {
		s.tick()
	}
	return s
}

// A drained container takes nothing new, finishes what it holds, and goes
// at the first poll with nothing in flight and DRAIN_SETTLE passed.
func TestDrainWaitsForInflight(t *testing.T) {
	for _, tt := range []struct {
		name         string
		service      time.Duration
		capacity     int
		settle, stop time.Duration
		wantGone     time.Duration // after the drain
	}{
		{"settle 1s outlasts 200ms of work", 200 * ms, 4, time.Second, 0, time.Second},
		{"no settle: the next poll after the work ends", 200 * ms, 4, 0, 0, 250 * ms},
		{"work of 2s outlasts the settle", 2 * time.Second, 100, time.Second, 0, 2 * time.Second},
		{"the engine's stop costs too", 200 * ms, 4, time.Second, 3 * time.Second, 4 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fixed(2)
			cfg.Service, cfg.Capacity, cfg.DrainSettle, cfg.StopDelay = tt.service, tt.capacity, tt.settle, tt.stop
			drainAt := 10 * time.Second
			var victim string
			p := script{poll: func(v View) Action {
				if at(v, drainAt) {
					victim = v.Ready()[0].ID
					return Action{Drain: []string{victim}}
				}
				return Action{}
			}}
			// 2 requests a step, one each: both containers hold requests at
			// the drain, and the victim got one in the drain's step.
			s := newSim(cfg, p, Constant(40, time.Minute))
			s.runFor(drainAt + cfg.Step)
			c := s.pool.byID[victim]
			if c == nil || c.ph != draining || c.inflight == 0 {
				t.Fatalf("victim %q not draining with requests in flight", victim)
			}
			held := c.inflight
			s.runFor(tt.wantGone - 2*cfg.Step)
			if s.pool.byID[victim] == nil {
				t.Fatalf("gone before %v", tt.wantGone)
			}
			s.runFor(2 * cfg.Step)
			if s.pool.byID[victim] != nil {
				t.Fatalf("still there %v after the drain", tt.wantGone)
			}
			if c.inflight != 0 || c.lastSeen > int64(drainAt/cfg.Step) {
				t.Errorf("in flight %d (held %d), last seen step %d: a draining container got new requests", c.inflight, held, c.lastSeen)
			}
			r := s.runFor(time.Minute).result()
			// The kept one all along, the victim until it went.
			want := 60 + (drainAt + tt.wantGone).Seconds()
			if !near(r.ContainerSeconds, want, 0.06) || r.Drained != 1 || r.Failed() != 0 {
				t.Errorf("container-s %.2f, drained %d, failed %d; want %.2f, 1, 0", r.ContainerSeconds, r.Drained, r.Failed(), want)
			}
		})
	}
}

// A start costs from the decision, serves from the cold start on; a
// reclaim puts the newest draining container back at once; a scale-up
// within the stable window of a scale-down is one flap.
func TestStartReclaimFlap(t *testing.T) {
	cfg := fixed(3)
	cfg.Max = 10
	var drained []string
	p := script{poll: func(v View) Action {
		switch since(v) {
		case 5 * time.Second:
			return Action{Start: 2, Reason: "demand"}
		case 5*time.Second + 750*ms:
			if v.Pool.Starting != 2 || v.Pool.Ready != 3 {
				t.Errorf("at 5.75s: %+v, want 2 starting, 3 ready", v.Pool)
			}
		case 6 * time.Second:
			if v.Pool.Starting != 0 || v.Pool.Ready != 5 {
				t.Errorf("after the cold start: %+v, want 5 ready", v.Pool)
			}
			if !v.LastUp.Equal(epoch.Add(5 * time.Second)) {
				t.Errorf("LastUp %v, want the demand start", v.LastUp)
			}
		case 10 * time.Second:
			rs := v.Ready()
			slices.SortFunc(rs, func(a, b decide.Candidate) int { return a.ReadySince.Compare(b.ReadySince) })
			drained = []string{rs[0].ID, rs[len(rs)-1].ID} // an old one and a new one
			return Action{Drain: drained}
		case 10*time.Second + 250*ms:
			return Action{Reclaim: 1}
		case 80 * time.Second:
			return Action{Start: 1, Reason: "demand"} // past the window: no flap
		}
		return Action{}
	}}
	s := newSim(cfg, p, Constant(10, 90*time.Second))
	s.runFor(10*time.Second + 300*ms)
	if c := s.pool.byID[drained[1]]; c == nil || c.ph != ready {
		t.Errorf("the newest drained container was not the one reclaimed")
	}
	if c := s.pool.byID[drained[0]]; c == nil || c.ph != draining {
		t.Errorf("the oldest drained container should still drain")
	}
	r := s.runFor(80 * time.Second).result()
	if r.Started != 3 || r.Reclaimed != 1 || r.Drained != 2 || r.Flaps != 1 || r.PeakReplicas != 5 {
		t.Errorf("started %d reclaimed %d drained %d flaps %d peak %d; want 3 1 2 1 5", r.Started, r.Reclaimed, r.Drained, r.Flaps, r.PeakReplicas)
	}
	// 3 from 0 s, the oldest of them drained at 10 s and gone at 11 s;
	// 2 from 5 s (the one drained was reclaimed); 1 from 80 s.
	if want := 3*90.0 + 2*85 - 1*79 + 10; !near(r.ContainerSeconds, want, 0.3) {
		t.Errorf("container-s %.2f, want %.2f", r.ContainerSeconds, want)
	}
}

func TestAssignLeastConnections(t *testing.T) {
	for _, tt := range []struct {
		name     string
		inflight []int64
		limit    int64
		m        int64
		want     []int64 // sorted
		given    int64
	}{
		{"raise the least loaded", []int64{0, 1, 3}, 4, 4, []int64{2, 3, 3}, 4},
		{"level first", []int64{0, 0, 0, 0}, 4, 2, []int64{0, 0, 1, 1}, 2},
		{"fill all, the rest stays queued", []int64{2, 3}, 4, 10, []int64{4, 4}, 3},
		{"full pool takes nothing", []int64{4, 4}, 4, 5, []int64{4, 4}, 0},
		{"one big batch", []int64{0, 1, 2, 3}, 8, 20, []int64{6, 6, 7, 7}, 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPool(2, int(tt.limit), 1)
			for _, n := range tt.inflight {
				c := p.add(ready, 0, 0, 0)
				c.inflight = n
			}
			var given int64
			got := p.assign(tt.m, func(*container) int64 { return tt.limit }, func(c *container, n int64) {
				c.inflight += n
				given += n
			})
			var after []int64
			for _, c := range p.cs {
				after = append(after, c.inflight)
			}
			slices.Sort(after)
			if got != tt.given || given != tt.given || !slices.Equal(after, tt.want) {
				t.Errorf("gave %d (%d), in flight %v; want %d, %v", got, given, after, tt.given, tt.want)
			}
		})
	}
	// Light load: the rotation hands every container requests in turn (the
	// idle rule's LastSeen), as the balancers' random tie-break does.
	p := newPool(2, 4, 1)
	for range 10 {
		p.add(ready, 0, 0, 0)
	}
	seen := map[string]int{}
	for range 10 {
		// Each request is done before the next comes: every container
		// ties at 0 each time.
		p.assign(1, func(*container) int64 { return 4 }, func(c *container, n int64) { seen[c.id] += int(n) })
	}
	if len(seen) != 10 {
		t.Errorf("10 requests on 10 idle containers went to %d of them", len(seen))
	}
}

func TestQueue(t *testing.T) {
	var q queue
	for k := range int64(40) {
		q.push(k, k%3) // 0, 1, 2, 0, 1, 2, ...
	}
	if q.total != 39 {
		t.Fatalf("total %d, want 39", q.total)
	}
	if n := q.expire(6); n != 6 || q.total != 33 { // steps 1, 2, 4, 5
		t.Errorf("expired %d (total %d), want 6 (33)", n, q.total)
	}
	if at, got := q.pop(5); at != 7 || got != 1 {
		t.Errorf("pop = %d, %d; want the oldest cohort: step 7, 1", at, got)
	}
	if n := q.dropNewest(3); n != 3 || q.total != 29 {
		t.Errorf("dropped %d (total %d), want 3 (29)", n, q.total)
	}
	for q.total > 0 {
		if _, got := q.pop(100); got == 0 {
			t.Fatal("pop returned nothing with requests queued")
		}
	}
	if q.size != 0 {
		t.Errorf("%d cohorts left in an empty queue", q.size)
	}
}

func TestHistQuantile(t *testing.T) {
	h := newHist(20)
	h.add(4, 98)
	h.add(10, 2)
	h.add(99, 0)
	for _, tt := range []struct {
		q    float64
		want int64
	}{{0.5, 4}, {0.98, 4}, {0.99, 10}, {1, 10}} {
		if got := h.quantile(tt.q); got != tt.want {
			t.Errorf("quantile(%g) = %d, want %d", tt.q, got, tt.want)
		}
	}
	if e := newHist(3); e.quantile(0.5) != -1 {
		t.Error("an empty histogram has no quantile")
	}
}

func TestPoisson(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, lambda := range []float64{0.3, 4, 12, 100, 1000} {
		const n = 20000
		var sum, sq float64
		for range n {
			x := float64(poisson(r, lambda))
			sum += x
			sq += x * x
		}
		mean := sum / n
		v := sq/n - mean*mean
		// Mean and variance are both lambda; 5 standard errors.
		if se := math.Sqrt(lambda / n); !near(mean, lambda, 5*se) || !near(v, lambda, 0.05*lambda+0.05) {
			t.Errorf("λ %g: mean %.3f, variance %.3f", lambda, mean, v)
		}
	}
}

func TestDeterministic(t *testing.T) {
	cfg := Default()
	cfg.Max = MaxFor(20)
	tr := Bursts(PeakRate(20, 4, cfg.Service), 20*time.Minute)
	a := Run(cfg, NewOurs(cfg.Scaler, "demand"), tr)
	b := Run(cfg, NewOurs(cfg.Scaler, "demand"), tr)
	if !reflect.DeepEqual(a, b) {
		t.Errorf("two runs differ:\n%+v\n%+v", a, b)
	}
	cfg.Seed = 2
	if c := Run(cfg, NewOurs(cfg.Scaler, "demand"), tr); c.Offered == a.Offered {
		t.Errorf("another seed drew the same arrivals")
	}
}

// The ideal pays ceil(rate × S / target) each second; seconds within
// Transient of a change of more than 10% do not count as steady.
func TestIdealAndSteady(t *testing.T) {
	cfg := fixed(1)
	cfg.Min = 1
	// 30 s at 100/s (5 containers), 30 s at 105/s (6: 21 conc), 30 s at
	// 300/s (15), 30 s at 0 (Min 1).
	tr := Trace{Name: "t", Duration: 2 * time.Minute, Rate: func(t time.Duration) float64 {
		return []float64{100, 105, 300, 0}[t/(30*time.Second)]
	}}
	s := newSim(cfg, Fixed{}, tr)
	if want := 30.0 * (5 + 6 + 15 + 1); s.res.IdealSeconds != want || s.res.Scale != 15 {
		t.Errorf("ideal %.0f s, scale %d; want %.0f, 15", s.res.IdealSeconds, s.res.Scale, want)
	}
	// Changes at 0 s, 60 s (×3) and 90 s (to 0); 30 s is only 5%.
	for i, steady := range s.steady {
		transient := i < 10 || i >= 60 && i < 70 || i >= 90 && i < 100
		if steady == transient {
			t.Errorf("second %d steady = %v", i, steady)
		}
	}
}
