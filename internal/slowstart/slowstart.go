// Package slowstart is the ramp a new backend's request limit follows: the
// balancers apply it, and the scaler's simulator models the same ramp.
package slowstart

import "time"

// Limit is a new backend's limit age after it turned ready: a linear ramp
// from 1 to limit over ramp, so a container that just passed its health
// check (cold caches, JIT, connection pools) is not handed a whole queue at
// once. E.g. limit 8, ramp 4s: 1 at 0s, 4 at 2s, 8 from 4s.
func Limit(limit int64, age, ramp time.Duration) int64 {
	if age >= ramp || ramp <= 0 {
		return limit
	}
	if age < 0 {
		age = 0
	}
	n := (limit*int64(age) + int64(ramp) - 1) / int64(ramp)
	return max(1, min(n, limit))
}
