package policy

import (
	"net/http"
	"sync"

	"lbscale/balancer/pool"
)

// WeightedRoundRobin is nginx's smooth weighted round robin over
// Backend.Weight: each pick adds every available backend's weight to its
// current value, takes the largest, and subtracts the total from it. Weights
// {5,1,1} give a a b a c a a rather than a a a a a b c, so a heavy backend
// never receives a burst. Unavailable backends are skipped and their current
// value frozen. The zero value is ready to use.
type WeightedRoundRobin struct {
	states perSet[wrrState]
}

// wrrState holds the current values for one set. The lock guards a loop of
// additions over at most a few dozen backends: no I/O, no allocation.
type wrrState struct {
	mu      sync.Mutex
	current []int64
}

// NewWeightedRoundRobin returns a smooth weighted round-robin policy.
func NewWeightedRoundRobin() *WeightedRoundRobin { return &WeightedRoundRobin{} }

// Pick returns the available backend whose smooth weight is due.
func (p *WeightedRoundRobin) Pick(set *pool.Set, _ http.ResponseWriter, _ *http.Request) *pool.Backend {
	bs := set.Backends
	st := p.states.get(set)
	if st == nil {
		st = p.states.build(set, func(set *pool.Set, s *wrrState) { s.current = make([]int64, len(set.Backends)) })
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	var total int64
	best := -1
	for i, b := range bs {
		if !b.Available() {
			continue
		}
		w := int64(b.Weight)
		st.current[i] += w
		total += w
		if best < 0 || st.current[i] > st.current[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	st.current[best] -= total
	return bs[best]
}
