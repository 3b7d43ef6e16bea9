package policy

import (
	"net/http"
	"sync/atomic"

	"lbscale/balancer/pool"
)

// RoundRobin takes the backends in turn, skipping those not available.
// The zero value is ready to use.
type RoundRobin struct {
	next atomic.Uint64
}

// NewRoundRobin returns a round-robin policy.
func NewRoundRobin() *RoundRobin { return &RoundRobin{} }

// Pick returns the next available backend after the previous pick.
func (p *RoundRobin) Pick(set *pool.Set, _ http.ResponseWriter, _ *http.Request) *pool.Backend {
	bs := set.Backends
	n := uint64(len(bs))
	if n == 0 {
		return nil
	}
	start := p.next.Add(1) - 1
	for i := range n {
		b := bs[(start+i)%n]
		if !b.Available() {
			continue
		}
		// Move the turn past the backend we skipped to, so the one after an
		// unavailable backend does not get its share as well (a, c, a, c
		// with b down, not a, c, c, a). Best effort: if another pick moved
		// the counter meanwhile, its turn stands.
		if i > 0 {
			p.next.CompareAndSwap(start+1, start+i+1)
		}
		return b
	}
	return nil
}
