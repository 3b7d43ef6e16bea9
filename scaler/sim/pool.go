package sim

import (
	"cmp"
	"fmt"
	"slices"
)

// phase is where a container is in its life, as the controller's member
// phases.
type phase uint8

const (
	starting phase = iota // started, not ready yet
	ready                 // takes requests
	draining              // takes none, finishes what it holds
	stopping              // being stopped by the engine
)

// container is one modelled container. Steps are indexes of the run's
// time steps.
type container struct {
	id string
	ph phase
	// until is the step a starting container turns ready, or a stopping
	// one is gone.
	until int64
	// readyStep is when it turned ready (ReadySince); drainStep when its
	// drain began.
	readyStep, drainStep int64
	// lastSeen is the last step it was handed a request (-1: never).
	lastSeen int64
	inflight int64
	// in is its in-flight count by balancer; grant is each balancer's
	// grant of its slots (see balancers.go).
	in, grant []int64
	// done counts the requests it holds by completion step, modulo the
	// ring, and balancer: done[slot·balancers + b]. A step's completions
	// are one read per balancer.
	done []int64
	// area is the integral of inflight over steps up to step since; mark
	// is area at the last whole second, and perSec the mean in flight
	// over the last whole second (what its queue-proxy reports to KPA).
	area, since, mark int64
	perSec            float64
}

// touch brings area up to step k; call it before inflight changes.
func (c *container) touch(k int64) {
	c.area += c.inflight * (k - c.since)
	c.since = k
}

// pool is the containers and the least-connections router over the ready
// ones. The order of cs is creation order (it matters only for the
// rotating tie-break).
type pool struct {
	cs       []*container
	byID     map[string]*container
	n        [4]int  // containers by phase
	inflight int64   // over all containers
	nb       int     // balancers
	bIn      []int64 // in flight by balancer, over all containers
	made     int     // containers created so far, for ids
	ring     int64   // len of each container's done ring
	cursor   int     // where the tie-break's rotation resumes
	// lvl and exits are scratch for assign, indexed by in-flight level.
	lvl, exits []int
}

// newPool is an empty pool behind balancers balancers (at least one).
func newPool(ring int64, capacity, balancers int) *pool {
	nb := max(balancers, 1)
	return &pool{byID: map[string]*container{}, ring: ring, nb: nb, bIn: make([]int64, nb),
		lvl: make([]int, capacity+1), exits: make([]int, capacity+1)}
}

// add creates a container in phase ph at step k.
func (p *pool) add(ph phase, until, readyStep, k int64) *container {
	p.made++
	c := &container{id: fmt.Sprintf("c%05d", p.made), ph: ph, until: until, readyStep: readyStep, lastSeen: -1,
		in: make([]int64, p.nb), grant: make([]int64, p.nb), done: make([]int64, p.ring*int64(p.nb)), since: k}
	p.cs = append(p.cs, c)
	p.byID[c.id] = c
	p.n[ph]++
	return c
}

func (p *pool) set(c *container, ph phase) {
	p.n[c.ph]--
	c.ph = ph
	p.n[ph]++
}

// remove forgets the containers for which gone is true.
func (p *pool) remove(gone func(*container) bool) {
	p.cs = slices.DeleteFunc(p.cs, func(c *container) bool {
		if !gone(c) {
			return false
		}
		p.n[c.ph]--
		delete(p.byID, c.id)
		return true
	})
}

// complete retires the requests that finish at slot's step k and returns
// how many.
func (p *pool) complete(slot, k int64) int64 {
	var n int64
	for _, c := range p.cs {
		if c.inflight == 0 {
			continue
		}
		row := c.done[slot*int64(p.nb) : (slot+1)*int64(p.nb)]
		for b, d := range row {
			if d > 0 {
				c.touch(k)
				row[b] = 0
				c.in[b] -= d
				c.inflight -= d
				p.bIn[b] -= d
				n += d
			}
		}
	}
	p.inflight -= n
	return n
}

// assign hands up to m requests to ready containers by least connections
// and returns how many it handed out; give is called once per container
// and count (give must add them to the container's in-flight). capOf is a
// container's present limit, at most the capacity assign was made for.
//
// Least connections sends each request to a container with the fewest in
// flight, so a batch raises the least loaded containers level by level
// (water-filling): with in-flight {0, 1, 3} and limit 4, 4 requests give
// {2, 2, 3} plus one at level 2, to whichever the rotation reaches first.
// The rotation stands for the balancer's random tie-break: it spreads a
// light load over every container in turn, as random choice does.
func (p *pool) assign(m int64, capOf func(*container) int64, give func(*container, int64)) int64 {
	clear(p.lvl)
	clear(p.exits)
	var free int64
	for _, c := range p.cs {
		if c.ph != ready {
			continue
		}
		if k := capOf(c); c.inflight < k {
			p.lvl[c.inflight]++
			p.exits[k]++
			free += k - c.inflight
		}
	}
	m = min(m, free)
	if m <= 0 {
		return 0
	}
	total := m
	// Find the level L every available container is raised to; m is left
	// over for containers at L.
	var level int64
	active := 0
	for level = 0; level < int64(len(p.lvl)); level++ {
		active += p.lvl[level] - p.exits[level]
		if m < int64(active) || m == 0 {
			break
		}
		m -= int64(active)
	}
	for _, c := range p.cs {
		if c.ph != ready {
			continue
		}
		if to := min(level, capOf(c)); c.inflight < to {
			give(c, to-c.inflight)
		}
	}
	from := p.cursor
	for i := 0; m > 0 && i < len(p.cs); i++ {
		j := (from + i) % len(p.cs)
		c := p.cs[j]
		if c.ph == ready && c.inflight == level && capOf(c) > level {
			give(c, 1)
			m--
			p.cursor = j + 1
		}
	}
	return total
}

// reclaim makes up to n draining containers ready again, the most
// recently ready first (the controller's order), and returns how many.
func (p *pool) reclaim(n int) int {
	var d []*container
	for _, c := range p.cs {
		if c.ph == draining {
			d = append(d, c)
		}
	}
	slices.SortStableFunc(d, func(a, b *container) int { return cmp.Compare(b.readyStep, a.readyStep) })
	d = d[:min(n, len(d))]
	for _, c := range d {
		p.set(c, ready)
	}
	return len(d)
}

// drain marks the ready containers among ids draining from step k and
// returns how many (an id that is not ready is skipped, as the controller
// skips it).
func (p *pool) drain(ids []string, k int64) int {
	n := 0
	for _, id := range ids {
		if c := p.byID[id]; c != nil && c.ph == ready {
			p.set(c, draining)
			c.drainStep = k
			n++
		}
	}
	return n
}
