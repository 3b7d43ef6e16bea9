package decide

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// RollInput is the snapshot one step of a rolling deploy reads: the pool's
// members split by image, and the counts the deploy must not undercut.
type RollInput struct {
	// Old are the ready members on an image other than the target, not
	// draining (draining ones are leaving already and are not counted
	// again).
	Old []Candidate
	// NewReady and NewStarting count the members on the target image by
	// phase, whoever started them: a container the autoscaler starts during
	// the deploy runs the target image too, and replaces an old one as well
	// as one the deploy started.
	NewReady, NewStarting int
	// Floor is the ready count the pool had when the deploy began: a deploy
	// never leaves fewer ready, so it costs no capacity the load had.
	Floor int
	// Desired is the autoscaler's current count: a load that grew during the
	// deploy raises the bar the same way.
	Desired int
	// Surge is the most new containers starting at once (SurgeOf); below 1
	// counts as 1, or the deploy would never start anything.
	Surge int
}

// RollStep is what a rolling deploy does at one poll.
type RollStep struct {
	// Start this many containers on the target image now.
	Start int
	// Drain these old containers now, cheapest first (byDrainCost).
	Drain []string
	// Done: no old container is left ready; the deploy has nothing more to
	// replace (the ones it drained finish draining on their own).
	Done bool
}

// Roll is the step of a rolling deploy the controller takes at each poll.
// It is a function of the pool as it is now, not of the deploy's history,
// so a leader that takes over mid-deploy (or a poll that repeats) computes
// the same step from the same pool: each step is idempotent.
//
// Two invariants hold after every step, with keep = max(Floor, Desired):
//
//   - Ready containers (old ones plus new ready ones; starting ones do not
//     count, since they serve nothing yet) never fall below keep through a
//     drain: at most len(Old) + NewReady − keep old ones drain, never more
//     than len(Old). A pool already below keep drains nothing.
//   - Every new container starting is matched by one old container still
//     serving after this step's drains, and no more than Surge start at
//     once: NewStarting + Start ≤ min(Surge, len(Old) − drained). So the
//     deploy adds at most Surge containers above what serves, and never
//     starts a replacement for an old container that is already gone.
//
// Together they make progress: while old containers are left after the
// drains and nothing new is starting, at least one starts; once it is
// ready, the ready count exceeds keep by one and an old one drains. The
// deploy therefore takes about ceil(len(Old) / Surge) cold starts. The
// surge sits above MAX_REPLICAS when the pool is at it (as Kubernetes'
// maxSurge does): a pool at its maximum could not roll otherwise without
// dropping below keep.
//
// E.g. 4 old, Floor 4, Desired 2, Surge 1 (keep 4):
//
//	old  new ready  new starting   →  drain  start
//	4    0          0                 0      1      ready 4 = keep
//	4    0          1                 0      0      booting
//	4    1          0                 1      1      ready 5: one old may go
//	3    1          1                 0      0      booting
//	3    2          0                 1      1
//	2    2          1                 0      0
//	2    3          0                 1      1
//	1    3          1                 0      0
//	1    4          0                 1      0      no old left to match
//	0    4          0                 done
//
// With Surge 2 the same deploy starts 2, drains 2 and starts 2, drains 2:
// two cold starts instead of four. With NewReady 10 (the autoscaler grew
// the pool during the deploy) all 4 old drain at once and nothing starts.
func Roll(in RollInput) RollStep {
	if len(in.Old) == 0 {
		return RollStep{Done: true}
	}
	keep := max(in.Floor, in.Desired)
	ready := len(in.Old) + max(in.NewReady, 0)
	n := min(len(in.Old), max(ready-keep, 0))
	var step RollStep
	if n > 0 {
		c := slices.Clone(in.Old)
		slices.SortFunc(c, byDrainCost)
		step.Drain = make([]string, 0, n)
		for _, k := range c[:n] {
			step.Drain = append(step.Drain, k.ID)
		}
	}
	starting := max(in.NewStarting, 0)
	step.Start = max(0, min(max(in.Surge, 1)-starting, len(in.Old)-n-starting))
	return step
}

// SurgeOf is the surge of a deploy of a pool of pool containers at percent
// of it (DEPLOY_SURGE): ceil(pool × percent / 100), at least 1 so that a
// small pool, or a percentage of 0, still rolls, and at most the pool
// (Roll starts no more than one new container per old one anyway).
//
// E.g. 10 at 25%: 3. 4 at 25%: 1. 3 at 0%: 1. 10 at 10%: 1 (float error
// in 10 × 10 / 100 does not round up to 2). 4 at 400%: 4.
func SurgeOf(pool int, percent float64) int {
	n := math.Ceil(float64(max(pool, 0))*percent/100 - 1e-9)
	if math.IsNaN(n) || n < 1 {
		return 1
	}
	if n > float64(max(pool, 1)) {
		// More than the pool at once is no faster: each new one replaces
		// one old one.
		return max(pool, 1)
	}
	return int(n)
}

// CanaryLatencyFloor is the mean service time below which latency is not
// compared: at a few milliseconds, a ratio measures scheduling noise and
// cold caches rather than a slower release (1 ms against 3 ms is "3×").
// The baseline is taken as at least this, so a canary is judged slow only
// once it is slower than MaxLatency × max(baseline, floor).
const CanaryLatencyFloor = 5 * time.Millisecond

// canaryEarlyFailures is the fewest failures that fail a canary before it
// has served MinRequests: enough that a broken release (every request
// failing) is stopped within a few requests, not so few that one unlucky
// request decides.
const canaryEarlyFailures = 5

// CanaryStats are one side's counts since the canary became ready (deltas
// of the balancers' counters).
type CanaryStats struct {
	// Served are the requests answered, failed ones included.
	Served int64
	// Failures are the served requests that failed (5xx, reset, time-out).
	Failures int64
	// Busy is the summed service time of the Served requests.
	Busy time.Duration
}

// CanaryInput is what a canary verdict reads.
type CanaryInput struct {
	// Canary is the new container's traffic; Baseline the old containers'
	// over the same time, so that a load that fails or slows everything
	// (a database down) is not blamed on the release.
	Canary, Baseline CanaryStats
	// Elapsed is the time since the canary became ready.
	Elapsed time.Duration
	// MinRequests is what the canary must serve before it is judged;
	// MaxWait how long to wait for them (then it is judged on what it has).
	MinRequests int
	MaxWait     time.Duration
	// MaxErrorRate is the allowed excess of the canary's failure share over
	// the baseline's (0.05: five points more).
	MaxErrorRate float64
	// MaxLatency is the allowed ratio of the canary's mean service time to
	// the baseline's (2: twice as slow); 0 or less: latency is not judged.
	MaxLatency float64
}

// CanaryOutcome is a canary verdict's decision.
type CanaryOutcome string

// Canary outcomes.
const (
	// CanaryWait: not enough traffic yet; ask again at the next poll.
	CanaryWait CanaryOutcome = "wait"
	// CanaryPass: the deploy may roll the rest of the pool.
	CanaryPass CanaryOutcome = "pass"
	// CanaryFail: roll back (drain the canary, keep the old image).
	CanaryFail CanaryOutcome = "fail"
)

// CanaryVerdict is a canary's outcome and why, in words an operator reads
// in the event log.
type CanaryVerdict struct {
	Outcome CanaryOutcome
	Reason  string
}

// Canary judges a deploy's first container against the old ones.
//
// It decides once the canary has served MinRequests, or once MaxWait has
// elapsed, then on what it has: a canary that got no traffic at all passes
// on its health check alone (a pool idle at night can still deploy), and a
// few requests are still judged. A canary that fails most of what it gets
// does not wait for MinRequests: at canaryEarlyFailures failures and a
// share above the allowed one it fails at once, so a broken release hurts
// a handful of requests, not MinRequests × its share.
//
// The judgement: it fails if its failure share exceeds the baseline's by
// more than MaxErrorRate, or if its mean service time exceeds MaxLatency ×
// the baseline's (the baseline taken as at least CanaryLatencyFloor; with
// no baseline traffic, latency is not compared).
//
// E.g. MinRequests 40, MaxErrorRate 0.05: 12 of 40 failed against 0 of 400
// on the old containers: fail (30% > 0% + 5%). 1 of 40 against 10 of 400:
// pass (2.5% ≤ 2.5% + 5%). 5 of 6 failed after 2 s: fail, before the 40.
// Means 120 ms against 50 ms at MaxLatency 2: fail (2.4×); 3 ms against
// 1 ms: pass (under the floor).
func Canary(in CanaryInput) CanaryVerdict {
	c, b := in.Canary.clean(), in.Baseline.clean()
	allowed := b.share() + in.MaxErrorRate
	if c.Failures >= canaryEarlyFailures && c.share() > allowed {
		return CanaryVerdict{CanaryFail, failReason(c, b)}
	}
	if c.Served < int64(in.MinRequests) && in.Elapsed < in.MaxWait {
		return CanaryVerdict{CanaryWait, fmt.Sprintf("canary served %d of %d requests in %s; waiting up to %s more",
			c.Served, in.MinRequests, in.Elapsed.Round(time.Second), (in.MaxWait - in.Elapsed).Round(time.Second))}
	}
	if c.Served == 0 {
		return CanaryVerdict{CanaryPass, fmt.Sprintf("canary served no requests in %s; passed on its health check alone",
			in.Elapsed.Round(time.Second))}
	}
	if c.share() > allowed {
		return CanaryVerdict{CanaryFail, failReason(c, b)}
	}
	cm := c.mean()
	if b.Served > 0 && in.MaxLatency > 0 {
		bm := b.mean()
		if base := max(bm, CanaryLatencyFloor); cm > CanaryLatencyFloor && float64(cm) > in.MaxLatency*float64(base) {
			if bm < CanaryLatencyFloor {
				return CanaryVerdict{CanaryFail, fmt.Sprintf("canary's mean service time %s is %s× the %s floor the old containers' %s counts as (allowed %s×)",
					roundMean(cm), ratio(float64(cm)/float64(base)), CanaryLatencyFloor, roundMean(bm), ratio(in.MaxLatency))}
			}
			return CanaryVerdict{CanaryFail, fmt.Sprintf("canary's mean service time %s is %s× the old containers' %s (allowed %s×)",
				roundMean(cm), ratio(float64(cm)/float64(base)), roundMean(bm), ratio(in.MaxLatency))}
		}
		return CanaryVerdict{CanaryPass, fmt.Sprintf("canary failed %d of %d requests (%s) against %s on the old containers; mean service time %s against %s",
			c.Failures, c.Served, pct(c.share()), pct(b.share()), roundMean(cm), roundMean(bm))}
	}
	return CanaryVerdict{CanaryPass, fmt.Sprintf("canary failed %d of %d requests (%s) against %s on the old containers; mean service time %s",
		c.Failures, c.Served, pct(c.share()), pct(b.share()), roundMean(cm))}
}

// clean clamps counter deltas a restart or clock skew made negative, and
// failures to what was served.
func (s CanaryStats) clean() CanaryStats {
	s.Served = max(s.Served, 0)
	s.Failures = min(max(s.Failures, 0), s.Served)
	s.Busy = max(s.Busy, 0)
	return s
}

// share is the failed share of served requests (0 with none served).
func (s CanaryStats) share() float64 {
	if s.Served == 0 {
		return 0
	}
	return float64(s.Failures) / float64(s.Served)
}

// mean is the mean service time (0 with none served).
func (s CanaryStats) mean() time.Duration {
	if s.Served == 0 {
		return 0
	}
	return s.Busy / time.Duration(s.Served)
}

func failReason(c, b CanaryStats) string {
	return fmt.Sprintf("canary failed %d of %d requests (%s) against %s on the old containers",
		c.Failures, c.Served, pct(c.share()), pct(b.share()))
}

// pct formats a share as a percentage with at most one decimal: "30%",
// "2.5%".
func pct(x float64) string {
	return strconv.FormatFloat(math.Round(x*1000)/10, 'f', -1, 64) + "%"
}

// ratio formats a ratio with at most one decimal: "2", "2.4".
func ratio(x float64) string {
	return strconv.FormatFloat(math.Round(x*10)/10, 'f', -1, 64)
}

// roundMean rounds a mean service time for reading: 120ms, 1.5ms, 2.3s.
func roundMean(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond)
	default:
		return d.Round(100 * time.Microsecond)
	}
}
