package saturate

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// system answers within 10 ms up to capacity req/s and at 1 s beyond it.
func system(capacity float64) func(rate float64) Step {
	return func(rate float64) Step {
		s := Step{Rate: rate, Offered: int64(rate * 10), OK: int64(rate * 10), P99: 10 * time.Millisecond}
		if rate > capacity {
			s.P99 = time.Second
		}
		return s
	}
}

func TestSearch(t *testing.T) {
	cases := []struct {
		name        string
		plan        Plan
		capacity    float64
		wantRates   []float64
		sustainable float64
		breaking    float64
	}{
		{"doubling then bisection", Plan{Start: 100, Factor: 2, Refine: 2}, 500,
			[]float64{100, 200, 400, 800, 600, 500}, 500, 600},
		{"increments, no refinement", Plan{Start: 100, Increment: 100}, 350,
			[]float64{100, 200, 300, 400}, 300, 400},
		{"first step already too much", Plan{Start: 100, Factor: 2, Refine: 2}, 60,
			[]float64{100, 50, 75}, 50, 75},
		{"capped by Max", Plan{Start: 100, Factor: 2, Max: 300, Refine: 2}, 1e9,
			[]float64{100, 200, 300}, 300, 0},
		{"bisection stops at 2%", Plan{Start: 1000, Factor: 1.01, Refine: 10}, 1005,
			[]float64{1000, 1010}, 1000, 1010},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.plan.SLO = 100 * time.Millisecond
			c.plan.MaxErrors = 0.01
			run := system(c.capacity)
			var steps []Step
			for {
				rate, ok := c.plan.Next(steps)
				if !ok {
					break
				}
				steps = append(steps, c.plan.Judge(run(rate)))
				if len(steps) > 50 {
					t.Fatal("search does not end")
				}
			}
			var rates []float64
			for _, s := range steps {
				rates = append(rates, s.Rate)
			}
			if !slices.Equal(rates, c.wantRates) {
				t.Fatalf("rates %v, want %v", rates, c.wantRates)
			}
			r := Conclude(steps)
			if r.Sustainable != c.sustainable || r.Breaking != c.breaking {
				t.Fatalf("result %+v, want sustainable %v breaking %v", r, c.sustainable, c.breaking)
			}
			if c.breaking > 0 && !strings.Contains(r.Reason, "p99") {
				t.Errorf("reason %q", r.Reason)
			}
		})
	}
}

func TestJudge(t *testing.T) {
	p := Plan{SLO: 50 * time.Millisecond, MaxErrors: 0.01}
	cases := []struct {
		step   Step
		pass   bool
		reason string
	}{
		{Step{Offered: 1000, OK: 1000, P99: 50 * time.Millisecond}, true, ""},
		{Step{Offered: 1000, OK: 990, Failed: 10, P99: time.Millisecond}, true, ""},
		{Step{Offered: 1000, OK: 989, Failed: 6, Dropped: 5, P99: time.Millisecond}, false, "error ratio"},
		{Step{Offered: 1000, OK: 1000, P99: 51 * time.Millisecond}, false, "SLO"},
		{Step{Offered: 10, Failed: 0, Dropped: 0}, false, "no successful"},
		{Step{Offered: 1000, OK: 1000, Late: 10, P99: time.Millisecond}, true, ""},
		{Step{Offered: 1000, OK: 1000, Late: 11, P99: time.Millisecond}, false, "driver-limited"},
	}
	for i, c := range cases {
		got := p.Judge(c.step)
		if got.Pass != c.pass || !strings.Contains(got.Reason, c.reason) {
			t.Errorf("case %d: pass %v reason %q, want %v %q", i, got.Pass, got.Reason, c.pass, c.reason)
		}
	}
}
