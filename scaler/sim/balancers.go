package sim

import "math"

// balancer is one balancer as the model holds it: its share of the
// traffic, its own FIFO queue, and its demand as the slot division reads
// it.
type balancer struct {
	share float64
	q     queue
	acc   float64 // spaced arrivals' fraction carried to the next step
	// demand is in flight plus queued, smoothed as the balancers smooth
	// it: it follows a rise at once and decays over about a second.
	// weight is the demand published at the previous sync, the one the
	// division reads now (each balancer divides from the demands Redis
	// gave it at its last sync).
	demand, weight float64
}

// golden is the fractional step of the sampling offset per epoch: it
// spreads the offsets of successive epochs evenly over [0, 1).
const golden = 0.6180339887498949

// syncGrants divides each ready container's slots among the balancers, as
// every SYNC_INTERVAL each balancer divides them from the demands it read
// at its previous sync (redisstore.Divide, sync.lua), simplified to one
// division for all of them and to one capacity per container:
//
//   - weights: each balancer's demand at the previous sync, plus one, so
//     that an idle balancer is still entitled to a fraction of a slot;
//   - systematic sampling: the slots are laid out layer by layer (slot l
//     of every ready container, in creation order, the order rotated by
//     one every 4 epochs) and each balancer owns a stretch of that line in
//     proportion to its weight, the grid shifted by frac(epoch × golden),
//     the epoch moving every 10 syncs. So each balancer gets its share of
//     a container's slots rounded down or up, and a change of demand moves
//     at most one slot per boundary and container;
//   - a grant above its target shrinks to it at once where its slots are
//     free, and otherwise as its requests finish (the balancer returns a
//     slot as its request ends instead of handing it to its own queue); a
//     grant below its target grows only into slots the others left free.
//
// So the grants never add up to more than a container's capacity, a
// balancer whose grants are full queues while another's slots idle, and
// the division follows a shift of demand a sync or two late.
//
// E.g. 10 ready containers of 4 slots, weights 8 (7 in flight and queued,
// plus one) and 2, offset 0.3: 40 slots, stretches [0, 32) and [32, 40)
// shifted by 0.3, so positions 0..31 and 32..39: the first balancer holds
// layers 0–2 of every container and layer 3 of the first two (4 slots
// there, 3 elsewhere), the second layer 3 of the other eight (1 slot each).
func (s *sim) syncGrants() {
	s.syncs++
	epoch := s.syncs / 10
	u := math.Mod(float64(epoch)*golden, 1)
	s.readyBuf = s.readyBuf[:0]
	for _, c := range s.pool.cs {
		if c.ph == ready {
			s.readyBuf = append(s.readyBuf, c)
		}
	}
	if n := int64(len(s.readyBuf)); n > 0 {
		slots := n * s.capacity
		var total float64
		for _, b := range s.bal {
			total += max(b.weight, 0) + 1
		}
		var before float64
		for i, b := range s.bal {
			lo := float64(slots) * before / total
			before += max(b.weight, 0) + 1
			hi := float64(slots) * before / total
			s.first[i], s.last[i] = int64(math.Ceil(lo-u)), int64(math.Ceil(hi-u))-1
		}
		s.first[0], s.last[len(s.bal)-1] = 0, slots-1 // no float residue at the ends
		rot := (epoch / 4) % n
		for i, c := range s.readyBuf {
			j := ((int64(i)-rot)%n + n) % n // its place in the layout
			var used int64
			for b := range s.bal {
				s.target[b] = positions(s.first[b], s.last[b], j, n)
				if c.grant[b] > s.target[b] {
					c.grant[b] = max(s.target[b], c.in[b])
				}
				used += c.grant[b]
			}
			for b := range s.bal {
				if g := min(s.target[b]-c.grant[b], s.capacity-used); g > 0 {
					c.grant[b] += g
					used += g
				}
			}
		}
	}
	for i, b := range s.bal {
		raw := float64(s.pool.bIn[i] + b.q.total)
		b.demand = max(raw, b.demand*s.decay)
		b.weight = b.demand
	}
}

// positions counts the positions p in [first, last] with p mod n = j: a
// balancer's slots on the container at place j of a layout of n.
//
// E.g. [0, 31] over 10 containers: 4 at places 0 and 1, 3 at the others.
func positions(first, last, j, n int64) int64 {
	if last < first {
		return 0
	}
	return floorDiv(last-j, n) - floorDiv(first-1-j, n)
}

// floorDiv is a/b rounded down (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
