package sim

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"lbscale/scaler/decide"
)

// feed records conc every 250 ms for d from *now on, and moves *now.
func feed(k *KPA, now *time.Time, d time.Duration, conc float64) {
	for end := now.Add(d); now.Before(end); *now = now.Add(250 * ms) {
		k.record(*now, conc)
	}
}

func TestKPADesired(t *testing.T) {
	type seg struct {
		d    time.Duration
		conc float64
	}
	type check struct {
		ready     int
		want      int
		panicking bool
	}
	for _, tt := range []struct {
		name string
		// Each phase feeds segments, then decides once with ready pods.
		phases []struct {
			feed []seg
			check
		}
	}{
		{"stable: ceil(mean / target)", []struct {
			feed []seg
			check
		}{{[]seg{{time.Minute, 20}}, check{5, 5, false}},
			{[]seg{{time.Minute, 21}}, check{5, 6, false}}}},
		{"panic: the panic window's need, and never fewer while it lasts", []struct {
			feed []seg
			check
		}{
			{[]seg{{time.Minute, 20}}, check{5, 5, false}},
			// 6 s at 90: panic 23 ≥ 2 × 10 ready; the stable mean is 27.
			{[]seg{{6 * time.Second, 90}}, check{10, 23, true}},
			// Back to 20: stable 7, panic 5, still panicking: keep 23.
			{[]seg{{10 * time.Second, 20}}, check{23, 23, true}},
			// A stable window after the last tick over the threshold: calm,
			// the stable need (20 → 5) but no fewer than floor(23/2).
			{[]seg{{51 * time.Second, 20}}, check{23, 11, false}},
		}},
		{"scale-down rate: at most halve per decision", []struct {
			feed []seg
			check
		}{{[]seg{{time.Minute, 0}}, check{100, 50, false}},
			{[]seg{{time.Minute, 0}}, check{7, 3, false}}}},
		{"min and max bound it", []struct {
			feed []seg
			check
		}{{[]seg{{time.Minute, 0}}, check{1, 2, false}},
			{[]seg{{time.Minute, 400}}, check{1000, 300, false}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := Default().Scaler
			s.Min, s.Max = 2, 300
			k := NewKPA(s, nil)
			now := epoch
			for i, ph := range tt.phases {
				for _, sg := range ph.feed {
					feed(k, &now, sg.d, sg.conc)
				}
				at := now.Add(-250 * ms)
				if got := k.Desired(at, ph.ready); got != ph.want || k.Panicking() != ph.panicking {
					t.Errorf("phase %d: desired %d, panicking %v; want %d, %v", i, got, k.Panicking(), ph.want, ph.panicking)
				}
			}
		})
	}
}

// KPA's decision is carried out as ours is: reclaim, then start within
// MAX_REPLICAS; drain the least busy ready ones; nothing between ticks.
func TestKPAAct(t *testing.T) {
	s := Default().Scaler
	s.Min, s.Max = 1, 10
	ready := []decide.Candidate{
		{ID: "a", ReadySince: epoch, Inflight: 3},
		{ID: "b", ReadySince: epoch.Add(time.Second), Inflight: 0},
		{ID: "c", ReadySince: epoch.Add(2 * time.Second), Inflight: 0},
		{ID: "d", ReadySince: epoch, Inflight: 1},
	}
	view := func(at time.Duration, conc int64, p decide.Pool) View {
		return View{Sample: decide.Sample{At: epoch.Add(at), Inflight: conc}, Pool: p, ready: func() []decide.Candidate { return ready }}
	}
	k := NewKPA(s, nil)
	// 4 ready, 1 draining, concurrency 32: 8 wanted (panic: 8/4 ≥ 2).
	a := k.Poll(view(0, 32, decide.Pool{Ready: 4, Draining: 1, Stopping: 1}))
	if a.Reclaim != 1 || a.Start != 3 || len(a.Drain) != 0 {
		t.Errorf("%+v: want reclaim 1, start 3", a)
	}
	// Between ticks: nothing.
	if a := k.Poll(view(time.Second, 32, decide.Pool{Ready: 4})); a.Start+a.Reclaim != 0 || a.Drain != nil {
		t.Errorf("%+v between ticks, want nothing", a)
	}
	// Room: 10 max, 9 containers: one start only.
	k = NewKPA(s, nil)
	if a := k.Poll(view(0, 40, decide.Pool{Ready: 4, Stopping: 5})); a.Start != 1 {
		t.Errorf("%+v: want 1 start (MAX_REPLICAS)", a)
	}
	// Too many: drain the least busy, newest first among the idle.
	k = NewKPA(s, nil)
	if a := k.Poll(view(0, 4, decide.Pool{Ready: 4})); !slices.Equal(a.Drain, []string{"c", "b"}) {
		t.Errorf("drain %v, want [c b] (4 → max(1, floor(4/2)))", a.Drain)
	}
}

// Knative's scraper reads every pod up to 3, then a sample that grows to
// 16 and no further.
func TestScrapeSample(t *testing.T) {
	for _, tt := range []struct{ ready, want int }{
		{0, 0}, {1, 1}, {3, 3}, {4, 4}, {10, 7}, {100, 14}, {1000, 16}, {1000000, 16},
	} {
		if got := ScrapeSample(tt.ready); got != tt.want {
			t.Errorf("ScrapeSample(%d) = %d, want %d", tt.ready, got, tt.want)
		}
	}
}

// KPA scrapes once a second, a sample of the pods, and reads the sample's
// mean times the ready count: even pods give the exact total; one busy pod
// among 100 is in a scrape's sample 14 times in 100, read as 100 × 8 / 14
// each time, so the readings are unbiased but far apart.
func TestKPAScrape(t *testing.T) {
	view := func(at time.Duration, pods []float64) View {
		return View{Sample: decide.Sample{At: epoch.Add(at)}, Pool: decide.Pool{Ready: len(pods)},
			pods: func() []float64 { return slices.Clone(pods) }}
	}
	even := make([]float64, 100)
	for i := range even {
		even[i] = 3.5
	}
	k := NewKPA(Default().Scaler, rand.New(rand.NewPCG(1, 2)))
	for at := time.Duration(0); at < 10*time.Second; at += 250 * ms {
		k.Poll(view(at, even))
	}
	if len(k.obs) != 10 || k.obs[0].conc != 350 {
		t.Errorf("%d scrapes in 10 s, first %v; want 10 of 350", len(k.obs), k.obs[0].conc)
	}
	one := make([]float64, 100)
	one[42] = 8
	const n = 4000
	var sum float64
	hits := 0
	for i := range n {
		c := k.scrape(view(time.Duration(i)*time.Second, one))
		sum += c
		if c != 0 {
			hits++
			if !near(c, 800.0/14, 1e-9) {
				t.Fatalf("a scrape read %v, want 0 or 800/14", c)
			}
		}
	}
	if !near(sum/n, 8, 0.6) || !near(float64(hits)/n, 0.14, 0.02) {
		t.Errorf("mean reading %.2f, the busy pod sampled %.3f of the time; want 8 and 0.14", sum/n, float64(hits)/n)
	}
}
