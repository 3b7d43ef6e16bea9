package sim

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"testing"
	"time"
)

// reportScales are the report's pool sizes (peak containers) and how long
// each trace runs at that size. The 1,000-container runs are an hour
// rather than two, to keep the report within minutes on two cores; every
// trace still shows each of its phases (the steps' six levels, a whole
// day, two full cycles of bursts).
var reportScales = []struct {
	n int
	d time.Duration
}{{10, 2 * time.Hour}, {100, 2 * time.Hour}, {1000, time.Hour}}

// TestReport prints the fair comparison docs quote, as a markdown table:
// every trace at 10, 100 and 1,000 containers, at cold starts of 1, 5 and
// 10 s, under ours (SCALE_DOWN=demand) and KPA, with Poisson arrivals over
// two balancers (9:1). It runs only with SIM_REPORT=1; with
// SIM_REPORT_OUT=path it also writes the table to that file:
//
//	SIM_REPORT=1 SIM_REPORT_OUT=before.md go test -count=1 -v -run '^TestReport$' -timeout 30m ./scaler/sim
func TestReport(t *testing.T) {
	if os.Getenv("SIM_REPORT") != "1" {
		t.Skip("set SIM_REPORT=1 to print the report")
	}
	start := time.Now()
	var jobs []job
	for _, sc := range reportScales {
		jobs = append(jobs, fairJobs(sc.n, sc.d)...)
	}
	rs := runAll(jobs)
	var buf bytes.Buffer
	if err := writeReport(&buf, rs); err != nil {
		t.Fatal(err)
	}
	fmt.Print("\n", buf.String())
	fmt.Printf("\n%d runs in %v\n", len(rs), time.Since(start).Round(time.Second))
	if path := os.Getenv("SIM_REPORT_OUT"); path != "" {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatalf("SIM_REPORT_OUT: %v", err)
		}
	}
}

// writeReport writes the report's settings, then its table.
func writeReport(w io.Writer, rs []Result) error {
	c := Default()
	_, err := fmt.Fprintf(w, "Poisson arrivals over %d balancers (traffic split %v, each with its own queue and slot grants, "+
		"SYNC_INTERVAL %v); S = %v, target = capacity = %d, POLL_INTERVAL %v, SCALE_DOWN_INTERVAL %v, "+
		"STABLE_WINDOW %v, PANIC_WINDOW %v, MAX_SCALE_DOWN_RATE %g, BACKLOG_DRAIN %v, IDLE_TIMEOUT %v, "+
		"SCALE_UP_COOLDOWN %v, DRAIN_SETTLE %v, QUEUE_TIMEOUT %v, MAX_REPLICAS 10 × scale + 10, step %v. "+
		"KPA at target utilisation 1.0, scraping once a second a sample of the ready pods (all up to 3, "+
		"14 of 100, 16 at scale), deciding every 2 s. Runs: 10 and 100 containers 2 h, 1,000 containers 1 h. "+
		"p99 steady excludes %v after a >10%% change of rate; queued starts are scale-up decisions taken while "+
		"requests were queued.\n\n",
		len(c.Split), c.Split, c.Sync, c.Service, c.Target, c.Poll, c.ScaleDownEvery, c.Stable, c.Panic, c.Rate,
		c.BacklogDrain, c.IdleTimeout, c.Cooldown, c.DrainSettle, c.QueueTimeout, c.Step, c.Transient)
	if err != nil {
		return err
	}
	return WriteTable(w, rs)
}
