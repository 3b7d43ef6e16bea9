package policy

import (
	"math/rand/v2"
	"net/http"

	"lbscale/balancer/pool"
)

// Random picks uniformly among the available backends. It keeps no state
// between picks, so with several balancers it is as good as it gets without
// sharing anything, and a baseline for the others.
type Random struct {
	src *lockedSource
}

// NewRandom returns a random policy drawing from src (a *rand.Rand or any
// math/rand/v2 Source; nil seeds one at random). Random serialises its use of
// src, which must not be used elsewhere.
func NewRandom(src rand.Source) *Random { return &Random{src: newLockedSource(src)} }

// Pick returns a uniformly random available backend.
func (p *Random) Pick(set *pool.Set, _ http.ResponseWriter, _ *http.Request) *pool.Backend {
	bs := set.Backends
	if len(bs) == 0 {
		return nil
	}
	d := draw{src: p.src}
	if i := pickAvailable(&d, bs, -1); i >= 0 {
		return bs[i]
	}
	return nil
}
