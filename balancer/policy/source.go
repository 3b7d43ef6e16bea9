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

// rejectTries bounds the O(1) draws pickAvailable makes before it falls back
// to counting: with half the pool full, four misses in a row happen 1 time in
// 16, so the common pick is O(1) and the worst stays O(n).
const rejectTries = 4

// pickAvailable returns the index of a uniformly random available backend
// other than skip (-1: none skipped), or -1 when there is none. It first
// draws among all backends and rejects unavailable ones, which is exact and
// O(1) while most are available (the usual case, and the one that matters in
// large pools), then falls back to counting. A mixture of two uniform draws
// over the same set is uniform, so the fallback adds no bias.
func pickAvailable(d *draw, bs []*pool.Backend, skip int) int {
	for range rejectTries {
		if i := d.intn(len(bs)); i != skip && bs[i].Available() {
			return i
		}
	}
	k := 0
	for i, b := range bs {
		if i != skip && b.Available() {
			k++
		}
	}
	if k == 0 {
		return -1
	}
	k = d.intn(k)
	last := -1
	for i, b := range bs {
		if i == skip || !b.Available() {
			continue
		}
		if k == 0 {
			return i
		}
		k--
		last = i
	}
	return last // availability changed since the count
}
