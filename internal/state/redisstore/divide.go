package redisstore

import (
	"math"
	"slices"
	"strings"
	"time"
)

// Divide returns balancer me's fair targets of each backend's slots.
// demands are the live balancers' demand weights in id order (every
// balancer lays the line out in the same order); each weighs its demand
// plus one, so an idle balancer still holds a few slots and serves its
// first request at once. ids and limits describe the backends (aligned with
// the result); epoch is which division of fractional slots stands now.
//
// Fair targets by systematic sampling. All slots are laid out in layers
// across the backends (in id order): slot 1 of every backend, then slot 2,
// ... so each balancer's slots spread over the backends. Balancer j owns the
// slots whose position + u falls in its stretch [lo, hi) of the line, where
// the stretches are proportional to the weights and u in [0, 1) moves with
// the epoch (golden-ratio steps). So every balancer gets floor or ceil of
// its share, on average exactly its share: one entitled to 0.15 slot holds
// one in about 15% of epochs instead of never, and no balancer with demand
// starves. Between epochs a stretch boundary moves by less than one slot,
// and a small change of weight moves it by a few: the targets of only a few
// backends change from one sync to the next.
//
// Targets only spread the slots fairly; they are not what keeps the limit.
// The sync script never grants more than the other balancers leave free, so
// two balancers that divided from slightly different weights (each knows
// the others' as of its last sync) cannot overshoot, only wait a sync.
func Divide(demands []float64, me int, ids []string, limits []int64, epoch int64) []int64 {
	target := make([]int64, len(ids))
	if me < 0 || me >= len(demands) {
		return target
	}
	var before, total, mine float64
	for j, d := range demands {
		w := max(d, 0) + 1
		if j < me {
			before += w
		}
		if j == me {
			mine = w
		}
		total += w
	}
	idx := make([]int, len(ids))
	for i := range idx {
		idx[i] = i
	}
	if !slices.IsSortedFunc(idx, func(a, b int) int { return strings.Compare(ids[a], ids[b]) }) {
		slices.SortFunc(idx, func(a, b int) int { return strings.Compare(ids[a], ids[b]) })
	}
	var slots int64
	for _, l := range limits {
		slots += max(l, 0)
	}
	u := math.Mod(float64(epoch)*0.6180339887498949, 1)
	// The stretches always fall in the same place of the line, so without
	// more a small balancer's slots would always sit on the same few
	// backends, the last ones of a layer, and those would be used less
	// whenever it is idle. Every 4 epochs the backends' order within the
	// layers rotates by one, so each balancer's slots visit every backend.
	rot := epoch / 4
	lo := float64(slots) * before / total
	hi := float64(slots) * (before + mine) / total
	first, last := int64(math.Ceil(lo-u)), int64(math.Ceil(hi-u))-1
	// Walk the layers in blocks of equal membership (layers layer..l1-1
	// hold the backends whose limit is at least l1), counting my positions
	// in each.
	levels := make([]int64, 0, len(limits))
	for _, l := range limits {
		if l > 0 {
			levels = append(levels, l)
		}
	}
	slices.Sort(levels)
	levels = slices.Compact(levels)
	var pos, layer int64
	members := make([]int, 0, len(ids))
	for _, l1 := range levels {
		members = members[:0]
		for _, i := range idx {
			if limits[i] >= l1 {
				members = append(members, i)
			}
		}
		c := int64(len(members))
		size := (l1 - layer) * c
		a, z := max(first, pos), min(last, pos+size-1)
		if a <= z {
			n, off := z-a+1, mod(a-pos, c)
			full, rest := n/c, n%c
			for m := int64(0); m < c; m++ {
				k := members[mod(m+rot, c)]
				target[k] += full
				if mod(m-off, c) < rest {
					target[k]++
				}
			}
		}
		pos, layer = pos+size, l1
	}
	return target
}

// Epoch is the number of the division standing at now, for Divide.
func Epoch(now time.Time, length time.Duration) int64 {
	return now.UnixMilli() / max(1, length.Milliseconds())
}

func mod(a, c int64) int64 { return ((a % c) + c) % c }
