package policy

import (
	"sync/atomic"

	"lbscale/balancer/pool"
)

// perSet caches one structure derived from a pool.Set (smooth weights, a hash
// ring, cookie values), rebuilt only when a pick sees a new set. Sets are
// immutable and replaced as a whole with a higher Version, so the Version
// (with the length, as a guard against a caller reusing one) identifies it.
// The cached structure indexes set.Backends, so even a stale hit could only
// return a member of the set being picked from.
type perSet[T any] struct {
	cur atomic.Pointer[snapshot[T]]
}

type snapshot[T any] struct {
	version uint64
	size    int
	val     T
}

// get returns the structure cached for set, or nil if it must be built.
func (c *perSet[T]) get(set *pool.Set) *T {
	if s := c.cur.Load(); s != nil && s.version == set.Version && s.size == len(set.Backends) {
		return &s.val
	}
	return nil
}

// build makes the structure for set with fill and caches it, unless a newer
// set's is already cached: a pick still holding the previous set (during a
// swap) then uses a private copy instead of evicting the current one, so two
// sets alternating cannot make every pick rebuild.
func (c *perSet[T]) build(set *pool.Set, fill func(*pool.Set, *T)) *T {
	s := &snapshot[T]{version: set.Version, size: len(set.Backends)}
	fill(set, &s.val)
	for {
		old := c.cur.Load()
		if old != nil && old.version > set.Version {
			return &s.val
		}
		if old != nil && old.version == set.Version && old.size == s.size {
			return &old.val // a concurrent pick built it first; share its state
		}
		if c.cur.CompareAndSwap(old, s) {
			return &s.val
		}
	}
}
