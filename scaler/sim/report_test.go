package sim

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// TestReport prints the comparison docs quote, as a markdown table: every
// trace under every policy, spaced and Poisson, at 10 and 100 containers
// for 2 hours and at 1,000 for 4 hours. It runs only with SIM_REPORT=1
// (a minute or two on two cores):
//
//	SIM_REPORT=1 go test -count=1 -v -run '^TestReport$' -timeout 30m ./scaler/sim
func TestReport(t *testing.T) {
	if os.Getenv("SIM_REPORT") != "1" {
		t.Skip("set SIM_REPORT=1 to print the report")
	}
	start := time.Now()
	var jobs []job
	for _, sc := range []struct {
		n int
		d time.Duration
	}{{10, 2 * time.Hour}, {100, 2 * time.Hour}, {1000, 4 * time.Hour}} {
		for _, poisson := range []bool{false, true} {
			cfg := scaled(sc.n, poisson)
			peak := PeakRate(sc.n, cfg.Target, cfg.Service)
			for _, tr := range traces {
				for _, p := range policies {
					jobs = append(jobs, job{cfg, p.make, tr(peak, sc.d)})
				}
			}
		}
	}
	rs := runAll(jobs)
	c := Default()
	fmt.Printf("\nS = %v, target = capacity = %d, cold start %v, POLL_INTERVAL %v, SCALE_DOWN_INTERVAL %v, "+
		"STABLE_WINDOW %v, PANIC_WINDOW %v, MAX_SCALE_DOWN_RATE %g, BACKLOG_DRAIN %v, IDLE_TIMEOUT %v, "+
		"SCALE_UP_COOLDOWN %v, DRAIN_SETTLE %v, QUEUE_TIMEOUT %v, MAX_REPLICAS 2 × scale + 10, step %v, "+
		"p99 steady excludes %v after a >10%% change of rate; KPA at target utilisation 1.0.\n\n",
		c.Service, c.Target, c.ColdStart, c.Poll, c.ScaleDownEvery, c.Stable, c.Panic, c.Rate, c.BacklogDrain,
		c.IdleTimeout, c.Cooldown, c.DrainSettle, c.QueueTimeout, c.Step, c.Transient)
	if err := WriteTable(os.Stdout, rs); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("\n%d runs in %v\n", len(rs), time.Since(start).Round(time.Second))
}

// TestReportVariants prints the settings that answer the report's misses,
// at 100 containers for 2 hours (SIM_REPORT=1): 25% headroom per
// container (MAX_INFLIGHT 5, TARGET_INFLIGHT 4) under Poisson arrivals,
// and a stable window sized to the bursts (STABLE_WINDOW 20 s,
// PANIC_WINDOW 2 s).
func TestReportVariants(t *testing.T) {
	if os.Getenv("SIM_REPORT") != "1" {
		t.Skip("set SIM_REPORT=1 to print the report")
	}
	const n = 100
	d := 2 * time.Hour
	var jobs []job
	var names []string
	for _, poisson := range []bool{false, true} {
		head := scaled(n, poisson)
		head.Capacity = head.Target + 1
		short := scaled(n, poisson)
		short.Stable, short.Panic = 20*time.Second, 2*time.Second
		peak := PeakRate(n, head.Target, head.Service)
		for _, tr := range traces {
			for _, p := range policies {
				jobs = append(jobs, job{head, p.make, tr(peak, d)})
				names = append(names, "MAX_INFLIGHT 5, TARGET 4")
			}
		}
		for _, p := range policies {
			jobs = append(jobs, job{short, p.make, Bursts(peak, d)})
			names = append(names, "STABLE_WINDOW 20s, PANIC_WINDOW 2s")
		}
	}
	rs := runAll(jobs)
	for i := range rs {
		rs[i].Policy = rs[i].Policy + " (" + names[i] + ")"
	}
	fmt.Println()
	if err := WriteTable(os.Stdout, rs); err != nil {
		t.Fatal(err)
	}
}
