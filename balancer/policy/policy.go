// Package policy holds the balancer's backend selection policies: one small
// type per file behind the Policy interface, chosen by LB_POLICY (see New and
// Names).
//
// Every Pick reads only the atomics on pool.Backend and, for the policies
// that need more (smooth weights, the hash ring, sticky cookie values), a
// structure cached per pool.Set Version and rebuilt only when the set
// changes. So a pick allocates nothing; the exceptions are the sticky policy
// when it sets its cookie and the first pick on a new set. Randomness (random,
// p2c, tie-breaks) comes from an injected math/rand/v2 Source, drawn once per
// pick at most, so tests are reproducible with a fixed seed.
package policy

import (
	"net/http"
	"time"

	"lbscale/balancer/pool"
)

// Policy picks the backend for a request.
//
// Pick returns one of set.Backends for which Available() is true, or nil when
// none is. It runs on the request path: it must not allocate, block, or do
// I/O, and must be safe for concurrent use. The proxy then takes the slot with
// TryAcquire; if another request took it first, the proxy calls Pick again, so
// a Pick need not be atomic with the acquire. w is only for policies that set
// a response header (the sticky cookie).
type Policy interface {
	Pick(set *pool.Set, w http.ResponseWriter, r *http.Request) *pool.Backend
}

// Observer is implemented by policies that learn from responses (the
// least-latency policy). The proxy calls Observe once per answer below 500
// with the time from sending the request to the response headers; it must
// not allocate or block.
type Observer interface {
	Observe(b *pool.Backend, rtt time.Duration)
}
