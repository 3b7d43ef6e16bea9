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
	k := countAvailable(bs)
	if k == 0 {
		return nil
	}
	if k == 1 {
		if i := nthAvailable(bs, 0); i >= 0 {
			return bs[i]
		}
		return nil
	}
	d := draw{src: p.src}
	x := d.intn(k)
	y := d.intn(k - 1)
	if y >= x {
		y++
	}
	i, j := nthAvailable(bs, x), nthAvailable(bs, y)
	switch {
	case i < 0:
		return nil // everything became unavailable since the count
	case i == j || j < 0:
		return bs[i]
	}
	// On a tie keep the first draw, itself uniformly random.
	if bs[j].Inflight() < bs[i].Inflight() {
		return bs[j]
	}
	return bs[i]
}
