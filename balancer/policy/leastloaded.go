package policy

import (
	"math/rand/v2"
	"net/http"

	"lbscale/balancer/pool"
)

// LeastLoaded picks the available backend with the lowest utilisation as the
// web server itself reports it (Backend.Load: in-flight / capacity from its
// /load endpoint, polled in the background, never fetched per request). It
// sees what in-flight counts miss: work the server queues internally and
// servers of different capacity. Its numbers are up to one poll old, so
// under bursts it is steadier with few balancers than with many. Until a
// backend is first polled, Load falls back to its in-flight ratio.
//
// Ties (common: idle servers all report 0) are broken by reservoir sampling.
type LeastLoaded struct {
	src *lockedSource
}

// NewLeastLoaded returns a least-loaded policy breaking ties with src (see
// NewRandom).
func NewLeastLoaded(src rand.Source) *LeastLoaded { return &LeastLoaded{src: newLockedSource(src)} }

// Pick returns an available backend with the lowest Load.
func (p *LeastLoaded) Pick(set *pool.Set, _ http.ResponseWriter, _ *http.Request) *pool.Backend {
	return lowest(set, draw{src: p.src}, (*pool.Backend).Load)
}

// lowest returns the available backend with the lowest score, ties broken
// by reservoir sampling with d (nil when none is available). The score is a
// method expression or a plain function, so a pick allocates nothing.
func lowest(set *pool.Set, d draw, score func(*pool.Backend) float64) *pool.Backend {
	best, ties := -1, 0
	var least float64
	for i, b := range set.Backends {
		if !b.Available() {
			continue
		}
		switch l := score(b); {
		case best < 0 || l < least:
			best, least, ties = i, l, 1
		case l == least:
			ties++
			if d.intn(ties) == 0 {
				best = i
			}
		}
	}
	if best < 0 {
		return nil
	}
	return set.Backends[best]
}
