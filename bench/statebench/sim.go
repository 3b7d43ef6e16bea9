package statebench

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"lbscale/balancer/pool"
)

// Split divides a cluster-wide arrival rate among n balancers with a skew:
// balancer 0 takes half, the others share the other half equally, and a
// lone balancer takes it all. An even split would spare the slot division
// its real work: grants follow demand, and uneven demand keeps moving slots
// toward the busy balancer. E.g. 10,000 req/s over 4: 5,000 then 1,666.7
// three times.
func Split(rate float64, n int) []float64 {
	if n <= 0 {
		return nil
	}
	out := make([]float64, n)
	if n == 1 {
		out[0] = rate
		return out
	}
	out[0] = rate / 2
	for i := 1; i < n; i++ {
		out[i] = rate / 2 / float64(n-1)
	}
	return out
}

// MeanService is the mean service time that keeps backends×limit slots
// busy a utilisation share of the time at rate req/s: by Little's law the
// cluster then holds rate × S requests. Near but below 1, so that the
// grants, not the offered load, are what stops a backend's overshoot.
// E.g. 400 backends, limit 8, 10,000 req/s, 0.9: 0.9 × 3,200 / 10,000 =
// 288 ms. A rate of zero needs no service time (0).
func MeanService(backends int, limit int64, rate, utilisation float64) time.Duration {
	if rate <= 0 {
		return 0
	}
	return time.Duration(utilisation * float64(backends) * float64(limit) / rate * float64(time.Second))
}

// Arrivals hands out the request arrivals due by now, in order.
type Arrivals interface {
	// Take returns the next arrival at or before now and moves past it;
	// ok is false when none is due yet.
	Take(now time.Time) (at time.Time, ok bool)
}

// Poisson is an open-loop Poisson arrival process: exponential gaps of mean
// 1/rate, drawn from an injected source so a run can be replayed. Open loop,
// because a closed loop slows its clients down exactly when the sync falls
// behind, and so hides the overshoot this benchmark looks for.
type Poisson struct {
	rate float64
	next time.Time
	rng  *rand.Rand
}

// NewPoisson starts arrivals at rate per second after start; a rate <= 0
// never arrives.
func NewPoisson(rate float64, start time.Time, rng *rand.Rand) *Poisson {
	p := &Poisson{rate: rate, next: start, rng: rng}
	p.advance()
	return p
}

func (p *Poisson) advance() {
	if p.rate > 0 {
		p.next = p.next.Add(time.Duration(p.rng.ExpFloat64() / p.rate * float64(time.Second)))
	}
}

// Take implements Arrivals.
func (p *Poisson) Take(now time.Time) (time.Time, bool) {
	if p.rate <= 0 || p.next.After(now) {
		return time.Time{}, false
	}
	at := p.next
	p.advance()
	return at, true
}

// Pick takes a slot on one of bs and returns its index, or -1 when none has
// a free slot in this balancer's grant. It tries two random backends, the
// one with fewer of this balancer's requests first (power of two choices:
// near least-connections balance from two reads), and when both are full
// scans from a random offset, so that a free slot anywhere is found and low
// indexes are not favoured.
func Pick(bs []*pool.Backend, rng *rand.Rand) int {
	n := len(bs)
	if n == 0 {
		return -1
	}
	i, j := rng.IntN(n), 0
	if n > 1 {
		// A second index other than i, uniformly.
		if j = rng.IntN(n - 1); j >= i {
			j++
		}
		if bs[j].Local() < bs[i].Local() {
			i, j = j, i
		}
		if bs[i].TryAcquire() {
			return i
		}
		if bs[j].TryAcquire() {
			return j
		}
	} else if bs[0].TryAcquire() {
		return 0
	}
	off := rng.IntN(n)
	for k := range n {
		if m := (off + k) % n; bs[m].TryAcquire() {
			return m
		}
	}
	return -1
}

// running is a request on a backend until done.
type running struct {
	done    time.Time
	backend *pool.Backend
	global  int // the backend's index in the Overshoot
}

// finishing is a min-heap of running requests by done time, so that a tick
// completes the due ones without looking at the rest. Typed rather than
// container/heap, whose any-typed Push boxes every request.
type finishing []running

func (h *finishing) push(r running) {
	*h = append(*h, r)
	a := *h
	for i := len(a) - 1; i > 0; {
		p := (i - 1) / 2
		if !a[i].done.Before(a[p].done) {
			break
		}
		a[i], a[p] = a[p], a[i]
		i = p
	}
}

// pop removes and returns the earliest; the heap must not be empty.
func (h *finishing) pop() running {
	a := *h
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	a[last] = running{} // drop the backend pointer
	a = a[:last]
	for i := 0; ; {
		l, small := 2*i+1, i
		if l < len(a) && a[l].done.Before(a[small].done) {
			small = l
		}
		if r := l + 1; r < len(a) && a[r].done.Before(a[small].done) {
			small = r
		}
		if small == i {
			break
		}
		a[i], a[small] = a[small], a[i]
		i = small
	}
	*h = a
	return top
}

// Queue is a balancer's FIFO of requests waiting for a slot, kept as their
// arrival times. A request that has waited Wait is dropped, as the proxy's
// queue times out (QUEUE_TIMEOUT, shortened here so that a run that cannot
// keep up shows it within seconds).
type Queue struct {
	Wait time.Duration
	at   []time.Time
	head int
}

// Len is the number of requests waiting.
func (q *Queue) Len() int { return len(q.at) - q.head }

// Push adds a request that arrived at at.
func (q *Queue) Push(at time.Time) { q.at = append(q.at, at) }

// Pop removes the oldest waiting request; the queue must not be empty.
func (q *Queue) Pop() {
	q.head++
	switch {
	case q.head == len(q.at):
		q.at, q.head = q.at[:0], 0
	case q.head >= 1024 && q.head > len(q.at)/2:
		// Reuse the front of the array once most of it is spent.
		n := copy(q.at, q.at[q.head:])
		q.at, q.head = q.at[:n], 0
	}
}

// Expire drops the requests that have waited Wait or longer at now and
// returns how many. They are the oldest, hence at the front.
func (q *Queue) Expire(now time.Time) int {
	n := 0
	for q.Len() > 0 && now.Sub(q.at[q.head]) >= q.Wait {
		q.Pop()
		n++
	}
	return n
}

// Overshoot counts the requests on each backend across every balancer,
// which no balancer can see, and keeps the worst excess over the limit: the
// slot grants are meant to hold it at zero. Safe for concurrent use.
type Overshoot struct {
	limit    int64
	index    map[string]int
	inflight []atomic.Int64
	worst    atomic.Int64
}

// NewOvershoot counts the backends ids (their pool ids), each limited to
// limit requests cluster-wide.
func NewOvershoot(ids []string, limit int64) *Overshoot {
	o := &Overshoot{limit: limit, index: make(map[string]int, len(ids)), inflight: make([]atomic.Int64, len(ids))}
	for i, id := range ids {
		o.index[id] = i
	}
	return o
}

// Index is backend id's index for Acquired and Released; -1 when unknown
// (then neither counts it).
func (o *Overshoot) Index(id string) int {
	if i, ok := o.index[id]; ok {
		return i
	}
	return -1
}

// Acquired counts a request started on backend i. Call it after the pool
// slot is taken and Released before it is given back: the count then never
// exceeds what the balancers hold, so an overshoot it shows is real.
func (o *Overshoot) Acquired(i int) {
	if i < 0 {
		return
	}
	over := o.inflight[i].Add(1) - o.limit
	for {
		w := o.worst.Load()
		if over <= w || o.worst.CompareAndSwap(w, over) {
			return
		}
	}
}

// Released counts a request on backend i ended.
func (o *Overshoot) Released(i int) {
	if i >= 0 {
		o.inflight[i].Add(-1)
	}
}

// Worst is the largest excess over the limit on any backend since the
// last Reset (0: none).
func (o *Overshoot) Worst() int64 { return o.worst.Load() }

// Reset forgets the worst excess, at the start of a measured window.
func (o *Overshoot) Reset() { o.worst.Store(0) }

// Source is what a Driver needs of its balancer (a *cluster.Syncer).
type Source interface {
	// Set is the current pool.
	Set() *pool.Set
	// Kick asks for a sync now: a request started waiting.
	Kick()
}

// DriverOptions configure a Driver.
type DriverOptions struct {
	Source   Source
	Arrivals Arrivals
	// Service is the mean of the exponential service times.
	Service time.Duration
	// Wait is how long a request may queue before it is dropped.
	Wait time.Duration
	// Rand draws backends and service times; the driver's alone.
	Rand *rand.Rand
	// Overshoot is shared by every balancer's driver.
	Overshoot *Overshoot
	// Now is the clock of Run (default time.Now); Step takes its time.
	Now func() time.Time
}

// Driver plays one balancer's requests: at each Step it completes the
// requests whose service time has ended, drops those that queued too long,
// starts queued ones in order, then the new arrivals. One goroutine drives
// all of a balancer's requests (not one per request), so that the load
// generator stays light beside Redis on a small machine.
type Driver struct {
	o       DriverOptions
	queue   Queue
	running finishing
	set     *pool.Set // the set global was built for
	global  []int     // Overshoot index of each backend of set

	queued  atomic.Int64
	served  atomic.Uint64
	dropped atomic.Uint64
}

// NewDriver returns a driver with nothing in flight.
func NewDriver(o DriverOptions) *Driver {
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Driver{o: o, queue: Queue{Wait: o.Wait}}
}

// Queued is the queue length as of the last Step (the balancer's demand
// signal, cluster.Options.Queued). Safe for concurrent use.
func (d *Driver) Queued() int64 { return d.queued.Load() }

// Served is the number of requests completed. Safe for concurrent use.
func (d *Driver) Served() uint64 { return d.served.Load() }

// Dropped is the number of requests that waited too long. Safe for
// concurrent use.
func (d *Driver) Dropped() uint64 { return d.dropped.Load() }

// Step advances the driver to now.
func (d *Driver) Step(now time.Time) {
	for len(d.running) > 0 && !d.running[0].done.After(now) {
		r := d.running.pop()
		d.o.Overshoot.Released(r.global)
		r.backend.Release()
		d.served.Add(1)
	}
	d.dropped.Add(uint64(d.queue.Expire(now)))
	if set := d.o.Source.Set(); set != d.set {
		d.set, d.global = set, d.global[:0]
		for _, b := range set.Backends {
			d.global = append(d.global, d.o.Overshoot.Index(b.ID))
		}
	}
	for d.queue.Len() > 0 && d.start(now) {
		d.queue.Pop()
	}
	for at, ok := d.o.Arrivals.Take(now); ok; at, ok = d.o.Arrivals.Take(now) {
		// Behind a queue a new arrival waits its turn, as in the proxy.
		if d.queue.Len() == 0 && d.start(now) {
			continue
		}
		d.queue.Push(at)
		d.o.Source.Kick()
	}
	d.queued.Store(int64(d.queue.Len()))
}

// start runs one request on a backend with a free slot, if any.
func (d *Driver) start(now time.Time) bool {
	i := Pick(d.set.Backends, d.o.Rand)
	if i < 0 {
		return false
	}
	d.o.Overshoot.Acquired(d.global[i])
	service := time.Duration(d.o.Rand.ExpFloat64() * float64(d.o.Service))
	d.running.push(running{done: now.Add(service), backend: d.set.Backends[i], global: d.global[i]})
	return true
}

// Run steps every tick until ctx ends, then ends every request still in
// flight and empties the queue, so that the balancer leaves holding no
// slot.
func (d *Driver) Run(ctx context.Context, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			d.stop()
			return
		case <-t.C:
			d.Step(d.o.Now())
		}
	}
}

func (d *Driver) stop() {
	for len(d.running) > 0 {
		r := d.running.pop()
		d.o.Overshoot.Released(r.global)
		r.backend.Release()
	}
	for d.queue.Len() > 0 {
		d.queue.Pop()
	}
	d.queued.Store(0)
}
