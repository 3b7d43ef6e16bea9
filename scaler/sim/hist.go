package sim

// hist counts requests by latency in whole steps: percentiles of millions
// of requests from an array as long as the longest possible latency.
type hist struct {
	n     []int64
	total int64
}

func newHist(steps int64) hist { return hist{n: make([]int64, steps+1)} }

// add counts c requests of i steps (the last bucket takes anything longer).
func (h *hist) add(i, c int64) {
	h.n[min(max(i, 0), int64(len(h.n)-1))] += c
	h.total += c
}

// quantile is the smallest latency in steps that at least q of the
// requests did not exceed (-1 with none).
//
// E.g. 98 requests at 4 steps and 2 at 10: q 0.5 → 4, q 0.99 → 10.
func (h *hist) quantile(q float64) int64 {
	if h.total == 0 {
		return -1
	}
	rank := int64(q*float64(h.total) + 0.999999)
	rank = min(max(rank, 1), h.total)
	var cum int64
	for i, c := range h.n {
		cum += c
		if cum >= rank {
			return int64(i)
		}
	}
	return int64(len(h.n) - 1)
}
