package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"lbscale/internal/state"
	"lbscale/scaler/config"
	"lbscale/scaler/decide"
	"lbscale/scaler/driver"
)

// upStore is the part of state.Store scale-up uses.
type upStore interface {
	ClusterLoad(ctx context.Context) (state.ClusterLoad, error)
	PutBackend(ctx context.Context, b state.Backend) error
	Reports(ctx context.Context) ([]state.Report, error)
}

// starter is the part of driver.Driver scale-up uses.
type starter interface {
	Start(ctx context.Context, spec driver.Spec) (driver.Instance, error)
}

// opStart names failed starts among the problems of /status.
const opStart = "container start"

// remover stops a member's container, unregisters it and forgets it; scale-up
// uses it to clean up after a start that failed once the container existed.
type remover interface {
	removeMember(ctx context.Context, m *member, grace time.Duration)
}

// reading is the latest load reading of a scale-up and what it made of it:
// /status shows it, the gauges and every scale event carry it, so that an
// event says what the decision saw.
type reading struct {
	desired          int
	inflight, queued int64
	demand           Demand
}

// upscaler adds capacity: it reads the cluster load, asks
// decide.Autoscaler.Poll how many containers the demand needs, reclaims
// draining ones first and starts the rest, each in a worker that creates
// the container, waits for its health and registers it ready. It also
// adopts running containers a previous leader left. Its decisions are
// taken on the lead goroutine only; its workers report back through the
// member table and its own small state below.
type upscaler struct {
	cfg     config.Config
	store   upStore
	drv     starter
	health  func(ctx context.Context, addr string) error
	now     func() time.Time
	log     *slog.Logger
	m       *metrics
	rep     *reporter
	members *memberTable
	// auto is the scaling policy with this term's demand samples; only the
	// lead goroutine touches it (scale-down reads the same windows).
	auto *decide.Autoscaler
	// workers counts the term's workers; the term waits for them.
	workers *sync.WaitGroup
	flaps   *flapMeter
	remove  remover
	// recheck asks the lead goroutine for a reconcile (after a failure).
	recheck chan struct{}
	// image is the image new containers run, as the pool's deploy has it
	// now; failed hears of every failed start (a deploy's new image that
	// fails its health gate rolls back).
	image  func() string
	failed func(image string, err error)
	// floor is the pool's minimum at each poll (MIN_REPLICAS, the
	// schedule, the forecast).
	floor *floorKeeper

	mu        sync.Mutex // protects the fields below
	latestR   reading
	loadR     state.ClusterLoad       // the latest reading's load
	statsR    map[string]backendStats // per backend, from the latest reports read
	statsAt   time.Time               // when they were read
	lastUp    time.Time
	failures  int           // consecutive failed starts
	notBefore time.Time     // no start before this (back-off after failures)
	cold      time.Duration // the latest measured cold start; kept across terms
}

// coldStart is the latest measured cold start (0: none yet): the image's,
// not the term's, so a new term keeps it.
func (u *upscaler) coldStart() time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cold
}

// latest returns the latest reading (zero before the first of a term).
func (u *upscaler) latest() reading {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.latestR
}

// heldUntil is when starts may resume after failures (zero: they may).
func (u *upscaler) heldUntil() time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.notBefore
}

// endTerm forgets the term's reading, and its back-off and cooldown: they
// must not hold back the starts of the next term.
func (u *upscaler) endTerm() {
	u.mu.Lock()
	u.latestR, u.statsR, u.loadR = reading{}, nil, state.ClusterLoad{}
	u.failures, u.notBefore, u.lastUp = 0, time.Time{}, time.Time{}
	u.mu.Unlock()
}

// gauges publishes the members by phase and the desired count.
func (u *upscaler) gauges() {
	ready, starting, draining := u.members.counts()
	desired := u.latest().desired
	u.m.replicas.WithLabelValues("ready").Set(float64(ready))
	u.m.replicas.WithLabelValues("starting").Set(float64(starting))
	u.m.replicas.WithLabelValues("draining").Set(float64(draining))
	u.m.desired.Set(float64(desired))
}

// observe reads the cluster load and returns it as a demand sample, with
// the load (for per-backend counts).
func (u *upscaler) observe(ctx context.Context) (decide.Sample, state.ClusterLoad, bool) {
	load, err := u.store.ClusterLoad(ctx)
	if err != nil {
		u.rep.fail("redis load", err)
		return decide.Sample{}, load, false
	}
	u.rep.recover("redis load")
	cur := decide.Sample{At: u.now(), Arrivals: load.Arrivals, Service: load.Service, Queued: load.Queued}
	cur.Inflight += u.members.inflight(load)
	// The balancers' reports carry the long-lived connections. They are
	// written once per state.ReportEvery, so they are read no more often
	// than that, not at every poll. A failed read keeps the last figures
	// (they hold for seconds; a scale-down that read none would take them
	// for gone).
	u.mu.Lock()
	due := u.statsR == nil || cur.At.Sub(u.statsAt) >= state.ReportEvery
	u.mu.Unlock()
	if due {
		if rs, err := u.store.Reports(ctx); err != nil {
			u.rep.fail("redis reports", err)
		} else {
			u.rep.recover("redis reports")
			st := sumReports(rs, cur.At)
			u.mu.Lock()
			u.statsR, u.statsAt = st, cur.At
			u.mu.Unlock()
		}
	}
	cur.Conns = u.members.conns(u.stats())
	u.mu.Lock()
	u.loadR = load
	u.mu.Unlock()
	return cur, load, true
}

// stats returns the per-backend figures of the latest reading (nil before
// the first of a term). The map is never changed once published.
func (u *upscaler) stats() map[string]backendStats {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.statsR
}

// inflightOf is backend id's cluster-wide in-flight count, as last read.
func (u *upscaler) inflightOf(id string) int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.loadR.Inflight[id]
}

// connsOf is backend id's open long-lived connections, as last read.
func (u *upscaler) connsOf(id string) int64 { return u.stats()[id].Conns }

// scaleUp reads the cluster load and adds capacity if it needs more.
func (u *upscaler) scaleUp(ctx context.Context) {
	cur, _, ok := u.observe(ctx)
	if !ok {
		return
	}
	now := cur.At
	p := u.members.pool(now)
	u.mu.Lock()
	lastUp, notBefore := u.lastUp, u.notBefore
	u.mu.Unlock()
	fl := u.floor.poll(ctx, cur)
	u.auto.Sizing.Min = fl.Replicas
	res := u.auto.Poll(cur, p, lastUp, notBefore)
	res.Reason = fl.reason(res.Reason, p.Ready+p.Starting, u.cfg.MinReplicas)
	d := Demand{Arrivals: cur.Arrivals, ServiceMs: float64(cur.Service) / 1e6, Steady: cur.Steady(),
		PanicMean: u.auto.Win.PanicMean(now), StableMax: u.auto.Win.StableMax(now), Down: u.auto.Sizing.Down(&u.auto.Win, cur)}
	u.mu.Lock()
	u.latestR = reading{desired: res.Desired, inflight: cur.Inflight, queued: cur.Queued, demand: d}
	u.mu.Unlock()
	u.m.desired.Set(float64(res.Desired))
	u.m.conns.Set(float64(cur.Conns))
	u.m.demand(d)

	ev := Event{Desired: res.Desired, Inflight: cur.Inflight, Queued: cur.Queued, Arrivals: cur.Arrivals, ServiceMs: d.ServiceMs}
	if res.Reclaim > 0 || res.Start > 0 {
		ev.Flap = u.flapCheck(now)
	}
	if res.Reclaim > 0 {
		u.reclaim(ctx, res.Reclaim, ev)
	}
	if res.Start > 0 {
		u.start(ctx, res.Start, res.Reason, ev)
	} else if res.Held != "" {
		u.log.Debug("scale-up held", "why", res.Held, "desired", res.Desired, "ready", p.Ready, "starting", p.Starting)
	}
	u.gauges()
}

// flapCheck counts a scale-up at now as a flap when it follows a
// scale-down within the stable window (decide.Flap).
func (u *upscaler) flapCheck(now time.Time) bool {
	flap := u.flaps.up(now)
	if flap {
		u.m.flaps.Inc()
		u.log.Warn("flap: scaling up within STABLE_WINDOW of a scale-down", "stable_window", u.cfg.StableWindow.String())
	}
	return flap
}

// start reserves n members on the pool's current image (so that they
// count as starting at once) and starts them concurrently.
func (u *upscaler) start(ctx context.Context, n int, reason decide.Reason, ev Event) {
	u.startWith(ctx, n, u.image(), reason, ev)
}

// startWith starts n members on image and returns their ids.
func (u *upscaler) startWith(ctx context.Context, n int, image string, reason decide.Reason, ev Event) []string {
	now := u.now()
	ms := make([]*member, n)
	if reason == decide.ReasonDemand || reason == decide.ReasonFromZero {
		// The cooldown spaces reactions to measured load; keeping the
		// floor (MIN_REPLICAS, the schedule's, the forecast's) is no such
		// reaction and must not delay one.
		u.mu.Lock()
		u.lastUp = now
		u.mu.Unlock()
	}
	for i := range ms {
		m := &member{id: driver.NewName(u.cfg.Pool), image: image, phase: phaseStarting, created: now}
		u.members.put(m)
		ms[i] = m
		ev.IDs = append(ev.IDs, m.id)
	}
	ev.Direction, ev.Reason, ev.Count = "up", reason, n
	u.rep.record(ev)
	u.log.Info("scaling up", "reason", reason, "start", n, "image", image, "desired", ev.Desired, "inflight", ev.Inflight, "queued", ev.Queued)
	for _, m := range ms {
		u.workers.Add(1)
		go u.startOne(ctx, m)
	}
	return ev.IDs[len(ev.IDs)-n:]
}

// startOne creates a container, registers it starting, waits for its
// health and registers it ready (Since = ready time: balancers ramp its
// share up from then on).
func (u *upscaler) startOne(ctx context.Context, m *member) {
	defer u.workers.Done()
	t0 := u.now()
	inst, err := u.drv.Start(ctx, driver.Spec{
		Name:        m.id,
		Image:       m.image,
		Env:         u.cfg.WebEnv,
		NanoCPUs:    u.cfg.NanoCPUs,
		MemoryBytes: u.cfg.MemoryBytes,
	})
	if err != nil {
		u.startFailed(ctx, m, "create", err, false)
		return
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	u.members.booted(m, inst, cancel)
	if err := u.store.PutBackend(ctx, state.Backend{ID: m.id, Addr: inst.Addr, State: state.Starting, Since: t0}); err != nil {
		u.rep.fail("redis registry", err)
	}
	if err := u.waitHealthy(hctx, inst.Addr); err != nil {
		u.startFailed(ctx, m, "unhealthy", err, true)
		return
	}
	ready := u.now()
	cold := ready.Sub(t0)
	u.m.coldStart.Observe(cold.Seconds())
	u.members.coldStarted(cold)
	u.becomeReady(ctx, m, ready)
	u.mu.Lock()
	u.failures, u.notBefore, u.cold = 0, time.Time{}, cold
	u.mu.Unlock()
	u.rep.recover(opStart)
	u.log.Info("container ready", "id", m.id, "addr", inst.Addr, "cold_start", cold.Round(time.Millisecond).String())
}

// becomeReady registers m ready since t.
func (u *upscaler) becomeReady(ctx context.Context, m *member, t time.Time) {
	if err := u.store.PutBackend(ctx, state.Backend{ID: m.id, Addr: m.addr, State: state.Ready, Since: t}); err != nil {
		// The next reconcile finds it running but not ready, and adopts it.
		u.rep.fail("redis registry", err)
	}
	u.members.ready(m, t)
	u.rep.finished(m.id, t)
}

// startFailed cleans up after a start that went wrong and backs off.
func (u *upscaler) startFailed(ctx context.Context, m *member, why string, err error, booted bool) {
	if ctx.Err() != nil {
		// The term ended: the container (if any) is the next leader's to
		// adopt or remove. Not a failure of the container.
		return
	}
	if booted {
		u.remove.removeMember(ctx, m, 0)
	} else {
		u.members.delete(m.id)
	}
	u.mu.Lock()
	u.failures++
	wait := decide.Backoff(u.failures, backoffBase, backoffCap)
	u.notBefore = u.now().Add(wait)
	failures := u.failures
	u.mu.Unlock()
	u.m.failures.WithLabelValues(why).Inc()
	if u.failed != nil {
		u.failed(m.image, err)
	}
	// In /status too, not only in the log: a start that can never succeed
	// (a wrong image, a HEALTH_PATH the image does not serve) shows there
	// as the pool's problem until a start works.
	u.rep.problem(opStart, err)
	u.log.Error("container start failed", "id", m.id, "why", why, "err", err, "failures", failures, "retry_in", wait.String())
	poke(u.recheck)
}

// waitHealthy probes addr until it is healthy or HEALTH_TIMEOUT passes.
func (u *upscaler) waitHealthy(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, u.cfg.HealthTimeout)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, probeTimeout)
		err := u.health(pctx, addr)
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("not healthy within %s: %w", u.cfg.HealthTimeout, err)
			}
			return fmt.Errorf("health wait cancelled (container gone?): %w", err)
		case <-time.After(healthPoll):
		}
	}
}

// adopt takes over a running container this leader did not start: it is
// health-checked and then registered ready.
func (u *upscaler) adopt(ctx context.Context, in driver.Instance) {
	hctx, cancel := context.WithCancel(ctx)
	m := &member{id: in.ID, containerID: in.ContainerID, addr: in.Addr, image: in.Image, phase: phaseStarting, booted: true, created: in.Created, cancel: cancel}
	if !u.members.add(m) {
		cancel()
		return
	}
	u.log.Info("adopting container", "id", in.ID, "addr", in.Addr)
	u.workers.Add(1)
	go func() {
		defer u.workers.Done()
		defer cancel()
		if err := u.store.PutBackend(ctx, state.Backend{ID: m.id, Addr: m.addr, State: state.Starting, Since: u.now()}); err != nil {
			u.rep.fail("redis registry", err)
		}
		if err := u.waitHealthy(hctx, m.addr); err != nil {
			if ctx.Err() != nil {
				return
			}
			u.log.Warn("adopted container never became healthy; removing it", "id", m.id, "err", err)
			u.rep.record(Event{Direction: "down", Reason: decide.ReasonUnhealthy, Count: 1, IDs: []string{m.id}})
			u.remove.removeMember(ctx, m, 0)
			poke(u.recheck)
			return
		}
		u.becomeReady(ctx, m, u.now())
		u.log.Info("adopted container ready", "id", m.id)
	}()
}

// reclaim puts up to n draining containers back to ready: demand returned
// before they were stopped, and a warm container beats a cold start.
func (u *upscaler) reclaim(ctx context.Context, n int, ev Event) {
	ms := u.members.reclaim(n)
	for _, m := range ms {
		if err := u.store.PutBackend(ctx, state.Backend{ID: m.id, Addr: m.addr, State: state.Ready, Since: m.since}); err != nil {
			u.rep.fail("redis registry", err) // the next reconcile resumes the drain
		}
		ev.IDs = append(ev.IDs, m.id)
	}
	if len(ms) > 0 {
		ev.Direction, ev.Reason, ev.Count = "up", decide.ReasonReclaim, len(ms)
		u.rep.record(ev)
		u.log.Info("reclaimed draining containers", "ids", ev.IDs)
	}
}

// flapMeter notices scale-ups that undo a recent scale-down: a sign that
// STABLE_WINDOW or the scale-down rule is too eager. Drain reports the
// scale-downs, scale-up asks about its scale-ups.
type flapMeter struct {
	window time.Duration // STABLE_WINDOW

	mu       sync.Mutex // protects the fields below
	lastDown time.Time  // the latest drain for demand or idleness, this term
	n        int        // flaps in this process's lifetime
}

// down records a scale-down at t.
func (f *flapMeter) down(t time.Time) {
	f.mu.Lock()
	f.lastDown = t
	f.mu.Unlock()
}

// up reports whether a scale-up at now is a flap (decide.Flap), and counts
// it; one scale-down undone counts once.
func (f *flapMeter) up(now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	flap := decide.Flap(f.lastDown, now, f.window)
	if flap {
		f.n++
		f.lastDown = time.Time{}
	}
	return flap
}

// count is the number of flaps so far.
func (f *flapMeter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// endTerm forgets the term's latest scale-down.
func (f *flapMeter) endTerm() {
	f.mu.Lock()
	f.lastDown = time.Time{}
	f.mu.Unlock()
}
