package policy

import (
	"math/rand/v2"
	"net/http"

	"lbscale/balancer/pool"
)

// LeastConnections picks the available backend with the fewest requests in
// flight cluster-wide: this balancer's exact count plus the other balancers'
// as of the last sync (Backend.Inflight). It counts requests, not TCP
// connections: with keep-alive one connection carries many requests over
// time, and what loads a web server is the requests it is working on.
//
// Ties are broken by reservoir sampling. Taking the first would, when idle,
// send every balancer's next request to the same backend.
type LeastConnections struct {
	src *lockedSource
}

// NewLeastConnections returns a least-connections policy breaking ties with
// src (see NewRandom).
func NewLeastConnections(src rand.Source) *LeastConnections {
	return &LeastConnections{src: newLockedSource(src)}
}

// Pick returns an available backend with the lowest Inflight.
func (p *LeastConnections) Pick(set *pool.Set, _ http.ResponseWriter, _ *http.Request) *pool.Backend {
	d := draw{src: p.src}
	if i := leastConn(set.Backends, &d); i >= 0 {
		return set.Backends[i]
	}
	return nil
}

// leastConn is the index of an available backend with the lowest Inflight,
// uniformly among ties, or -1. Randomness is drawn only on a tie.
func leastConn(bs []*pool.Backend, d *draw) int {
	best, ties := -1, 0
	var least int64
	for i, b := range bs {
		if !b.Available() {
			continue
		}
		switch n := b.Inflight(); {
		case best < 0 || n < least:
			best, least, ties = i, n, 1
		case n == least:
			ties++
			if d.intn(ties) == 0 {
				best = i
			}
		}
	}
	return best
}
