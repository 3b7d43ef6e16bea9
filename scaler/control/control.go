// Package control is the scaler's controller: it holds the leader lease,
// keeps the Redis registry in step with the containers the driver runs,
// scales up on demand and down on idleness, and reports what it did.
//
// Decisions are made by package decide (pure functions). This package only
// gathers their inputs, carries out their results and records metrics. All
// decisions of one leadership term are taken by one goroutine (lead), so
// that two triggers (a demand signal and a reconcile, say) never both start
// containers for the same shortfall; the slow work — creating a container
// and waiting for its health, draining one — runs in worker goroutines
// owned by the term, which the term waits for when it ends.
package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"lbscale/balancer/state"
	"lbscale/scaler/config"
	"lbscale/scaler/decide"
	"lbscale/scaler/driver"
)

const (
	// healthPoll is the pause between two health probes of a booting
	// container; it bounds how much the measured cold start overstates.
	healthPoll = 50 * time.Millisecond
	// probeTimeout bounds one health probe.
	probeTimeout = time.Second
	// backoffBase and backoffCap shape the retry delays after Docker or
	// Redis failures (exponential, capped).
	backoffBase = 500 * time.Millisecond
	backoffCap  = 30 * time.Second
	// problemEvery limits the repetition of one failing operation's log line.
	problemEvery = 10 * time.Second
	// eventRecheck is when a reconcile follows one triggered by an event.
	eventRecheck = 200 * time.Millisecond
	// eventsKept is the length of the /status event log.
	eventsKept = 50
)

// Options wires a Controller.
type Options struct {
	Config config.Config
	Store  state.Store
	Driver driver.Driver
	// Health probes addr once and returns nil when it is healthy; nil means
	// HTTPHealth (GET http://addr/healthz must answer 200).
	Health func(ctx context.Context, addr string) error
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Logger (nil: slog.Default()).
	Logger *slog.Logger
}

// Controller is one scaler process's control loop.
type Controller struct {
	cfg    config.Config
	store  state.Store
	drv    driver.Driver
	health func(ctx context.Context, addr string) error
	now    func() time.Time
	log    *slog.Logger
	m      *metrics
	events eventLog

	// Triggers for the lead goroutine; buffered 1 so that they coalesce.
	reconcileCh, downCh chan struct{}

	// alive is the unix-nano time of the lease loop's latest round (healthz).
	alive atomic.Int64

	// wg counts the current term's workers.
	wg sync.WaitGroup

	// auto is the scaling policy with this term's demand samples; only the
	// lead goroutine touches it.
	auto decide.Autoscaler

	mu        sync.Mutex
	leader    bool
	members   map[string]*member
	desired   int
	inflight  int64
	queued    int64
	demand    Demand
	lastUp    time.Time
	lastDown  time.Time // the latest drain for demand or idleness
	flaps     int
	failures  int       // consecutive failed starts
	notBefore time.Time // no start before this (back-off after failures)
	problems  map[string]*problem
}

// phase is where a member is in its life as this leader sees it.
type phase int

const (
	phaseStarting phase = iota // being created, booting, or adopted and health-checked
	phaseReady                 // registered ready
	phaseDraining              // registered draining; waiting for in-flight to reach 0
	phaseStopping              // being stopped and removed
)

var phaseNames = [...]string{"starting", "ready", "draining", "stopping"}

func (p phase) String() string { return phaseNames[p] }

// member is a container of the pool as the leader tracks it.
type member struct {
	id, containerID, addr string
	phase                 phase
	// booted: the container exists (Start returned, or adopted).
	booted bool
	// created is when the start was decided; since the ready time.
	created, since time.Time
	// drainStart is when draining began.
	drainStart time.Time
	// cancel stops the member's worker wait (health wait or drain wait).
	cancel context.CancelFunc
	// reason the member is draining (for the log).
	reason decide.Reason
}

type problem struct {
	first, logged time.Time
	err           string
}

// New returns a controller; call Run to start it.
func New(o Options) *Controller {
	c := &Controller{
		cfg:         o.Config,
		store:       o.Store,
		drv:         o.Driver,
		health:      o.Health,
		now:         o.Now,
		log:         o.Logger,
		m:           newMetrics(o.Config.Pool),
		events:      eventLog{cap: eventsKept},
		reconcileCh: make(chan struct{}, 1),
		downCh:      make(chan struct{}, 1),
		members:     map[string]*member{},
		problems:    map[string]*problem{},
	}
	c.auto = decide.Autoscaler{
		Sizing:      decide.Sizing{Target: c.cfg.TargetInflight, Min: c.cfg.MinReplicas, Max: c.cfg.MaxReplicas, BacklogDrain: c.cfg.BacklogDrain},
		Rule:        decide.Rule(c.cfg.ScaleDown),
		Rate:        c.cfg.MaxScaleDownRate,
		IdleTimeout: c.cfg.IdleTimeout,
		Cooldown:    c.cfg.ScaleUpCooldown,
		Win:         decide.Windows{Stable: c.cfg.StableWindow, Panic: c.cfg.PanicWindow, Every: c.cfg.PollInterval / 2},
	}
	if c.health == nil {
		c.health = HTTPHealth(&http.Client{Timeout: probeTimeout})
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("scaler", c.cfg.ID, "pool", c.cfg.Pool)
	c.alive.Store(c.now().UnixNano())
	return c
}

// HTTPHealth probes GET http://addr/healthz with client; 200 is healthy.
func HTTPHealth(client *http.Client) func(ctx context.Context, addr string) error {
	return func(ctx context.Context, addr string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
		if err != nil {
			return fmt.Errorf("health request for %s: %w", addr, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("health probe %s: %w", addr, err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health probe %s: %s", addr, resp.Status)
		}
		return nil
	}
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run campaigns for the lease and, while it holds it, leads. It returns when
// ctx ends, after the current term's workers stopped and the lease was
// released, so that another scaler takes over at once rather than after the
// TTL.
//
// Lease errors: a scaler that cannot reach Redis cannot know whether another
// took over once its lease has run out, and two leaders would both act. But
// until then the lease is its own: a leader whose last renewal was sent at s
// holds it until s + TTL whatever happens next, since Redis started the TTL
// after receiving it. So a failed renewal is retried once soon, with a short
// timeout, as long as enough of the lease is left for that attempt and a
// margin; otherwise the term ends (workers cancelled) with a third of the TTL
// or more to spare. A single lost reply thus does not end a term, which would
// cancel every worker and make the next term adopt and resume them all.
// Lease timing uses the wall clock, not the injected one: Redis expires the
// key in real time.
func (c *Controller) Run(ctx context.Context) error {
	cr := cron.New(cron.WithLogger(cronLogger{c.log}), cron.WithChain(cron.SkipIfStillRunning(cronLogger{c.log})))
	if _, err := cr.AddFunc(c.cfg.ScaleDownSpec, func() { poke(c.downCh) }); err != nil {
		return fmt.Errorf("schedule scale-down %q: %w", c.cfg.ScaleDownSpec, err)
	}
	cr.Start()
	defer cr.Stop()

	// A leader renews every TTL/3; a follower tries every TTL/6, so that it
	// takes over at most TTL/6 after a dead leader's lease expires (at most
	// TTL + TTL/6 after the leader died).
	renew := max(c.cfg.LeaseTTL/3, 10*time.Millisecond)
	campaign := max(c.cfg.LeaseTTL/6, 10*time.Millisecond)
	retry := campaign // wait before, and timeout of, a retried renewal
	var validUntil time.Time
	retrying := false
	tick := time.NewTimer(renew) // reset before every wait
	defer tick.Stop()
	var endTerm func()
	defer func() {
		if endTerm != nil {
			endTerm()
		}
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := c.store.ReleaseLease(rctx, c.cfg.ID); err != nil {
			c.log.Warn("release lease", "err", err)
		}
	}()
	for {
		c.alive.Store(c.now().UnixNano())
		timeout := renew
		if retrying {
			timeout = retry
		}
		sent := time.Now()
		actx, cancel := context.WithTimeout(ctx, timeout)
		ok, err := c.store.AcquireLease(actx, c.cfg.ID, c.cfg.LeaseTTL)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		retrying = false
		switch {
		case err == nil:
			c.recover("redis lease")
			if ok {
				validUntil = sent.Add(c.cfg.LeaseTTL)
			}
		case endTerm != nil && time.Until(validUntil) > 3*retry:
			// Still ours for a wait, an attempt and a margin: try again.
			c.fail("redis lease", err)
			ok, retrying = true, true
		default:
			c.fail("redis lease", err)
			ok = false
		}
		switch {
		case ok && endTerm == nil:
			endTerm = c.startTerm(ctx)
		case !ok && endTerm != nil:
			endTerm()
			endTerm = nil
		}
		switch {
		case retrying:
			tick.Reset(retry)
		case endTerm != nil:
			tick.Reset(renew)
		default:
			tick.Reset(campaign)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// startTerm begins leading; the returned func ends the term and waits.
func (c *Controller) startTerm(parent context.Context) func() {
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	c.mu.Lock()
	c.leader = true
	c.mu.Unlock()
	c.auto.Win.Reset() // lead has not started: no other goroutine holds it
	c.m.leader.Set(1)
	c.log.Info("leading: lease acquired")
	go func() {
		defer close(done)
		c.lead(ctx)
	}()
	return func() {
		cancel()
		<-done
		c.mu.Lock()
		c.leader = false
		c.members = map[string]*member{}
		c.desired, c.inflight, c.queued, c.demand = 0, 0, 0, Demand{}
		c.lastDown = time.Time{}
		// A new term starts afresh: back-off and cooldown from this one
		// must not hold back the starts of the next.
		c.failures, c.notBefore, c.lastUp = 0, time.Time{}, time.Time{}
		c.mu.Unlock()
		c.gauges() // a follower reports no replicas: only the leader's view counts
		c.m.leader.Set(0)
		c.log.Info("stepped down")
	}
}

// lead takes every decision of one term, one at a time.
func (c *Controller) lead(ctx context.Context) {
	defer c.wg.Wait()
	watch := c.drv.Watch(ctx)
	demand := c.store.Demand(ctx)
	poll := time.NewTicker(c.cfg.PollInterval)
	defer poll.Stop()
	recon := time.NewTimer(0) // adopt and repair first, before any scaling
	defer recon.Stop()
	failures := 0
	// reconciled: one reconcile succeeded this term, so the members are
	// known. Until then no scaling decision is taken: with an empty view
	// every decision would see zero replicas and start MIN_REPLICAS anew.
	reconciled := false
	reconcile := func(next time.Duration) {
		if err := c.reconcile(ctx); err != nil && ctx.Err() == nil {
			failures++
			next = max(next, decide.Backoff(failures, backoffBase, backoffCap))
		} else if err == nil {
			failures = 0
			reconciled = true
		}
		recon.Reset(next)
		c.gauges()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-recon.C:
			reconcile(c.cfg.ReconcileInterval)
		case _, ok := <-watch:
			if !ok {
				watch = nil
				continue
			}
			// The engine may send an event a moment before its container
			// list shows the change (die before the state reads exited), so
			// look again shortly after as well as now.
			c.log.Debug("reconcile on container event")
			reconcile(min(eventRecheck, c.cfg.ReconcileInterval))
		case <-c.reconcileCh:
			reconcile(c.cfg.ReconcileInterval)
		case _, ok := <-demand:
			if !ok {
				demand = nil
				continue
			}
			if reconciled {
				c.scaleUp(ctx)
			}
		case <-poll.C:
			if reconciled {
				c.scaleUp(ctx)
			}
		case <-c.downCh:
			if reconciled {
				c.scaleDown(ctx)
			}
		}
	}
}

// busyLocked adds to set the ids a worker owns.
func (c *Controller) busyLocked(set map[string]bool) {
	for id, m := range c.members {
		if m.phase != phaseReady {
			set[id] = true
		}
	}
}

// busyCapacityLocked counts the busy members that are capacity: starting
// ones, and ones that became ready since the busy set was taken (Reconcile
// skips them, so they would count nowhere else and be started twice).
func (c *Controller) busyCapacityLocked(busy map[string]bool) (n int) {
	for id, m := range c.members {
		if busy[id] && (m.phase == phaseStarting || m.phase == phaseReady) {
			n++
		}
	}
	return n
}

// reconcile makes the registry and the engine agree (see decide.Reconcile)
// and keeps MIN_REPLICAS..MAX_REPLICAS.
func (c *Controller) reconcile(ctx context.Context) error {
	// Busy ids are taken before and after listing: a start that finishes
	// while we list is busy in the first set, one that begins in the second,
	// so neither is mistaken for an unknown container or a stale entry.
	busy := map[string]bool{}
	c.mu.Lock()
	c.busyLocked(busy)
	c.mu.Unlock()

	insts, err := c.drv.List(ctx)
	if err != nil {
		c.fail("docker list", err)
		return err
	}
	c.recover("docker list")
	reg, err := c.store.Backends(ctx)
	if err != nil {
		c.fail("redis registry", err)
		return err
	}
	c.recover("redis registry")
	now := c.now()

	c.mu.Lock()
	c.busyLocked(busy)
	starting := c.busyCapacityLocked(busy)
	for _, in := range insts {
		// A container that died while booting: end its health wait now
		// rather than at HEALTH_TIMEOUT.
		if m := c.members[in.ID]; m != nil && m.phase == phaseStarting && m.booted && in.Gone() && m.cancel != nil {
			m.cancel()
		}
	}
	plan := decide.Reconcile(decide.World{
		Containers:  insts,
		Registry:    reg,
		Busy:        busy,
		Starting:    starting,
		Min:         c.cfg.MinReplicas,
		Max:         c.cfg.MaxReplicas,
		StaleCreate: c.cfg.HealthTimeout + time.Minute,
	}, now)
	keep := map[string]state.Backend{}
	for _, b := range plan.Ready {
		keep[b.ID] = b
	}
	for id, m := range c.members {
		if m.phase == phaseReady && !busy[id] {
			if _, ok := keep[id]; !ok {
				delete(c.members, id)
			}
		}
	}
	for _, b := range plan.Ready {
		if m := c.members[b.ID]; m != nil {
			m.addr = b.Addr
			continue
		}
		c.members[b.ID] = &member{id: b.ID, addr: b.Addr, phase: phaseReady, booted: true, since: b.Since, created: b.Since}
	}
	c.mu.Unlock()

	// Unregister first: balancers stop dialling a dead address at their
	// next sync, whatever removing the container costs.
	for _, id := range plan.Unregister {
		if err := c.store.RemoveBackend(ctx, id); err != nil {
			c.fail("redis registry", err)
		} else {
			c.log.Info("unregistered backend without a running container", "id", id)
		}
	}
	if len(plan.Unregister) > 0 {
		c.record(Event{Direction: "down", Reason: decide.ReasonExited, Count: len(plan.Unregister), IDs: plan.Unregister})
	}
	for _, id := range plan.Remove {
		if err := c.drv.Stop(ctx, id, 0); err != nil {
			c.fail("docker remove", err)
		} else {
			c.log.Info("removed stopped container", "id", id)
		}
	}
	for _, b := range plan.Rewrite {
		if err := c.store.PutBackend(ctx, b); err != nil {
			c.fail("redis registry", err)
		}
	}
	for _, in := range plan.Adopt {
		c.adopt(ctx, in)
	}
	for _, b := range plan.Resume {
		c.resumeDrain(ctx, b)
	}
	c.drain(ctx, plan.Trim, decide.ReasonAboveMax)
	if plan.Start > 0 {
		c.mu.Lock()
		held := now.Before(c.notBefore)
		c.mu.Unlock()
		if held {
			c.log.Debug("below min but starts back off after failures", "need", plan.Start)
		} else {
			c.mu.Lock()
			ev := Event{Desired: max(c.desired, c.cfg.MinReplicas), Inflight: c.inflight, Queued: c.queued}
			c.mu.Unlock()
			c.start(ctx, plan.Start, plan.Reason, ev)
		}
	}
	return nil
}

// counts returns members by phase (stopping counts as draining).
func (c *Controller) countsLocked() (ready, starting, draining int) {
	for _, m := range c.members {
		switch m.phase {
		case phaseReady:
			ready++
		case phaseStarting:
			starting++
		default:
			draining++
		}
	}
	return
}

func (c *Controller) gauges() {
	c.mu.Lock()
	ready, starting, draining := c.countsLocked()
	desired := c.desired
	c.mu.Unlock()
	c.m.replicas.WithLabelValues("ready").Set(float64(ready))
	c.m.replicas.WithLabelValues("starting").Set(float64(starting))
	c.m.replicas.WithLabelValues("draining").Set(float64(draining))
	c.m.desired.Set(float64(desired))
}

// observe reads the cluster load and returns it as a demand sample, with
// the load (for per-backend counts).
func (c *Controller) observe(ctx context.Context) (decide.Sample, state.ClusterLoad, bool) {
	load, err := c.store.ClusterLoad(ctx)
	if err != nil {
		c.fail("redis load", err)
		return decide.Sample{}, load, false
	}
	c.recover("redis load")
	cur := decide.Sample{At: c.now(), Arrivals: load.Arrivals, Service: load.Service, Queued: load.Queued}
	c.mu.Lock()
	for id := range c.members {
		cur.Inflight += max(load.Inflight[id], 0)
	}
	c.mu.Unlock()
	return cur, load, true
}

// scaleUp reads the cluster load and adds capacity if it needs more.
func (c *Controller) scaleUp(ctx context.Context) {
	cur, _, ok := c.observe(ctx)
	if !ok {
		return
	}
	now := cur.At
	var p decide.Pool
	c.mu.Lock()
	for _, m := range c.members {
		switch m.phase {
		case phaseReady:
			p.Ready++
		case phaseStarting:
			p.Starting++
		case phaseDraining:
			p.Draining++
		case phaseStopping:
			p.Stopping++
		}
	}
	lastUp, notBefore := c.lastUp, c.notBefore
	c.mu.Unlock()
	res := c.auto.Poll(cur, p, lastUp, notBefore)
	d := Demand{Arrivals: cur.Arrivals, ServiceMs: float64(cur.Service) / 1e6, Steady: cur.Steady(),
		PanicMean: c.auto.Win.PanicMean(now), StableMax: c.auto.Win.StableMax(now), Down: c.auto.Sizing.Down(&c.auto.Win, cur)}
	c.mu.Lock()
	c.desired, c.inflight, c.queued, c.demand = res.Desired, cur.Inflight, cur.Queued, d
	c.mu.Unlock()
	c.m.desired.Set(float64(res.Desired))
	c.m.demand(d)

	ev := Event{Desired: res.Desired, Inflight: cur.Inflight, Queued: cur.Queued, Arrivals: cur.Arrivals, ServiceMs: d.ServiceMs}
	if res.Reclaim > 0 || res.Start > 0 {
		ev.Flap = c.flapCheck(now)
	}
	if res.Reclaim > 0 {
		c.reclaim(ctx, res.Reclaim, ev)
	}
	if res.Start > 0 {
		c.start(ctx, res.Start, res.Reason, ev)
	} else if res.Held != "" {
		c.log.Debug("scale-up held", "why", res.Held, "desired", res.Desired, "ready", p.Ready, "starting", p.Starting)
	}
	c.gauges()
}

// flapCheck counts a scale-up at now as a flap when it follows a
// scale-down within the stable window (decide.Flap).
func (c *Controller) flapCheck(now time.Time) bool {
	c.mu.Lock()
	flap := decide.Flap(c.lastDown, now, c.cfg.StableWindow)
	if flap {
		c.flaps++
		c.lastDown = time.Time{} // one scale-down undone counts once
	}
	c.mu.Unlock()
	if flap {
		c.m.flaps.Inc()
		c.log.Warn("flap: scaling up within STABLE_WINDOW of a scale-down", "stable_window", c.cfg.StableWindow.String())
	}
	return flap
}

// start reserves n members (so that they count as starting at once) and
// starts them concurrently.
func (c *Controller) start(ctx context.Context, n int, reason decide.Reason, ev Event) {
	now := c.now()
	ms := make([]*member, n)
	c.mu.Lock()
	if reason == decide.ReasonDemand || reason == decide.ReasonFromZero {
		// The cooldown spaces reactions to measured load; keeping the
		// MIN_REPLICAS floor is no such reaction and must not delay one.
		c.lastUp = now
	}
	for i := range ms {
		m := &member{id: driver.NewName(c.cfg.Pool), phase: phaseStarting, created: now}
		c.members[m.id] = m
		ms[i] = m
		ev.IDs = append(ev.IDs, m.id)
	}
	c.mu.Unlock()
	ev.Direction, ev.Reason, ev.Count = "up", reason, n
	c.record(ev)
	c.log.Info("scaling up", "reason", reason, "start", n, "desired", ev.Desired, "inflight", ev.Inflight, "queued", ev.Queued)
	for _, m := range ms {
		c.wg.Add(1)
		go c.startOne(ctx, m)
	}
}

// startOne creates a container, registers it starting, waits for its
// health and registers it ready (Since = ready time: balancers ramp its
// share up from then on).
func (c *Controller) startOne(ctx context.Context, m *member) {
	defer c.wg.Done()
	t0 := c.now()
	inst, err := c.drv.Start(ctx, driver.Spec{
		Name:        m.id,
		Image:       c.cfg.WebImage,
		Env:         c.cfg.WebEnv,
		NanoCPUs:    c.cfg.NanoCPUs,
		MemoryBytes: c.cfg.MemoryBytes,
	})
	if err != nil {
		c.startFailed(ctx, m, "create", err, false)
		return
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	m.containerID, m.addr, m.booted, m.cancel = inst.ContainerID, inst.Addr, true, cancel
	c.mu.Unlock()
	if err := c.store.PutBackend(ctx, state.Backend{ID: m.id, Addr: inst.Addr, State: state.Starting, Since: t0}); err != nil {
		c.fail("redis registry", err)
	}
	if err := c.waitHealthy(hctx, inst.Addr); err != nil {
		c.startFailed(ctx, m, "unhealthy", err, true)
		return
	}
	ready := c.now()
	cold := ready.Sub(t0)
	c.m.coldStart.Observe(cold.Seconds())
	c.becomeReady(ctx, m, ready)
	c.mu.Lock()
	c.failures, c.notBefore = 0, time.Time{}
	c.mu.Unlock()
	c.log.Info("container ready", "id", m.id, "addr", inst.Addr, "cold_start", cold.Round(time.Millisecond).String())
}

// becomeReady registers m ready since t.
func (c *Controller) becomeReady(ctx context.Context, m *member, t time.Time) {
	if err := c.store.PutBackend(ctx, state.Backend{ID: m.id, Addr: m.addr, State: state.Ready, Since: t}); err != nil {
		// The next reconcile finds it running but not ready, and adopts it.
		c.fail("redis registry", err)
	}
	c.mu.Lock()
	m.phase, m.since, m.cancel = phaseReady, t, nil
	c.mu.Unlock()
}

// startFailed cleans up after a start that went wrong and backs off.
func (c *Controller) startFailed(ctx context.Context, m *member, why string, err error, booted bool) {
	if ctx.Err() != nil {
		// The term ended: the container (if any) is the next leader's to
		// adopt or remove. Not a failure of the container.
		return
	}
	if booted {
		c.removeMember(ctx, m, 0)
	} else {
		c.mu.Lock()
		delete(c.members, m.id)
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.failures++
	wait := decide.Backoff(c.failures, backoffBase, backoffCap)
	c.notBefore = c.now().Add(wait)
	failures := c.failures
	c.mu.Unlock()
	c.m.failures.WithLabelValues(why).Inc()
	c.log.Error("container start failed", "id", m.id, "why", why, "err", err, "failures", failures, "retry_in", wait.String())
	poke(c.reconcileCh)
}

// waitHealthy probes addr until it is healthy or HEALTH_TIMEOUT passes.
func (c *Controller) waitHealthy(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HealthTimeout)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, probeTimeout)
		err := c.health(pctx, addr)
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("not healthy within %s: %w", c.cfg.HealthTimeout, err)
			}
			return fmt.Errorf("health wait cancelled (container gone?): %w", err)
		case <-time.After(healthPoll):
		}
	}
}

// adopt takes over a running container this leader did not start: it is
// health-checked and then registered ready.
func (c *Controller) adopt(ctx context.Context, in driver.Instance) {
	hctx, cancel := context.WithCancel(ctx)
	m := &member{id: in.ID, containerID: in.ContainerID, addr: in.Addr, phase: phaseStarting, booted: true, created: in.Created, cancel: cancel}
	c.mu.Lock()
	if c.members[in.ID] != nil {
		c.mu.Unlock()
		cancel()
		return
	}
	c.members[in.ID] = m
	c.mu.Unlock()
	c.log.Info("adopting container", "id", in.ID, "addr", in.Addr)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer cancel()
		if err := c.store.PutBackend(ctx, state.Backend{ID: m.id, Addr: m.addr, State: state.Starting, Since: c.now()}); err != nil {
			c.fail("redis registry", err)
		}
		if err := c.waitHealthy(hctx, m.addr); err != nil {
			if ctx.Err() != nil {
				return
			}
			c.log.Warn("adopted container never became healthy; removing it", "id", m.id, "err", err)
			c.record(Event{Direction: "down", Reason: decide.ReasonUnhealthy, Count: 1, IDs: []string{m.id}})
			c.removeMember(ctx, m, 0)
			poke(c.reconcileCh)
			return
		}
		c.becomeReady(ctx, m, c.now())
		c.log.Info("adopted container ready", "id", m.id)
	}()
}

// scaleDown drains what decide.Autoscaler.ScaleDown picks: under
// SCALE_DOWN=demand the surplus once a whole stable window needed fewer
// containers than are ready, under both rules the idle ones (which alone
// may take the pool to zero).
func (c *Controller) scaleDown(ctx context.Context) {
	cur, load, ok := c.observe(ctx)
	if !ok {
		return
	}
	c.mu.Lock()
	var cands []decide.Candidate
	starting := 0
	for id, m := range c.members {
		switch m.phase {
		case phaseReady:
			cands = append(cands, decide.Candidate{ID: id, ReadySince: m.since, LastSeen: load.LastSeen[id], Inflight: load.Inflight[id]})
		case phaseStarting:
			starting++
		}
	}
	c.mu.Unlock()
	surplus, idle := c.auto.ScaleDown(cur, cands, starting)
	if len(surplus) > 0 {
		c.log.Info("scaling down to demand", "drain", surplus, "ready", len(cands),
			"stable_max", fmt.Sprintf("%.2f", c.auto.Win.StableMax(cur.At)), "window", c.cfg.StableWindow.String())
		c.drain(ctx, surplus, decide.ReasonSurplus)
	}
	if len(idle) > 0 {
		c.log.Info("scaling down idle containers", "drain", idle, "ready", len(cands))
		c.drain(ctx, idle, decide.ReasonIdle)
	}
	c.gauges()
}

// drain marks ids draining in the registry (balancers stop picking them at
// their next sync) and hands each to a drain worker.
func (c *Controller) drain(ctx context.Context, ids []string, reason decide.Reason) {
	var done []string
	for _, id := range ids {
		c.mu.Lock()
		m := c.members[id]
		if m == nil || m.phase != phaseReady {
			c.mu.Unlock()
			continue
		}
		b := state.Backend{ID: id, Addr: m.addr, State: state.Draining}
		c.mu.Unlock()
		now := c.now()
		b.Since = now
		if err := c.store.PutBackend(ctx, b); err != nil {
			c.fail("redis registry", err)
			continue
		}
		c.mu.Lock()
		m.phase, m.drainStart, m.reason = phaseDraining, now, reason
		dctx, cancel := context.WithCancel(ctx)
		m.cancel = cancel
		c.mu.Unlock()
		c.wg.Add(1)
		go c.drainOne(ctx, dctx, m)
		done = append(done, id)
	}
	if len(done) > 0 {
		c.mu.Lock()
		ev := Event{Direction: "down", Reason: reason, Count: len(done), IDs: done, Desired: c.desired, Inflight: c.inflight, Queued: c.queued,
			Arrivals: c.demand.Arrivals, ServiceMs: c.demand.ServiceMs}
		if reason == decide.ReasonSurplus || reason == decide.ReasonIdle {
			c.lastDown = c.now()
		}
		c.mu.Unlock()
		c.record(ev)
	}
}

// resumeDrain continues a drain a previous leader began (its deadline
// counts from when that leader marked the entry draining).
func (c *Controller) resumeDrain(ctx context.Context, b state.Backend) {
	c.mu.Lock()
	if c.members[b.ID] != nil {
		c.mu.Unlock()
		return
	}
	dctx, cancel := context.WithCancel(ctx)
	m := &member{id: b.ID, addr: b.Addr, phase: phaseDraining, booted: true, since: b.Since, drainStart: b.Since, cancel: cancel, reason: "resumed"}
	c.members[b.ID] = m
	c.mu.Unlock()
	c.log.Info("resuming drain", "id", b.ID)
	c.wg.Add(1)
	go c.drainOne(ctx, dctx, m)
}

// drainOne waits until m has nothing in flight cluster-wide (after
// DRAIN_SETTLE, so every balancer has seen the draining state) or
// DRAIN_TIMEOUT passed, then stops it with STOP_GRACE and unregisters it.
// A reclaim cancels dctx before the stop begins; once stopping, it goes.
func (c *Controller) drainOne(ctx, dctx context.Context, m *member) {
	defer c.wg.Done()
	c.mu.Lock()
	settle := m.drainStart.Add(c.cfg.DrainSettle)
	deadline := m.drainStart.Add(c.cfg.DrainTimeout)
	c.mu.Unlock()
	tick := time.NewTicker(c.cfg.PollInterval)
	defer tick.Stop()
wait:
	for {
		now := c.now()
		if !now.Before(settle) {
			load, err := c.store.ClusterLoad(dctx)
			switch {
			case err != nil:
				if dctx.Err() == nil {
					c.fail("redis load", err)
				}
			case now.Sub(m.drainStart) < 2*load.SyncInterval:
				// A balancer's view of the registry, and the count it
				// last published, are up to one of its sync intervals
				// old: wait until the slowest has synced twice since the
				// mark, or a request it is about to send would be lost.
			case load.Inflight[m.id] <= 0:
				break wait
			}
		}
		if !now.Before(deadline) {
			c.log.Warn("drain timed out; stopping with requests in flight (the server drains on SIGTERM)", "id", m.id, "timeout", c.cfg.DrainTimeout.String())
			break
		}
		select {
		case <-dctx.Done():
			return
		case <-tick.C:
		}
	}
	c.mu.Lock()
	if dctx.Err() != nil || m.phase != phaseDraining {
		c.mu.Unlock()
		return
	}
	m.phase = phaseStopping
	c.mu.Unlock()
	c.removeMember(ctx, m, c.cfg.StopGrace)
	c.log.Info("container stopped and removed", "id", m.id)
}

// removeMember stops and removes m's container (retrying Docker errors
// with back-off until ctx ends), unregisters it and forgets it.
func (c *Controller) removeMember(ctx context.Context, m *member, grace time.Duration) {
	for attempt := 1; ; attempt++ {
		err := c.drv.Stop(ctx, m.id, grace)
		if err == nil {
			c.recover("docker stop")
			break
		}
		if errors.Is(err, driver.ErrNotInPool) {
			// Never reached through Reconcile (it lists by label); kept as
			// the last guard: forget it, do not touch it.
			c.log.Error("refusing to stop a container outside the pool", "id", m.id, "err", err)
			break
		}
		c.fail("docker stop", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(decide.Backoff(attempt, backoffBase, backoffCap)):
		}
	}
	if err := c.store.RemoveBackend(ctx, m.id); err != nil {
		c.fail("redis registry", err) // the next reconcile drops the entry
	}
	c.mu.Lock()
	if c.members[m.id] == m {
		delete(c.members, m.id)
	}
	c.mu.Unlock()
}

// reclaim puts up to n draining containers back to ready: demand returned
// before they were stopped, and a warm container beats a cold start.
func (c *Controller) reclaim(ctx context.Context, n int, ev Event) {
	c.mu.Lock()
	var ms []*member
	for _, m := range c.members {
		if m.phase == phaseDraining {
			ms = append(ms, m)
		}
	}
	slices.SortFunc(ms, func(a, b *member) int { return b.since.Compare(a.since) })
	ms = ms[:min(n, len(ms))]
	for _, m := range ms {
		m.phase = phaseReady
		if m.cancel != nil {
			m.cancel()
			m.cancel = nil
		}
	}
	c.mu.Unlock()
	for _, m := range ms {
		if err := c.store.PutBackend(ctx, state.Backend{ID: m.id, Addr: m.addr, State: state.Ready, Since: m.since}); err != nil {
			c.fail("redis registry", err) // the next reconcile resumes the drain
		}
		ev.IDs = append(ev.IDs, m.id)
	}
	if len(ms) > 0 {
		ev.Direction, ev.Reason, ev.Count = "up", decide.ReasonReclaim, len(ms)
		c.record(ev)
		c.log.Info("reclaimed draining containers", "ids", ev.IDs)
	}
}

func (c *Controller) record(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = c.now()
	}
	c.m.events.WithLabelValues(ev.Direction, string(ev.Reason)).Add(float64(ev.Count))
	c.events.add(ev)
}

// fail counts and logs a failed operation, at most every problemEvery per
// operation, so that a Redis outage is one line per 10 s, not four a second.
func (c *Controller) fail(op string, err error) {
	c.m.errors.WithLabelValues(op).Inc()
	now := c.now()
	c.mu.Lock()
	p := c.problems[op]
	if p == nil {
		p = &problem{first: now}
		c.problems[op] = p
	}
	p.err = err.Error()
	log := p.logged.IsZero() || now.Sub(p.logged) >= problemEvery
	if log {
		p.logged = now
	}
	since := now.Sub(p.first)
	c.mu.Unlock()
	if log {
		c.log.Warn("operation failing; retrying", "op", op, "err", err, "for", since.Round(time.Millisecond).String())
	}
}

// recover logs once that a failing operation works again.
func (c *Controller) recover(op string) {
	c.mu.Lock()
	p := c.problems[op]
	delete(c.problems, op)
	c.mu.Unlock()
	if p != nil {
		c.log.Info("operation recovered", "op", op, "after", c.now().Sub(p.first).Round(time.Millisecond).String())
	}
}

// cronLogger adapts slog to robfig/cron's logger.
type cronLogger struct{ l *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) { l.l.Debug("cron: "+msg, kv...) }
func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.l.Error("cron: "+msg, append(kv, "err", err)...)
}
