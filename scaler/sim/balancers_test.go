package sim

import (
	"testing"
	"time"
)

// positions counts a stretch's slots on one container of a layout.
func TestPositions(t *testing.T) {
	for _, tt := range []struct {
		first, last, j, n, want int64
	}{
		{0, 31, 0, 10, 4}, // the package's worked example: layers 0–3
		{0, 31, 1, 10, 4},
		{0, 31, 2, 10, 3},
		{32, 39, 0, 10, 0},
		{32, 39, 2, 10, 1},
		{0, 39, 7, 10, 4}, // one balancer: every slot
		{5, 4, 0, 10, 0},  // an empty stretch
		{3, 3, 3, 10, 1},  // one slot
		{3, 3, 4, 10, 0},
	} {
		if got := positions(tt.first, tt.last, tt.j, tt.n); got != tt.want {
			t.Errorf("positions(%d, %d, %d, %d) = %d, want %d", tt.first, tt.last, tt.j, tt.n, got, tt.want)
		}
	}
}

// balanced is a fixed pool behind two balancers splitting the traffic
// as split says.
func balanced(n int, split ...float64) Config {
	c := fixed(n)
	c.Split = split
	return c
}

// The grants never add up to more than a container's capacity, and no
// balancer has more in flight on a container than its grant, at any step
// of a Poisson run whose load crosses the pool's size.
func TestGrantsKeepTheLimit(t *testing.T) {
	cfg := balanced(20, 9, 1)
	cfg.Poisson = true
	tr := Trace{Name: "t", Duration: 2 * time.Minute, Rate: func(t time.Duration) float64 {
		return []float64{200, 450, 50, 380}[t/(30*time.Second)] // 40, 90, 10, 76 of 80 slots
	}}
	s := newSim(cfg, Fixed{}, tr)
	for s.k < s.end {
		s.tick()
		for _, c := range s.pool.cs {
			var sum int64
			for b := range s.bal {
				sum += c.grant[b]
				if c.in[b] > c.grant[b] {
					t.Fatalf("step %d, %s: balancer %d has %d in flight on a grant of %d", s.k, c.id, b, c.in[b], c.grant[b])
				}
			}
			if sum > s.capacity || c.inflight > s.capacity {
				t.Fatalf("step %d, %s: grants %v (in flight %d) over the capacity %d", s.k, c.id, c.grant, c.inflight, s.capacity)
			}
		}
	}
	if r := s.result(); r.Served+r.Failed() > r.Offered || r.Failed() != 0 {
		t.Errorf("offered %d, served %d, failed %d", r.Offered, r.Served, r.Failed())
	}
}

// The division follows demand: a balancer taking 90% of the traffic holds
// about 90% of the slots, give or take the one slot each that an idle
// demand is worth.
func TestGrantsFollowDemand(t *testing.T) {
	s := newSim(balanced(60, 9, 1), Fixed{}, Constant(1000, time.Minute)) // 200 of 240 slots busy
	s.runFor(time.Minute - s.cfg.Step)
	var big, all int64
	for _, c := range s.pool.cs {
		big += c.grant[0]
		all += c.grant[0] + c.grant[1]
	}
	if share := float64(big) / float64(all); all != 240 || !near(share, 0.9, 0.02) {
		t.Errorf("the 90%% balancer holds %d of %d granted slots (%.3f), want all 240 granted and about 0.9", big, all, share)
	}
}

// A balancer whose grants are full queues even while another balancer's
// slots idle: with every request through one balancer, the idle one still
// holds a slot part of the time (its demand of 0 weighs 1 against the
// other's demand + 1), so a pool that
// one balancer alone keeps exactly busy serves a little less and queues.
func TestSeparateQueues(t *testing.T) {
	const rate = 200.0 // 40 in flight: exactly the 10 × 4 slots
	one := Run(fixed(10), Fixed{}, Constant(rate, 5*time.Minute))
	two := Run(balanced(10, 1, 0), Fixed{}, Constant(rate, 5*time.Minute))
	if !near(one.MeanInflight, 40, 0.5) || one.PeakQueued != 0 {
		t.Errorf("one balancer: mean in flight %.2f, peak queue %d; want 40, 0", one.MeanInflight, one.PeakQueued)
	}
	if two.MeanInflight > 39.9 || two.MeanQueued < 1 || two.P99 <= one.P99 {
		t.Errorf("two balancers, one idle: mean in flight %.2f, mean queue %.1f, p99 %v (one balancer: %v); "+
			"want the idle one's slot unused part of the time (< 39.9), a queue, and a longer p99", two.MeanInflight, two.MeanQueued, two.P99, one.P99)
	}
}

// Each container reports its mean in flight over the last second, and
// the pods' reports add up to the pool's concurrency (Little's law: 100/s
// at 200 ms keeps 20 busy).
func TestPods(t *testing.T) {
	s := newSim(balanced(10, 9, 1), Fixed{}, Constant(100, time.Minute))
	s.runFor(30*time.Second + s.cfg.Step)
	pods := s.view(s.k).Pods()
	var sum float64
	for _, p := range pods {
		sum += p
	}
	if len(pods) != 10 || !near(sum, 20, 0.5) {
		t.Errorf("%d pods reporting %.2f in all, want 10 and 20", len(pods), sum)
	}
}

// A scale-up decided while requests wait is a queued start; one decided
// with nothing queued is not.
func TestQueuedStarts(t *testing.T) {
	cfg := fixed(1) // 4 slots; 60/s at 200 ms keeps 12 busy
	cfg.Max = 10
	p := script{poll: func(v View) Action {
		switch since(v) {
		case 0: // 3 arrived, 4 slots: nothing waits yet
			return Action{Start: 1, Reason: "demand"}
		case 5 * time.Second:
			if v.Sample.Queued == 0 {
				t.Errorf("nothing queued at 5 s with 8 slots for 12 requests in flight")
			}
			return Action{Start: 1, Reason: "demand"}
		}
		return Action{}
	}}
	if r := Run(cfg, p, Constant(60, 10*time.Second)); r.Started != 2 || r.QueuedStarts != 1 {
		t.Errorf("started %d, queued starts %d; want 2, 1", r.Started, r.QueuedStarts)
	}
}
