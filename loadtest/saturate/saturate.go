// Package saturate decides the steps of a saturation search: raise the
// offered rate step by step until the target breaks its latency objective or
// its error budget, then narrow the gap between the last good and the first
// bad rate by bisection. The decision is a pure function of the steps run so
// far; running a step is the caller's job.
package saturate

import (
	"fmt"
	"time"
)

// Plan is the search's parameters.
type Plan struct {
	Start float64 // first rate, req/s (> 0)
	// Factor multiplies the rate after each good step (> 1) unless
	// Increment is set, in which case Increment is added instead. A factor
	// finds the knee of a system of unknown size in few steps; an increment
	// gives evenly spaced points for a plot.
	Factor    float64
	Increment float64
	Max       float64 // never offer more than this (0: no bound)
	// SLO is the p99 latency a step must stay within.
	SLO time.Duration
	// MaxErrors is the largest tolerated share of failed or dropped
	// requests among those offered (0.01 = 1%).
	MaxErrors float64
	// Refine is how many bisection steps to run between the last good and
	// the first bad rate once a step has failed.
	Refine int
}

// Step is the outcome of running one rate.
type Step struct {
	Rate    float64 `json:"rate"`
	Offered int64   `json:"offered"`
	OK      int64   `json:"ok"`
	Failed  int64   `json:"failed"`
	Dropped int64   `json:"dropped"`
	// Late requests left the driver more than its lateness bound after
	// their intended time: the driver, not the target, fell behind.
	Late     int64         `json:"late"`
	Achieved float64       `json:"achieved_rps"`
	P99      time.Duration `json:"-"`
	P99MS    float64       `json:"p99_ms"`
	Replicas int           `json:"replicas,omitempty"` // last sampled, if --status
	Pass     bool          `json:"pass"`
	Reason   string        `json:"reason,omitempty"` // why it failed
}

// ErrorRatio is the share of offered requests that failed or were dropped.
func (s Step) ErrorRatio() float64 {
	if s.Offered == 0 {
		return 0
	}
	return float64(s.Failed+s.Dropped) / float64(s.Offered)
}

// MaxLate is the share of late requests above which a step measures the
// load driver rather than the target: it fails, so the search never reports
// a rate the driver could not actually offer as the target's capacity.
const MaxLate = 0.01

// Judge marks s as passing or failing the plan's objectives. A step with no
// successful response fails even if it had no errors: nothing was measured.
func (p Plan) Judge(s Step) Step {
	s.P99MS = float64(s.P99) / float64(time.Millisecond)
	switch {
	case s.OK == 0:
		s.Pass, s.Reason = false, "no successful responses"
	case s.Offered > 0 && float64(s.Late)/float64(s.Offered) > MaxLate:
		s.Pass, s.Reason = false, fmt.Sprintf("driver-limited: %.1f%% of requests left late (the load driver, not the target, fell behind)", 100*float64(s.Late)/float64(s.Offered))
	case s.ErrorRatio() > p.MaxErrors:
		s.Pass, s.Reason = false, fmt.Sprintf("error ratio %.2f%% > %.2f%%", 100*s.ErrorRatio(), 100*p.MaxErrors)
	case s.P99 > p.SLO:
		s.Pass, s.Reason = false, fmt.Sprintf("p99 %v > SLO %v", s.P99.Round(time.Microsecond), p.SLO)
	default:
		s.Pass, s.Reason = true, ""
	}
	return s
}

// bounds returns the highest passing rate below the lowest failing one, and
// that failing rate (0 if none failed yet).
func bounds(steps []Step) (good, bad float64) {
	for _, s := range steps {
		if !s.Pass && (bad == 0 || s.Rate < bad) {
			bad = s.Rate
		}
	}
	for _, s := range steps {
		if s.Pass && s.Rate > good && (bad == 0 || s.Rate < bad) {
			good = s.Rate
		}
	}
	return good, bad
}

// Next returns the rate of the next step, or false when the search is over.
//
// E.g. Start 100, Factor 2, Refine 2, the target breaking at 500: steps run
// at 100, 200, 400 (good), 800 (bad), then 600 (bad), 500 (good): the answer
// is 500, within 100 of the truth, in 6 steps.
func (p Plan) Next(steps []Step) (float64, bool) {
	if len(steps) == 0 {
		return p.Start, true
	}
	good, bad := bounds(steps)
	if bad == 0 {
		last := steps[len(steps)-1].Rate
		next := last * p.Factor
		if p.Increment > 0 {
			next = last + p.Increment
		}
		if p.Max > 0 && next > p.Max {
			if last >= p.Max {
				return 0, false // good all the way to the cap
			}
			next = p.Max
		}
		return next, true
	}
	refined := 0
	failed := false
	for _, s := range steps {
		if failed {
			refined++
		}
		if !s.Pass {
			failed = true
		}
	}
	// Stop refining once the bracket is within 2% of the good rate: a step
	// is noisier than that.
	if refined >= p.Refine || bad-good <= 0.02*max(good, 1) {
		return 0, false
	}
	return (good + bad) / 2, true
}

// Result is what the search found.
type Result struct {
	// Sustainable is the highest rate that met the objectives (0 if even
	// the first step failed).
	Sustainable float64 `json:"sustainable_rps"`
	// Breaking is the lowest rate that failed (0 if none did, i.e. the
	// target kept up to Plan.Max).
	Breaking float64 `json:"breaking_rps"`
	Reason   string  `json:"reason,omitempty"` // why Breaking failed
	Steps    []Step  `json:"steps"`
}

// Conclude summarises a finished search.
func Conclude(steps []Step) Result {
	good, bad := bounds(steps)
	r := Result{Sustainable: good, Breaking: bad, Steps: steps}
	for _, s := range steps {
		if !s.Pass && s.Rate == bad {
			r.Reason = s.Reason
		}
	}
	return r
}
