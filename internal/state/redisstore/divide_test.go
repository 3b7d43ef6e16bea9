package redisstore

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// divideCase is one cluster picture: the live balancers' demand weights (in
// id order) and the backends' limits. Every balancer divides the same
// picture, so their targets must fit together exactly.
type divideCase struct {
	name    string
	demands []float64
	limits  []int64
}

// divideCases covers 1..10 balancers (idle ones among them), 1..400
// backends, equal and mixed limits (zero and negative ones too).
func divideCases() []divideCase {
	mixed := make([]int64, 400)
	for i := range mixed {
		mixed[i] = int64(i*7%9) - 1 // -1..7: a negative limit counts as 0
	}
	return []divideCase{
		{"one balancer one backend", []float64{3}, []int64{4}},
		{"two equal", []float64{5, 5}, slices.Repeat([]int64{4}, 10)},
		{"8:1:1 on one slot", []float64{8, 1, 1}, []int64{1}},
		{"all idle", []float64{0, 0, 0, 0}, slices.Repeat([]int64{3}, 7)},
		{"one busy three idle", []float64{200, 0, 0, 0}, slices.Repeat([]int64{3}, 400)},
		{"skewed at scale", []float64{1, 200, 200, 200}, slices.Repeat([]int64{2}, 400)},
		{"fractional weights", []float64{0.5, 3.25, 0, 12.125, 7}, []int64{5, 0, 2, 9, 1, 0, 4}},
		{"more balancers than slots", []float64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, []int64{2}},
		{"ten balancers mixed limits", []float64{0, 40, 3, 0, 17, 1, 250, 0, 9, 2}, mixed},
		{"negative demand counts as 0", []float64{-5, 0, 3}, slices.Repeat([]int64{2}, 5)},
		{"no slots anywhere", []float64{1, 2}, []int64{0, 0, -3}},
	}
}

// divideEpochs are the epochs every case is divided at: the first few (the
// rotation of the layers moves every 4), and realistic wall-clock ones.
var divideEpochs = []int64{0, 1, 2, 3, 4, 5, 13, 1_000_003, Epoch(time.UnixMilli(1_700_000_000_123), 250*time.Millisecond)}

func backendNames(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("b%03d", i)
	}
	return ids
}

// divideAll returns every balancer's targets for one picture and epoch.
func divideAll(demands []float64, ids []string, limits []int64, epoch int64) [][]int64 {
	all := make([][]int64, len(demands))
	for me := range demands {
		all[me] = Divide(demands, me, ids, limits, epoch)
	}
	return all
}

// fairShare is balancer me's exact fair share of all slots: its weight (demand
// plus one) over the total, times the slots.
func fairShare(demands []float64, me int, limits []int64) float64 {
	var total, slots float64
	for _, d := range demands {
		total += max(d, 0) + 1
	}
	for _, l := range limits {
		slots += float64(max(l, 0))
	}
	return slots * (max(demands[me], 0) + 1) / total
}

func sumTargets(xs []int64) (n int64) {
	for _, x := range xs {
		n += x
	}
	return n
}

// The balancers' targets on a backend add up to exactly its limit: no slot
// is left to nobody and none is promised twice. Each target is within the
// limit and not negative.
func TestDivideTargetsAddUpToEachLimit(t *testing.T) {
	for _, tc := range divideCases() {
		ids := backendNames(len(tc.limits))
		for _, epoch := range divideEpochs {
			all := divideAll(tc.demands, ids, tc.limits, epoch)
			for i, l := range tc.limits {
				var got int64
				for me, tg := range all {
					if tg[i] < 0 || tg[i] > max(l, 0) {
						t.Fatalf("%s, epoch %d: balancer %d's target on %s is %d, limit %d", tc.name, epoch, me, ids[i], tg[i], l)
					}
					got += tg[i]
				}
				if got != max(l, 0) {
					t.Fatalf("%s, epoch %d: targets on %s sum to %d, want its limit %d", tc.name, epoch, ids[i], got, max(l, 0))
				}
			}
		}
	}
}

// Each balancer's slots over all backends are floor or ceil of its share
// by weight, at every epoch.
func TestDivideTotalIsFloorOrCeilOfShare(t *testing.T) {
	const eps = 1e-9
	for _, tc := range divideCases() {
		ids := backendNames(len(tc.limits))
		for _, epoch := range divideEpochs {
			for me, tg := range divideAll(tc.demands, ids, tc.limits, epoch) {
				s := fairShare(tc.demands, me, tc.limits)
				lo, hi := int64(math.Floor(s+eps)), int64(math.Ceil(s-eps))
				if got := sumTargets(tg); got < min(lo, hi) || got > max(lo, hi) {
					t.Errorf("%s, epoch %d: balancer %d holds %d slots, share %.4f: want %d or %d", tc.name, epoch, me, got, s, lo, hi)
				}
			}
		}
	}
}

// A balancer entitled to less than one slot holds one in about its share of
// epochs, never waits much longer than 1/share epochs for it, and (where
// several backends have slots) its slot visits every backend: idle or busy,
// no balancer starves and no backend is always left to the small one.
func TestDivideNoStarvationOverEpochs(t *testing.T) {
	cases := []struct {
		name    string
		demands []float64
		limits  []int64
		me      int
	}{
		{"8:1:1 on one slot", []float64{8, 1, 1}, []int64{1}, 1},
		{"idle beside a busy one", []float64{0, 99}, []int64{1, 1}, 0},
		{"idle between two busy", []float64{300, 0, 300}, []int64{1}, 1},
		{"small on ten backends", []float64{0, 50}, slices.Repeat([]int64{1}, 10), 0},
		{"small among three on 40", []float64{1, 200, 200, 200}, slices.Repeat([]int64{1}, 40), 0},
	}
	const epochs = 20000
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ids := backendNames(len(tc.limits))
			s := fairShare(tc.demands, tc.me, tc.limits)
			if s >= 1 {
				t.Fatalf("bad case: share %.3f is not under one slot", s)
			}
			var held, gap, longest int
			visited := map[int]bool{}
			for e := int64(0); e < epochs; e++ {
				tg := Divide(tc.demands, tc.me, ids, tc.limits, e)
				if sumTargets(tg) > 0 {
					held++
					gap = 0
				} else if gap++; gap > longest {
					longest = gap
				}
				for i, n := range tg {
					if n > 0 {
						visited[i] = true
					}
				}
			}
			t.Logf("held %d of %d epochs (share %.4f), longest wait %d, visited %d of %d backends", held, epochs, s, longest, len(visited), len(ids))
			want := s * epochs
			if math.Abs(float64(held)-want) > max(0.02*want, 5) {
				t.Errorf("held a slot in %d of %d epochs, want about %.0f (share %.4f)", held, epochs, want, s)
			}
			if bound := int(math.Ceil(3 / s)); longest > bound {
				t.Errorf("went %d epochs without a slot, want at most %d (share %.4f)", longest, bound, s)
			}
			if len(visited) != len(ids) {
				t.Errorf("its slot visited %d of %d backends", len(visited), len(ids))
			}
		})
	}
}

// The backends' order in the arguments does not matter: every balancer
// lays them out in id order, so a balancer that lists them differently
// still divides exactly as the others do.
func TestDivideIgnoresBackendOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for _, tc := range divideCases() {
		ids := backendNames(len(tc.limits))
		perm := rng.Perm(len(ids))
		shuffled, limits := make([]string, len(ids)), make([]int64, len(ids))
		for j, i := range perm {
			shuffled[j], limits[j] = ids[i], tc.limits[i]
		}
		for _, epoch := range divideEpochs {
			for me := range tc.demands {
				sorted := Divide(tc.demands, me, ids, tc.limits, epoch)
				got := Divide(tc.demands, me, shuffled, limits, epoch)
				for j, i := range perm {
					if got[j] != sorted[i] {
						t.Fatalf("%s, epoch %d, balancer %d: %s gets %d given unsorted, %d given sorted", tc.name, epoch, me, ids[i], got[j], sorted[i])
					}
				}
			}
		}
	}
}

// From one epoch to the next (within one rotation of the layers) each
// stretch boundary moves by less than one slot, so a balancer's targets
// change on at most two backends, by one slot each: few slots move
// between syncs.
func TestDivideMovesFewSlotsBetweenEpochs(t *testing.T) {
	for _, tc := range divideCases() {
		ids := backendNames(len(tc.limits))
		for e := int64(0); e < 40; e++ {
			if (e+1)/4 != e/4 {
				continue // the layers rotate: not one boundary move
			}
			for me := range tc.demands {
				a, b := Divide(tc.demands, me, ids, tc.limits, e), Divide(tc.demands, me, ids, tc.limits, e+1)
				moved := 0
				for i := range a {
					if d := a[i] - b[i]; d != 0 {
						moved++
						if d < -1 || d > 1 {
							t.Fatalf("%s, balancer %d, epoch %d->%d: %s moved by %d", tc.name, me, e, e+1, ids[i], d)
						}
					}
				}
				if moved > 2 {
					t.Fatalf("%s, balancer %d, epoch %d->%d: targets changed on %d backends, want at most 2", tc.name, me, e, e+1, moved)
				}
			}
		}
	}
}

// A balancer that is not among the demands (me out of range) is promised
// nothing; no backends means no targets.
func TestDivideEdges(t *testing.T) {
	ids, limits := backendNames(3), []int64{4, 4, 4}
	cases := []struct {
		name    string
		demands []float64
		me      int
		ids     []string
		limits  []int64
		want    []int64
	}{
		{"me below range", []float64{1, 2}, -1, ids, limits, []int64{0, 0, 0}},
		{"me past range", []float64{1, 2}, 2, ids, limits, []int64{0, 0, 0}},
		{"no balancers", nil, 0, ids, limits, []int64{0, 0, 0}},
		{"no backends", []float64{1, 2}, 0, nil, nil, []int64{}},
		{"alone takes all", []float64{0}, 0, ids, limits, []int64{4, 4, 4}},
	}
	for _, tc := range cases {
		got := Divide(tc.demands, tc.me, tc.ids, tc.limits, 3)
		if !slices.Equal(got, tc.want) || got == nil {
			t.Errorf("%s: Divide = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Epoch counts whole epochs since the Unix epoch; a length under one
// millisecond (zero or negative included) counts as one, never dividing by
// zero.
func TestEpoch(t *testing.T) {
	cases := []struct {
		ms     int64
		length time.Duration
		want   int64
	}{
		{0, 250 * time.Millisecond, 0},
		{249, 250 * time.Millisecond, 0},
		{250, 250 * time.Millisecond, 1},
		{1_700_000_000_123, 250 * time.Millisecond, 6_800_000_000},
		{1_700_000_000_123, time.Hour, 472_222},
		{1234, time.Millisecond, 1234},
		{1234, 0, 1234},
		{1234, 500 * time.Microsecond, 1234},
		{1234, -time.Second, 1234},
	}
	for _, tc := range cases {
		if got := Epoch(time.UnixMilli(tc.ms), tc.length); got != tc.want {
			t.Errorf("Epoch(%d ms, %v) = %d, want %d", tc.ms, tc.length, got, tc.want)
		}
	}
	// One length later is always the next epoch.
	now := time.UnixMilli(1_700_000_000_123)
	for _, length := range []time.Duration{time.Millisecond, 250 * time.Millisecond, time.Second} {
		if a, b := Epoch(now, length), Epoch(now.Add(length), length); b != a+1 {
			t.Errorf("Epoch one %v apart: %d then %d", length, a, b)
		}
	}
}
