package proxy

import "sync/atomic"

// RetryBudget bounds retries to a share of the requests in flight, as
// Envoy's retry budget does: when a whole pool fails, every request would
// otherwise come back for a second attempt and double the load on backends
// that are already failing. A small floor (MinConcurrency, Envoy's
// min_retry_concurrency) still lets a lightly loaded balancer retry.
//
// The zero value allows no retries; NewRetryBudget sets the limits.
type RetryBudget struct {
	percent        float64
	minConcurrency int64

	active   atomic.Int64 // requests placed on a backend and not finished
	retrying atomic.Int64 // retries in progress
	retried  [retryReasons]atomic.Uint64
	refused  atomic.Uint64
}

// RetryReason is the failure that made the proxy retry an attempt on
// another backend. Its String labels lbscale_balancer_retries_total and
// the keys of /status retries_by_reason.
type RetryReason uint8

const (
	// RetryConnect: the backend could not be connected to.
	RetryConnect RetryReason = iota
	// RetryTimeout: no response headers within UPSTREAM_TIMEOUT, the
	// per-try timeout.
	RetryTimeout
	// RetryReset: the connection broke (reset, closed) before an answer.
	RetryReset
	// RetryStatus: the backend answered a status listed in RETRY_ON.
	RetryStatus
	retryReasons
)

var retryReasonNames = [retryReasons]string{"connect", "timeout", "reset", "status"}

func (r RetryReason) String() string { return retryReasonNames[r] }

// NewRetryBudget allows, at any moment, retries in progress up to percent
// of the requests in flight, and at least minConcurrency.
// RETRY_BUDGET_PERCENT and RETRY_MIN_CONCURRENCY.
func NewRetryBudget(percent float64, minConcurrency int) *RetryBudget {
	return &RetryBudget{percent: percent, minConcurrency: int64(minConcurrency)}
}

// RetryLimit is how many retries may be in progress with active requests in
// flight: percent of active, rounded down, and at least minConcurrency.
// E.g. 20%: 100 in flight allow 20 retries at once, 9 in flight allow 1,
// but with the floor of 3, 3.
func RetryLimit(active int64, percent float64, minConcurrency int64) int64 {
	return max(minConcurrency, int64(float64(active)*percent/100))
}

// begin counts a request placed on a backend; end when it finished.
func (rb *RetryBudget) begin() { rb.active.Add(1) }
func (rb *RetryBudget) end()   { rb.active.Add(-1) }

// tryRetry takes a retry from the budget, or counts a refusal. The caller
// gives it back with retryDone, and calls sent if it was made.
func (rb *RetryBudget) tryRetry() bool {
	for {
		n := rb.retrying.Load()
		if n >= RetryLimit(rb.active.Load(), rb.percent, rb.minConcurrency) {
			rb.refused.Add(1)
			return false
		}
		if rb.retrying.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (rb *RetryBudget) sent(why RetryReason) { rb.retried[why].Add(1) }
func (rb *RetryBudget) retryDone()           { rb.retrying.Add(-1) }

// Stats returns the retries made and those refused for want of budget.
func (rb *RetryBudget) Stats() (retried, refused uint64) {
	for i := range rb.retried {
		retried += rb.retried[i].Load()
	}
	return retried, rb.refused.Load()
}

// Counts returns the retries made by reason (every reason present, zeros
// included, so each series exists from the start) and those refused for
// want of budget. The admin port calls it at scrape time.
func (rb *RetryBudget) Counts() (byReason map[string]uint64, refused uint64) {
	byReason = make(map[string]uint64, retryReasons)
	for i := range rb.retried {
		byReason[RetryReason(i).String()] = rb.retried[i].Load()
	}
	return byReason, rb.refused.Load()
}
