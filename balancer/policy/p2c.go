package policy

import (
	"math/rand/v2"
	"net/http"

	"lbscale/balancer/pool"
)

// P2C is the power of two random choices: draw two distinct available
// backends and take the one with fewer requests in flight (Inflight,
// cluster-wide). Unlike least-connections it does not send every balancer to
// the same minimum when their counts are a sync interval old, yet it almost
// never picks a busy backend: the worst one is picked only on a tie.
type P2C struct {
	src *lockedSource
}

// NewP2C returns a power-of-two-choices policy drawing from src (see
// NewRandom).
func NewP2C(src rand.Source) *P2C { return &P2C{src: newLockedSource(src)} }

// Pick returns the less busy of two random available backends.
func (p *P2C) Pick(set *pool.Set, _ http.ResponseWriter, _ *http.Request) *pool.Backend {
	bs := set.Backends
	if len(bs) == 0 {
		return nil
	}
	d := draw{src: p.src}
	i := pickAvailable(&d, bs, -1)
	if i < 0 {
		return nil
	}
	j := pickAvailable(&d, bs, i)
	if j < 0 {
		return bs[i] // the only available backend
	}
	// On a tie keep the first draw, itself uniformly random.
	if bs[j].Inflight() < bs[i].Inflight() {
		return bs[j]
	}
	return bs[i]
}
