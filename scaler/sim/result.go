package sim

import (
	"fmt"
	"io"
	"time"
)

// Result is one run's figures.
type Result struct {
	Trace, Policy string
	// Arrivals is "poisson" or "spaced".
	Arrivals string
	// Scale is the most containers the trace needs at once (its ideal
	// peak).
	Scale    int
	Duration time.Duration
	// ContainerSeconds counts every container that existed (starting,
	// ready, draining, stopping); IdealSeconds what the trace needed (see
	// the package doc); Ratio is the first over the second.
	ContainerSeconds, IdealSeconds, Ratio float64
	// P50 and P99 are latencies (wait + service) of all served requests;
	// SteadyP99 leaves out those that arrived in a transient (see Model).
	// Their resolution is the step.
	P50, P99, SteadyP99 time.Duration
	// Offered requests arrived; Served were started on a container;
	// TimedOut waited past QUEUE_TIMEOUT; Refused found the queue full.
	Offered, Served, TimedOut, Refused int64
	// Started, Reclaimed and Drained count containers; Flaps counts
	// scale-ups within STABLE_WINDOW of a scale-down (decide.Flap).
	Started, Reclaimed, Drained, Flaps int
	// PeakReplicas is the most containers that existed at once.
	PeakReplicas int
	// PeakQueued is the longest queue; MeanInflight and MeanQueued are
	// time averages.
	PeakQueued               int64
	MeanInflight, MeanQueued float64
}

// Failed is the requests that got an error: timed out or refused.
func (r Result) Failed() int64 { return r.TimedOut + r.Refused }

// Events is the scale events: containers started, reclaimed and drained.
func (r Result) Events() int { return r.Started + r.Reclaimed + r.Drained }

// WriteTable writes rs as a markdown table, one row per run.
func WriteTable(w io.Writer, rs []Result) error {
	if _, err := fmt.Fprintln(w, "| trace | arrivals | scale | hours | policy | container-s | ideal | ratio | p50 | p99 | p99 steady | failed | started | reclaimed | drained | flaps | peak replicas | peak queue |"); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w, "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"); err != nil {
		return err
	}
	for _, r := range rs {
		_, err := fmt.Fprintf(w, "| %s | %s | %d | %g | %s | %.0f | %.0f | %.3f | %s | %s | %s | %d | %d | %d | %d | %d | %d | %d |\n",
			r.Trace, r.Arrivals, r.Scale, r.Duration.Hours(), r.Policy, r.ContainerSeconds, r.IdealSeconds, r.Ratio,
			millis(r.P50), millis(r.P99), millis(r.SteadyP99), r.Failed(), r.Started, r.Reclaimed, r.Drained, r.Flaps,
			r.PeakReplicas, r.PeakQueued)
		if err != nil {
			return err
		}
	}
	return nil
}

func millis(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }
