package policy_test

import (
	"math"
	"testing"
	"time"

	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
)

func TestPeakEWMA(t *testing.T) {
	const tau = 10 * time.Second
	cases := []struct {
		name    string
		prev    float64
		elapsed time.Duration
		obs     float64
		want    float64
	}{
		{"first observation", 0, 0, 10, 10},
		{"slower: jumps at once", 100, time.Millisecond, 300, 300},
		{"faster, 1s later", 100, time.Second, 10, 91.4},
		{"faster, 10s later", 100, 10 * time.Second, 10, 43.1},
		{"faster, a minute later: nearly there", 100, time.Minute, 10, 10.2},
		{"faster, at once: no weight", 100, 0, 10, 100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := policy.PeakEWMA(tc.prev, tc.elapsed, tc.obs, tau)
			if math.Abs(got-tc.want) > 0.05 && math.Abs(got-tc.want)/tc.want > 1e-4 {
				t.Errorf("PeakEWMA(%g, %v, %g) = %.4f, want %.4f", tc.prev, tc.elapsed, tc.obs, got, tc.want)
			}
		})
	}
}

// TestLeastLatency walks the policy through its rules with a made-up clock.
func TestLeastLatency(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	p := policy.NewLeastLatency(seeded(1), 10*time.Second, func() time.Time { return now })
	bs := newBackends(2, 100)
	fast, slow := bs[0], bs[1]
	set := setOf(1, bs...)
	pick := func() string { return p.Pick(set, nil, clientN(0)).ID }

	p.Observe(fast, 10*time.Millisecond)
	if got := pick(); got != slow.ID {
		t.Fatalf("an idle backend with no observation should be tried first, got %s", got)
	}
	fill(t, slow, 1)
	if got := pick(); got != fast.ID {
		t.Fatalf("an unknown backend already probed should wait for its answer, got %s", got)
	}
	p.Observe(slow, 100*time.Millisecond)
	slow.Release()

	// 10ms × (n+1) against 100ms × 1: fast wins up to 8 in flight, ties at 9.
	fill(t, fast, 8)
	if got := pick(); got != fast.ID {
		t.Fatalf("fast with 8 in flight (cost 90ms) against idle slow (100ms): got %s", got)
	}
	fill(t, fast, 2)
	if got := pick(); got != slow.ID {
		t.Fatalf("fast with 10 in flight (cost 110ms) against idle slow (100ms): got %s", got)
	}
	for range 10 {
		fast.Release()
	}

	// One slow answer from fast moves traffic at once (peak). While slow
	// answers in 100ms, fast's 300ms, with no traffic to refresh it,
	// decays at pick time and wins again after tau × ln 3 ≈ 11s.
	p.Observe(fast, 300*time.Millisecond)
	for i := range 100 {
		if got := pick(); got != slow.ID {
			t.Fatalf("%v after a 300ms answer from fast: got %s", time.Duration(i)*100*time.Millisecond, got)
		}
		now = now.Add(100 * time.Millisecond)
		p.Observe(slow, 100*time.Millisecond)
	}
	now = now.Add(2 * time.Second)
	p.Observe(slow, 100*time.Millisecond)
	if got := pick(); got != fast.ID {
		t.Fatalf("12s after fast's 300ms answer: got %s", got)
	}
}

// TestLeastLatencyRetriesAnIdleSlowBackend: a slow backend that gets no
// traffic decays at pick time and is tried again. Fast holds 3 requests
// (cost 4 × 10ms); slow's 100ms falls below 40ms after tau × ln 2.5 ≈ 9.2s.
func TestLeastLatencyRetriesAnIdleSlowBackend(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	p := policy.NewLeastLatency(seeded(1), 10*time.Second, func() time.Time { return now })
	bs := newBackends(2, 100)
	fast, slow := bs[0], bs[1]
	set := setOf(1, bs...)
	p.Observe(fast, 10*time.Millisecond)
	p.Observe(slow, 100*time.Millisecond)
	fill(t, fast, 3)
	for i := range 100 {
		if got := p.Pick(set, nil, clientN(0)); got != fast {
			t.Fatalf("slow %v after its 100ms answer: got %s", time.Duration(i)*90*time.Millisecond, got.ID)
		}
		now = now.Add(90 * time.Millisecond)
		p.Observe(fast, 10*time.Millisecond)
	}
	now = now.Add(time.Second)
	p.Observe(fast, 10*time.Millisecond)
	if got := p.Pick(set, nil, clientN(0)); got != slow {
		t.Fatalf("slow 10s after its 100ms answer should be tried again: got %s", got.ID)
	}
}

// TestLeastLatencySharesOfTenfoldSlower simulates a closed loop of 4
// clients over a backend answering in 10ms and one in 100ms: the slow one
// gets a small share, without ever failing.
func TestLeastLatencySharesOfTenfoldSlower(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	p := policy.NewLeastLatency(seeded(2), 10*time.Second, func() time.Time { return now })
	bs := newBackends(2, 100)
	set := setOf(1, bs...)
	cost := map[*pool.Backend]time.Duration{bs[0]: 10 * time.Millisecond, bs[1]: 100 * time.Millisecond}
	type req struct {
		b    *pool.Backend
		done time.Time
	}
	var inflight []req
	served := map[string]int{}
	for range 4 {
		b := p.Pick(set, nil, clientN(0))
		fill(t, b, 1)
		inflight = append(inflight, req{b, now.Add(cost[b])})
	}
	end := now.Add(60 * time.Second)
	for now.Before(end) {
		i := 0 // the next to finish
		for j := range inflight {
			if inflight[j].done.Before(inflight[i].done) {
				i = j
			}
		}
		r := inflight[i]
		now = r.done
		p.Observe(r.b, cost[r.b])
		r.b.Release()
		served[r.b.ID]++
		b := p.Pick(set, nil, clientN(0))
		fill(t, b, 1)
		inflight[i] = req{b, now.Add(cost[b])}
	}
	total := served[bs[0].ID] + served[bs[1].ID]
	share := float64(served[bs[1].ID]) / float64(total)
	t.Logf("60s, 4 clients: %d requests, slow backend served %d (%.2f%%)", total, served[bs[1].ID], 100*share)
	if share > 0.02 {
		t.Errorf("the 10x slower backend served %.1f%% of requests, want under 2%%", 100*share)
	}
}
