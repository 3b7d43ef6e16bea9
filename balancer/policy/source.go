package policy

import (
	"math/bits"
	"math/rand/v2"
	"sync"

	"lbscale/balancer/pool"
)

// lockedSource makes a math/rand/v2 Source (a *rand.Rand, a PCG) safe for
// concurrent picks. Policies take at most one value from it per pick, to seed
// a draw, so the lock is held for one Uint64 call and is rarely contended.
type lockedSource struct {
	mu  sync.Mutex
	src rand.Source
}

// newLockedSource wraps src; nil means a PCG with a random seed. A source
// that is already locked is shared as is (the sticky policy hands its own to
// its least-connections fallback).
func newLockedSource(src rand.Source) *lockedSource {
	if l, ok := src.(*lockedSource); ok {
		return l
	}
	if src == nil {
		src = rand.NewPCG(rand.Uint64(), rand.Uint64())
	}
	return &lockedSource{src: src}
}

func (l *lockedSource) Uint64() uint64 {
	l.mu.Lock()
	v := l.src.Uint64()
	l.mu.Unlock()
	return v
}

// draw is the randomness of one pick: seeded lazily with a single value from
// the shared source, then a SplitMix64 sequence kept on the caller's stack.
// Reservoir sampling over 64 tied backends thus costs one lock, not 63, and
// a pick without ties takes no lock at all.
type draw struct {
	src    *lockedSource
	state  uint64
	seeded bool
}

func (d *draw) uint64() uint64 {
	if !d.seeded {
		d.state, d.seeded = d.src.Uint64(), true
	}
	d.state += 0x9e3779b97f4a7c15
	z := d.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// intn returns a uniform int in [0, n), n > 0, without modulo bias
// (Lemire's multiply-and-reject).
func (d *draw) intn(n int) int {
	un := uint64(n)
	hi, lo := bits.Mul64(d.uint64(), un)
	if lo < un {
		thresh := -un % un
		for lo < thresh {
			hi, lo = bits.Mul64(d.uint64(), un)
		}
	}
	return int(hi)
}

// countAvailable is the number of backends a pick may choose from now.
func countAvailable(bs []*pool.Backend) int {
	n := 0
	for _, b := range bs {
		if b.Available() {
			n++
		}
	}
	return n
}

// nthAvailable returns the index of the k-th (0-based) available backend.
// Availability may change between a count and this call; then it returns the
// last available backend it saw, or -1.
func nthAvailable(bs []*pool.Backend, k int) int {
	last := -1
	for i, b := range bs {
		if !b.Available() {
			continue
		}
		if k == 0 {
			return i
		}
		k--
		last = i
	}
	return last
}
