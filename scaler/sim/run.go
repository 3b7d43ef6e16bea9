package sim

import (
	"math"
	"math/rand/v2"
	"time"

	"lbscale/internal/slowstart"
	"lbscale/scaler/decide"
)

// epoch is the fake clock's zero: any fixed instant does, since decide
// reads only differences of times.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Run simulates trace tr under policy p with cfg and returns the run's
// figures. It is deterministic: the same arguments give the same Result.
// A policy keeps state across calls, so give each run a fresh one.
func Run(cfg Config, p Policy, tr Trace) Result {
	s := newSim(cfg, p, tr)
	for s.k < s.end {
		s.tick()
	}
	return s.result()
}

// sim is one run's state. Steps are counted from 0; step k is at
// epoch + k·Step.
type sim struct {
	cfg Config
	pol Policy
	tr  Trace
	rng *rand.Rand

	k, end int64 // the current step; the run's length in steps
	perSec int64 // steps in a second (the balancers' measuring span)
	dt     float64

	svc, maxSvc     int64 // mean and longest service, in steps
	ring            int64 // completion rings' length
	capacity        int64
	cold, slow      int64 // cold start and slow start, in steps
	timeout, settle int64 // queue time-out and drain settle, in steps
	stop            int64 // the engine's stop, in steps
	poll, down      int64 // poll and scale-down intervals, in steps

	pool *pool
	// bal is the balancers, each with its queue; capOf and give are
	// their routers' hooks into pool.assign, made once.
	bal         []*balancer
	capOf       []func(*container) int64
	give        []func(*container, int64)
	sync        int64   // SYNC_INTERVAL, in steps
	decay       float64 // a balancer's demand's decay per sync
	syncs       int64   // syncs so far (the sampling epoch's clock)
	first, last []int64 // scratch for syncGrants: each balancer's stretch
	target      []int64 // scratch for syncGrants: one container's targets
	readyBuf    []*container
	// queuedMark is queuedSteps at the last whole second; secQueued the
	// mean queue over that second.
	queuedMark, secQueued float64

	// The last second's flow, one slot per step, and its sums.
	arrived, doneN, doneSvc []int64
	arrSum, doneSum, svcSum int64
	service                 time.Duration // last measured mean service time
	// compN and compSvc are future completions (count, service steps) by
	// completion step modulo ring.
	compN, compSvc []int64

	// secRate is the offered rate's mean for each second; steady says
	// whether the second counts for the p99 at steady load.
	secRate []float64
	steady  []bool

	lastUp, lastDown time.Time

	res            Result
	lat, steadyLat hist
	containerSteps int64
	inflightSteps  float64
	queuedSteps    float64
}

func newSim(cfg Config, p Policy, tr Trace) *sim {
	if cfg.Step <= 0 {
		cfg.Step = 50 * time.Millisecond
	}
	s := &sim{cfg: cfg, pol: p, tr: tr, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))}
	s.dt = cfg.Step.Seconds()
	s.end = int64(tr.Duration / cfg.Step)
	s.perSec = cfg.steps(time.Second)
	s.svc = cfg.steps(cfg.Service)
	jit := min(max(cfg.Jitter, 0), 1)
	s.maxSvc = cfg.steps(time.Duration(float64(cfg.Service)*(1+jit))) + 1
	s.ring = s.maxSvc + 1
	s.capacity = int64(cfg.capacity())
	s.cold = int64(cfg.ColdStart / cfg.Step)
	s.slow = int64(cfg.SlowStart / cfg.Step)
	s.timeout = int64(cfg.QueueTimeout / cfg.Step)
	s.settle = int64(cfg.DrainSettle / cfg.Step)
	s.stop = int64(cfg.StopDelay / cfg.Step)
	s.poll = cfg.steps(cfg.Poll)
	s.down = cfg.steps(cfg.ScaleDownEvery)
	split := cfg.split()
	s.pool = newPool(s.ring, int(s.capacity), len(split))
	for i, w := range split {
		s.bal = append(s.bal, &balancer{share: w})
		s.capOf = append(s.capOf, func(c *container) int64 { return s.room(c, i) })
		s.give = append(s.give, func(c *container, n int64) { s.start(c, i, n) })
	}
	s.first, s.last, s.target = make([]int64, len(split)), make([]int64, len(split)), make([]int64, len(split))
	s.sync = 1
	if cfg.Sync > 0 {
		s.sync = cfg.steps(cfg.Sync)
	}
	s.decay = math.Exp(-(time.Duration(s.sync) * cfg.Step).Seconds())
	s.arrived, s.doneN, s.doneSvc = make([]int64, s.perSec), make([]int64, s.perSec), make([]int64, s.perSec)
	s.compN, s.compSvc = make([]int64, s.ring), make([]int64, s.ring)
	s.lat, s.steadyLat = newHist(s.timeout+s.maxSvc+1), newHist(s.timeout+s.maxSvc+1)
	s.res = Result{Trace: tr.Name, Policy: p.Name(), Arrivals: "spaced", Duration: time.Duration(s.end) * cfg.Step,
		ColdStart: cfg.ColdStart, Balancers: len(split)}
	if cfg.Poisson {
		s.res.Arrivals = "poisson"
	}
	s.seconds()

	n := cfg.Initial
	if n < 0 && len(s.secRate) > 0 {
		n = s.need(s.secRate[0])
	}
	for range min(max(n, 0), cfg.Max) {
		// Ready long enough to be past any slow start: a warm pool.
		s.pool.add(ready, 0, -s.slow, 0)
	}
	return s
}

// need is the containers a rate needs by Little's law at the target, at
// least MIN_REPLICAS: the ideal pool.
func (s *sim) need(rate float64) int {
	c := math.Ceil(rate*s.cfg.Service.Seconds()/float64(max(s.cfg.Target, 1)) - 1e-9)
	return max(int(c), s.cfg.Min)
}

// seconds fills secRate, steady, the ideal container-seconds and the
// scale (see the package doc for the rule of steady load).
func (s *sim) seconds() {
	secs := (s.end + s.perSec - 1) / s.perSec
	s.secRate = make([]float64, secs)
	s.steady = make([]bool, secs)
	for i := range secs {
		var sum float64
		n := int64(0)
		for k := i * s.perSec; k < min((i+1)*s.perSec, s.end); k++ {
			sum += s.tr.Rate(time.Duration(k) * s.cfg.Step)
			n++
		}
		s.secRate[i] = sum / float64(n)
		need := s.need(s.secRate[i])
		s.res.IdealSeconds += float64(need) * float64(n) / float64(s.perSec)
		s.res.Scale = max(s.res.Scale, need)
	}
	transient := int64(math.Ceil(s.cfg.Transient.Seconds()))
	last := int64(math.MinInt64 / 2)
	for i := range secs {
		if i == 0 || changed(s.secRate[i-1], s.secRate[i]) {
			last = i
		}
		s.steady[i] = i-last >= transient
	}
}

// changed reports a change of load: more than 10% from one second to the
// next.
func changed(prev, cur float64) bool {
	if prev <= 0 {
		return cur > 0
	}
	return math.Abs(cur-prev) > 0.1*prev
}

func (s *sim) at(k int64) time.Time { return epoch.Add(time.Duration(k) * s.cfg.Step) }

// tick advances one step: containers change phase, requests finish,
// arrive, time out, the balancers divide the slots (every SYNC_INTERVAL)
// and start requests, and at their intervals the policy is asked.
func (s *sim) tick() {
	k := s.k
	s.phases(k)

	slot := k % s.ring
	s.pool.complete(slot, k)
	h := k % s.perSec
	s.doneSum += s.compN[slot] - s.doneN[h]
	s.svcSum += s.compSvc[slot] - s.doneSvc[h]
	s.doneN[h], s.doneSvc[h] = s.compN[slot], s.compSvc[slot]
	s.compN[slot], s.compSvc[slot] = 0, 0
	if s.doneSum > 0 {
		s.service = time.Duration(float64(s.svcSum) / float64(s.doneSum) * float64(s.cfg.Step))
	}

	var a int64
	for _, b := range s.bal {
		n := s.arrivals(k, b)
		a += n
		b.q.push(k, n)
		s.res.TimedOut += b.q.expire(k - s.timeout)
	}
	s.res.Offered += a
	s.arrSum += a - s.arrived[h]
	s.arrived[h] = a
	if k%s.sync == 0 {
		s.syncGrants()
	}
	for i, b := range s.bal {
		s.pool.assign(b.q.total, s.capOf[i], s.give[i])
		if s.cfg.QueueMax > 0 && b.q.total > int64(s.cfg.QueueMax) {
			s.res.Refused += b.q.dropNewest(b.q.total - int64(s.cfg.QueueMax))
		}
	}
	if k > 0 && k%s.perSec == 0 {
		s.second(k)
	}

	if k%s.poll == 0 {
		s.settleDrains(k)
		s.apply(k, s.pol.Poll(s.view(k)))
	}
	if k > 0 && k%s.down == 0 {
		s.apply(k, s.pol.ScaleDown(s.view(k)))
	}

	n := len(s.pool.cs)
	s.containerSteps += int64(n)
	s.res.PeakReplicas = max(s.res.PeakReplicas, n)
	s.inflightSteps += float64(s.pool.inflight)
	q := s.queued()
	s.queuedSteps += float64(q)
	s.res.PeakQueued = max(s.res.PeakQueued, q)
	s.k++
}

// queued is the requests waiting in every balancer's queue.
func (s *sim) queued() int64 {
	var n int64
	for _, b := range s.bal {
		n += b.q.total
	}
	return n
}

// second closes the whole second ending at step k: each container's mean
// in flight over it (what its queue-proxy would report to KPA's scraper),
// and the mean queue.
func (s *sim) second(k int64) {
	for _, c := range s.pool.cs {
		c.touch(k)
		c.perSec = float64(c.area-c.mark) / float64(s.perSec)
		c.mark = c.area
	}
	s.secQueued = (s.queuedSteps - s.queuedMark) / float64(s.perSec)
	s.queuedMark = s.queuedSteps
}

// phases turns starting containers ready and lets stopped ones go.
func (s *sim) phases(k int64) {
	if s.pool.n[starting] > 0 {
		for _, c := range s.pool.cs {
			if c.ph == starting && c.until <= k {
				s.pool.set(c, ready)
				c.readyStep = k
			}
		}
	}
	if s.pool.n[stopping] > 0 {
		s.pool.remove(func(c *container) bool { return c.ph == stopping && c.until <= k })
	}
}

// settleDrains ends the drains that are over, as the controller's
// drainOne checks at every poll: nothing in flight and the settle time
// passed since the drain.
func (s *sim) settleDrains(k int64) {
	if s.pool.n[draining] == 0 {
		return
	}
	over := func(c *container) bool { return c.ph == draining && c.inflight == 0 && k-c.drainStep >= s.settle }
	if s.stop == 0 {
		s.pool.remove(over)
		return
	}
	for _, c := range s.pool.cs {
		if over(c) {
			s.pool.set(c, stopping)
			c.until = k + s.stop
		}
	}
}

// arrivals is the count of requests offered to balancer b in step k: its
// share of the trace's rate (a Poisson stream thinned by a fixed share is
// a Poisson stream).
func (s *sim) arrivals(k int64, b *balancer) int64 {
	mean := s.tr.Rate(time.Duration(k)*s.cfg.Step) * s.dt * b.share
	if mean <= 0 {
		return 0
	}
	if s.cfg.Poisson {
		return poisson(s.rng, mean)
	}
	b.acc += mean
	n := math.Floor(b.acc + 1e-9)
	b.acc -= n
	return int64(n)
}

// limit is a ready container's in-flight limit: the capacity, ramped up
// after it turned ready as the balancers' slow start does.
func (s *sim) limit(c *container) int64 {
	if s.slow <= 0 {
		return s.capacity
	}
	age := time.Duration(s.k-c.readyStep) * s.cfg.Step
	return slowstart.Limit(s.capacity, age, s.cfg.SlowStart)
}

// room is the most in flight container c may hold once balancer b has
// started what it may there: its in flight plus b's unused grant, within
// its present limit. That is the level pool.assign fills it to.
func (s *sim) room(c *container, b int) int64 {
	free := min(c.grant[b]-c.in[b], s.limit(c)-c.inflight)
	return c.inflight + max(free, 0)
}

// start starts n of balancer b's queued requests, oldest first, on c.
func (s *sim) start(c *container, b int, n int64) {
	c.touch(s.k)
	c.inflight += n
	c.in[b] += n
	s.pool.inflight += n
	s.pool.bIn[b] += n
	c.lastSeen = s.k
	q := &s.bal[b].q
	for n > 0 {
		at, got := q.pop(n)
		if got == 0 {
			panic("sim: gave more requests than were queued")
		}
		n -= got
		wait := s.k - at
		steady := s.steady[at/s.perSec]
		if s.cfg.Jitter <= 0 {
			s.begin(c, b, got, wait, s.svc, steady)
			continue
		}
		for range got {
			s.begin(c, b, 1, wait, s.draw(), steady)
		}
	}
}

// begin records n requests of balancer b that waited wait steps and take
// svc steps.
func (s *sim) begin(c *container, b int, n, wait, svc int64, steady bool) {
	slot := (s.k + svc) % s.ring
	c.done[slot*int64(len(s.bal))+int64(b)] += n
	s.compN[slot] += n
	s.compSvc[slot] += n * svc
	s.lat.add(wait+svc, n)
	if steady {
		s.steadyLat.add(wait+svc, n)
	}
	s.res.Served += n
}

// draw is one jittered service time in steps, at least one.
func (s *sim) draw() int64 {
	j := min(s.cfg.Jitter, 1)
	d := float64(s.cfg.Service) * (1 + j*(2*s.rng.Float64()-1))
	return min(max(int64(math.Round(d/float64(s.cfg.Step))), 1), s.maxSvc)
}

// decidePool is the pool's counts by phase at step k, with the cold start
// the controller measures (the model's: the pool is taken to have started
// containers before) and the starting containers' mean time left.
func (s *sim) decidePool(k int64) decide.Pool {
	p := s.pool
	dp := decide.Pool{Ready: p.n[ready], Starting: p.n[starting], Draining: p.n[draining], Stopping: p.n[stopping],
		ColdStart: s.cfg.ColdStart}
	if p.n[starting] > 0 {
		var left int64
		for _, c := range p.cs {
			if c.ph == starting {
				left += max(c.until-k, 0)
			}
		}
		dp.StartingLeft = time.Duration(left/int64(p.n[starting])) * s.cfg.Step
	}
	return dp
}

// view is what the policy sees at step k.
func (s *sim) view(k int64) View {
	p := s.pool
	return View{
		Sample: decide.Sample{
			At:       s.at(k),
			Arrivals: float64(s.arrSum) / (float64(min(k+1, s.perSec)) * s.dt),
			Service:  s.service,
			Inflight: p.inflight,
			Queued:   s.queued(),
		},
		Pool:   s.decidePool(k),
		LastUp: s.lastUp,
		ready:  s.candidates,
		pods:   s.pods,
	}
}

// pods is each ready container's concurrency over the last whole second
// as its queue-proxy would report it: its mean in flight plus an equal
// share of the mean queue (in Knative a request waits in the queue-proxy
// of the pod it was sent to, so the pods hold the queue between them).
//
// Before the first whole second it is the present counts.
func (s *sim) pods() []float64 {
	out := make([]float64, 0, s.pool.n[ready])
	whole := s.k >= s.perSec
	queue := s.secQueued
	if !whole {
		queue = float64(s.queued())
	}
	share := queue / float64(max(s.pool.n[ready], 1))
	for _, c := range s.pool.cs {
		if c.ph != ready {
			continue
		}
		conc := c.perSec
		if !whole {
			conc = float64(c.inflight)
		}
		out = append(out, conc+share)
	}
	return out
}

// candidates lists the ready containers as the controller's scaleDown
// does.
func (s *sim) candidates() []decide.Candidate {
	out := make([]decide.Candidate, 0, s.pool.n[ready])
	for _, c := range s.pool.cs {
		if c.ph != ready {
			continue
		}
		k := decide.Candidate{ID: c.id, ReadySince: s.at(c.readyStep), Inflight: c.inflight}
		if c.lastSeen >= 0 {
			k.LastSeen = s.at(c.lastSeen)
		}
		out = append(out, k)
	}
	return out
}

// apply carries out a policy's action at step k, counting events and
// flaps as the controller's scaleUp, start and drain do.
func (s *sim) apply(k int64, a Action) {
	now := s.at(k)
	if a.Start > 0 || a.Reclaim > 0 {
		if s.queued() > 0 && a.Reason != decide.ReasonMinReplicas {
			s.res.QueuedStarts++
		}
		if a.Panic {
			s.res.PanicStartsAt = append(s.res.PanicStartsAt, now.Sub(epoch))
		}
		if decide.Flap(s.lastDown, now, s.cfg.Stable) {
			s.res.Flaps++
			s.lastDown = time.Time{} // one scale-down undone counts once
		}
	}
	if a.Reclaim > 0 {
		s.res.Reclaimed += s.pool.reclaim(a.Reclaim)
	}
	if a.Start > 0 {
		if a.Reason == decide.ReasonDemand || a.Reason == decide.ReasonFromZero {
			s.lastUp = now
		}
		for range a.Start {
			s.pool.add(starting, k+s.cold, -1, k)
		}
		s.res.Started += a.Start
		// A start with no cold start is ready at once.
		s.phases(k)
	}
	if len(a.Drain) > 0 {
		if n := s.pool.drain(a.Drain, k); n > 0 {
			s.res.Drained += n
			s.lastDown = now
		}
	}
}

// result finishes the figures.
func (s *sim) result() Result {
	r := s.res
	r.ContainerSeconds = float64(s.containerSteps) * s.dt
	if r.IdealSeconds > 0 {
		r.Ratio = r.ContainerSeconds / r.IdealSeconds
	}
	if s.end > 0 {
		r.MeanInflight = s.inflightSteps / float64(s.end)
		r.MeanQueued = s.queuedSteps / float64(s.end)
	}
	step := func(h *hist, q float64) time.Duration {
		if i := h.quantile(q); i >= 0 {
			return time.Duration(i) * s.cfg.Step
		}
		return 0
	}
	r.P50, r.P99 = step(&s.lat, 0.5), step(&s.lat, 0.99)
	r.SteadyP99 = step(&s.steadyLat, 0.99)
	return r
}
