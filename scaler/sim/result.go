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
	// ColdStart is the run's cold start; Balancers how many balancers
	// split the traffic, each with its own queue.
	ColdStart time.Duration
	Balancers int
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
	// QueuedStarts counts the scale-up decisions (starts or reclaims)
	// taken while requests were queued, for demand (not to keep a
	// minimum or a floor): the scale-ups that came after the load, not
	// before it.
	QueuedStarts int
	// PanicStartsAt are the times, from the run's start, of the scale-ups
	// decided in panic (Action.Panic): the load came before the pool.
	PanicStartsAt []time.Duration
	// PeakReplicas is the most containers that existed at once.
	PeakReplicas int
	// PeakQueued is the longest queue, over every balancer; MeanInflight
	// and MeanQueued are time averages.
	PeakQueued               int64
	MeanInflight, MeanQueued float64
}

// Failed is the requests that got an error: timed out or refused.
func (r Result) Failed() int64 { return r.TimedOut + r.Refused }

// Events is the scale events: containers started, reclaimed and drained.
func (r Result) Events() int { return r.Started + r.Reclaimed + r.Drained }

// FlapsPerHour is Flaps over the run's length in hours (0 for an empty
// run).
//
// E.g. 3 flaps in a 2-hour run: 1.5 an hour.
func (r Result) FlapsPerHour() float64 {
	if h := r.Duration.Hours(); h > 0 {
		return float64(r.Flaps) / h
	}
	return 0
}

// WriteTable writes rs as a markdown table, one row per run.
func WriteTable(w io.Writer, rs []Result) error {
	if _, err := fmt.Fprintln(w, "| trace | scale | cold start | hours | policy | container-s | ideal | used÷ideal | p50 | p99 | p99 steady | failed | flaps | flaps/h | peak replicas | peak queue | queued starts |"); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(w, "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"); err != nil {
		return err
	}
	for _, r := range rs {
		_, err := fmt.Fprintf(w, "| %s | %d | %v | %g | %s | %.0f | %.0f | %.3f | %s | %s | %s | %d | %d | %.1f | %d | %d | %d |\n",
			r.Trace, r.Scale, r.ColdStart, r.Duration.Hours(), r.Policy, r.ContainerSeconds, r.IdealSeconds, r.Ratio,
			millis(r.P50), millis(r.P99), millis(r.SteadyP99), r.Failed(), r.Flaps, r.FlapsPerHour(),
			r.PeakReplicas, r.PeakQueued, r.QueuedStarts)
		if err != nil {
			return err
		}
	}
	return nil
}

func millis(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }
