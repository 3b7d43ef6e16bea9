package decide

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRoll(t *testing.T) {
	old := func(ids ...string) []Candidate {
		var out []Candidate
		for i, id := range ids {
			out = append(out, Candidate{ID: id, ReadySince: ago(time.Duration(len(ids)-i) * time.Hour), Stale: true})
		}
		return out
	}
	for _, tt := range []struct {
		name string
		in   RollInput
		want RollStep
	}{
		{"no old left: done", RollInput{NewReady: 4, Floor: 4, Surge: 1}, RollStep{Done: true}},
		{"first step at the floor: start one, drain none",
			RollInput{Old: old("a", "b", "c", "d"), Floor: 4, Desired: 2, Surge: 1}, RollStep{Start: 1}},
		{"while it boots: nothing",
			RollInput{Old: old("a", "b", "c", "d"), NewStarting: 1, Floor: 4, Surge: 1}, RollStep{}},
		{"ready: drain one (the newest, all else equal), start the next",
			RollInput{Old: old("a", "b", "c", "d"), NewReady: 1, Floor: 4, Surge: 1}, RollStep{Start: 1, Drain: []string{"d"}}},
		{"last one: drain, start nothing (no old left to match)",
			RollInput{Old: old("a"), NewReady: 4, Floor: 4, Surge: 1}, RollStep{Drain: []string{"a"}}},
		{"surge 2: two start at once",
			RollInput{Old: old("a", "b", "c", "d"), Floor: 4, Surge: 2}, RollStep{Start: 2}},
		{"surge 2, both ready: drain 2, start 2",
			RollInput{Old: old("a", "b", "c", "d"), NewReady: 2, Floor: 4, Surge: 2}, RollStep{Start: 2, Drain: []string{"d", "c"}}},
		{"surge larger than the old ones: one new per old one",
			RollInput{Old: old("a", "b"), Floor: 2, Surge: 10}, RollStep{Start: 2}},
		{"surge 0 counts as 1", RollInput{Old: old("a"), Floor: 1}, RollStep{Start: 1}},
		{"desired above the floor raises the bar: ready 5 of 6, drain none, keep starting",
			RollInput{Old: old("a", "b", "c", "d"), NewReady: 1, Floor: 4, Desired: 6, Surge: 1}, RollStep{Start: 1}},
		{"the autoscaler's starts use the surge too",
			RollInput{Old: old("a", "b", "c", "d"), NewStarting: 2, Floor: 4, Desired: 6, Surge: 2}, RollStep{}},
		{"a pool grown during the deploy drains every old one at once",
			RollInput{Old: old("a", "b", "c", "d"), NewReady: 10, Floor: 4, Desired: 8, Surge: 3}, RollStep{Drain: []string{"d", "c", "b", "a"}}},
		{"a pool above floor and desired drains its surplus first, then starts for the rest",
			RollInput{Old: old("a", "b", "c", "d"), Floor: 2, Desired: 2, Surge: 1}, RollStep{Start: 1, Drain: []string{"d", "c"}}},
		{"below the floor (one old died): drains nothing, still starts",
			RollInput{Old: old("a", "b", "c"), NewReady: 0, Floor: 4, Surge: 1}, RollStep{Start: 1}},
		{"drain order: fewest connections, then fewest in flight, then newest", RollInput{Old: []Candidate{
			{ID: "ws", ReadySince: ago(time.Minute), Conns: 30, Stale: true},
			{ID: "busy", ReadySince: ago(time.Minute), Inflight: 4, Stale: true},
			{ID: "calm-old", ReadySince: ago(time.Hour), Stale: true},
			{ID: "calm-new", ReadySince: ago(time.Minute), Stale: true},
		}, NewReady: 3, Floor: 4, Surge: 1}, RollStep{Drain: []string{"calm-new", "calm-old", "busy"}, Start: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in.Old)
			got := Roll(tt.in)
			if got.Start != tt.want.Start || got.Done != tt.want.Done || !slices.Equal(got.Drain, tt.want.Drain) {
				t.Fatalf("Roll(%+v)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
			if !slices.Equal(in, tt.in.Old) {
				t.Fatal("Roll reordered its input")
			}
		})
	}
}

// rollPool plays a deploy poll by poll against a pool where a started
// container is ready boot polls later and a drained one leaves at once,
// and checks Roll's invariants at every step. It returns the rows of the
// doc comment's table ("old new-ready new-starting → drain start").
func rollPool(t *testing.T, old, floor, desired, surge, boot int) []string {
	t.Helper()
	in := RollInput{Floor: floor, Desired: desired, Surge: surge}
	for i := range old {
		in.Old = append(in.Old, Candidate{ID: fmt.Sprint("old", i), ReadySince: ago(time.Duration(i+1) * time.Minute), Stale: true})
	}
	var booting []int // polls left before each starting one is ready
	var rows []string
	keep := max(floor, desired)
	for poll := 0; ; poll++ {
		if poll > 4*old*(boot+1)+4 {
			t.Fatalf("deploy did not finish: %v", rows)
		}
		for i := 0; i < len(booting); i++ {
			if booting[i]--; booting[i] == 0 {
				booting = slices.Delete(booting, i, i+1)
				i--
				in.NewReady++
			}
		}
		in.NewStarting = len(booting)
		step := Roll(in)
		row := fmt.Sprintf("%d %d %d", len(in.Old), in.NewReady, in.NewStarting)
		if step.Done {
			rows = append(rows, row+" done")
			if in.NewReady < keep {
				t.Errorf("done with %d new ready, want at least %d", in.NewReady, keep)
			}
			return rows
		}
		rows = append(rows, fmt.Sprintf("%s → %d %d", row, len(step.Drain), step.Start))
		before := len(in.Old) + in.NewReady
		in.Old = slices.DeleteFunc(in.Old, func(k Candidate) bool { return slices.Contains(step.Drain, k.ID) })
		if after := len(in.Old) + in.NewReady; after < min(keep, before) {
			t.Errorf("%s: ready %d after the drains, below %d", row, after, min(keep, before))
		}
		if n := in.NewStarting + step.Start; n > max(surge, 1) || n > len(in.Old) && step.Start > 0 {
			t.Errorf("%s: %d starting after the step, surge %d, %d old left", row, n, surge, len(in.Old))
		}
		for range step.Start {
			booting = append(booting, boot)
		}
	}
}

func TestRollToCompletion(t *testing.T) {
	// The doc comment's example, row for row.
	got := rollPool(t, 4, 4, 2, 1, 2)
	want := []string{
		"4 0 0 → 0 1", "4 0 1 → 0 0", "4 1 0 → 1 1", "3 1 1 → 0 0", "3 2 0 → 1 1",
		"2 2 1 → 0 0", "2 3 0 → 1 1", "1 3 1 → 0 0", "1 4 0 → 1 0", "0 4 0 done",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("4 old, floor 4, surge 1:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Surge 2: two rounds of cold starts instead of four.
	got = rollPool(t, 4, 4, 0, 2, 2)
	want = []string{"4 0 0 → 0 2", "4 0 2 → 0 0", "4 2 0 → 2 2", "2 2 2 → 0 0", "2 4 0 → 2 0", "0 4 0 done"}
	if !slices.Equal(got, want) {
		t.Fatalf("4 old, floor 4, surge 2:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The invariants over a spread of shapes, slow boots included.
	for _, c := range []struct{ old, floor, desired, surge, boot int }{
		{1, 1, 0, 1, 1}, {10, 10, 10, 3, 4}, {10, 6, 12, 2, 2}, {7, 3, 3, 1, 3}, {5, 5, 5, 10, 1}, {3, 0, 0, 1, 2},
	} {
		t.Run(fmt.Sprintf("%+v", c), func(t *testing.T) { rollPool(t, c.old, c.floor, c.desired, c.surge, c.boot) })
	}
}

func TestSurgeOf(t *testing.T) {
	for _, tt := range []struct {
		pool    int
		percent float64
		want    int
	}{
		{10, 25, 3}, {4, 25, 1}, {3, 0, 1}, {10, 10, 1}, {100, 10, 10}, {1000, 2.5, 25},
		{0, 25, 1}, {3, -10, 1}, {7, math.NaN(), 1}, {4, 100, 4}, {4, 400, 4}, {4, math.Inf(1), 4},
	} {
		if got := SurgeOf(tt.pool, tt.percent); got != tt.want {
			t.Errorf("SurgeOf(%d, %v) = %d, want %d", tt.pool, tt.percent, got, tt.want)
		}
	}
}

func TestCanary(t *testing.T) {
	st := func(served, failures int64, mean time.Duration) CanaryStats {
		return CanaryStats{Served: served, Failures: failures, Busy: mean * time.Duration(served)}
	}
	base := CanaryInput{MinRequests: 40, MaxWait: 2 * time.Minute, MaxErrorRate: 0.05, MaxLatency: 2, Elapsed: 30 * time.Second}
	with := func(c, b CanaryStats, f ...func(*CanaryInput)) CanaryInput {
		in := base
		in.Canary, in.Baseline = c, b
		for _, g := range f {
			g(&in)
		}
		return in
	}
	late := func(in *CanaryInput) { in.Elapsed = 2 * time.Minute }
	for _, tt := range []struct {
		name   string
		in     CanaryInput
		want   CanaryOutcome
		reason string
	}{
		{"too few requests yet: wait", with(st(12, 0, 50*ms), st(400, 0, 50*ms)),
			CanaryWait, "canary served 12 of 40 requests in 30s; waiting up to 1m30s more"},
		{"failing far more than the old ones: fail",
			with(st(40, 12, 50*ms), st(400, 0, 50*ms)),
			CanaryFail, "canary failed 12 of 40 requests (30%) against 0% on the old containers"},
		{"a little more than the old ones, within the allowance: pass",
			with(st(40, 1, 50*ms), st(400, 10, 50*ms)),
			CanaryPass, "canary failed 1 of 40 requests (2.5%) against 2.5% on the old containers; mean service time 50ms against 50ms"},
		{"everything failing: the old ones too (a database down) is not the release's fault",
			with(st(40, 40, 5*ms), st(400, 400, 5*ms)), CanaryPass, ""},
		{"failing every request fails early, before MinRequests",
			with(st(5, 5, ms), st(100, 0, 50*ms), func(in *CanaryInput) { in.Elapsed = 2 * time.Second }),
			CanaryFail, "canary failed 5 of 5 requests (100%) against 0% on the old containers"},
		{"four failures are not yet enough evidence to fail early",
			with(st(4, 4, ms), st(100, 0, 50*ms)), CanaryWait, ""},
		{"five failures within the allowance do not fail early",
			with(st(30, 5, 50*ms), st(300, 40, 50*ms)), CanaryWait, ""},
		{"max wait: judged on the few it has",
			with(st(3, 2, 50*ms), st(30, 0, 50*ms), late),
			CanaryFail, "canary failed 2 of 3 requests (66.7%) against 0% on the old containers"},
		{"max wait, a few good requests: pass", with(st(3, 0, 50*ms), st(30, 0, 50*ms), late), CanaryPass, ""},
		{"max wait, no traffic at all: the health check alone",
			with(st(0, 0, 0), st(0, 0, 0), late),
			CanaryPass, "canary served no requests in 2m0s; passed on its health check alone"},
		{"twice as slow and more: fail",
			with(st(40, 0, 120*ms), st(400, 0, 50*ms)),
			CanaryFail, "canary's mean service time 120ms is 2.4× the old containers' 50ms (allowed 2×)"},
		{"exactly the allowed ratio: pass", with(st(40, 0, 100*ms), st(400, 0, 50*ms)), CanaryPass, ""},
		{"under the floor: noise, not compared", with(st(40, 0, 3*ms), st(400, 0, ms)), CanaryPass, ""},
		{"baseline under the floor counts as the floor",
			with(st(40, 0, 12*ms), st(400, 0, ms)),
			CanaryFail, "canary's mean service time 12ms is 2.4× the 5ms floor the old containers' 1ms counts as (allowed 2×)"},
		{"no baseline traffic: latency not compared",
			with(st(40, 0, 900*ms), st(0, 0, 0)),
			CanaryPass, "canary failed 0 of 40 requests (0%) against 0% on the old containers; mean service time 900ms"},
		{"MaxLatency 0: latency not judged", with(st(40, 0, 900*ms), st(400, 0, 50*ms), func(in *CanaryInput) { in.MaxLatency = 0 }), CanaryPass, ""},
		{"MinRequests 0: judged at once", with(st(1, 0, 50*ms), st(1, 0, 50*ms), func(in *CanaryInput) { in.MinRequests = 0 }), CanaryPass, ""},
		{"negative deltas (a restarted balancer) read as none",
			with(CanaryStats{Served: -5, Failures: -5}, st(10, 0, 50*ms), late), CanaryPass, ""},
		{"more failures than served (counters read apart) are capped",
			with(CanaryStats{Served: 40, Failures: 60, Busy: 40 * 50 * ms}, st(400, 0, 50*ms)),
			CanaryFail, "canary failed 40 of 40 requests (100%) against 0% on the old containers"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Canary(tt.in)
			if got.Outcome != tt.want || tt.reason != "" && got.Reason != tt.reason {
				t.Fatalf("Canary = %s %q\nwant %s %q", got.Outcome, got.Reason, tt.want, tt.reason)
			}
			if got.Reason == "" {
				t.Fatal("a verdict without a reason")
			}
		})
	}
}
