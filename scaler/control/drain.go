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

// drainStore is the part of state.Store drain uses.
type drainStore interface {
	ClusterLoad(ctx context.Context) (state.ClusterLoad, error)
	PutBackend(ctx context.Context, b state.Backend) error
	RemoveBackend(ctx context.Context, id string) error
}

// stopper is the part of driver.Driver drain uses.
type stopper interface {
	Stop(ctx context.Context, id string, grace time.Duration) error
}

// loadView is what scale-down needs of scale-up: the same load reading
// (both directions decide on one sample stream), the latest figures for
// the events it records, and the gauges to refresh after it acted.
type loadView interface {
	observe(ctx context.Context) (decide.Sample, state.ClusterLoad, bool)
	latest() reading
	gauges()
	stats() map[string]backendStats
	connsOf(id string) int64
}

var _ loadView = (*upscaler)(nil)

// drainer takes capacity away without losing a request: it marks a
// container draining in the registry (balancers stop picking it at their
// next sync), waits in a worker until nothing is in flight on it
// cluster-wide, then stops and unregisters it. Its decisions are taken on
// the lead goroutine; a reclaim (scale-up) may take a draining member back
// until its stop begins.
type drainer struct {
	cfg     config.Config
	store   drainStore
	drv     stopper
	now     func() time.Time
	log     *slog.Logger
	rep     *reporter
	members *memberTable
	// auto is the scaling policy; only the lead goroutine touches it.
	auto *decide.Autoscaler
	// workers counts the term's workers; the term waits for them.
	workers *sync.WaitGroup
	flaps   *flapMeter
	load    loadView
	// deploy says which members a deploy is replacing (scale-down takes
	// them first) and which is its canary (scale-down leaves it alone).
	deploy func() deployView
	// floor is the pool's minimum at each poll; scale-down never goes below.
	floor *floorKeeper
}

var _ remover = (*drainer)(nil)

// scaleDown drains what decide.Autoscaler.ScaleDown picks: under
// SCALE_DOWN=demand the surplus once a whole stable window needed fewer
// containers than are ready, under both rules the idle ones (which alone
// may take the pool to zero).
func (d *drainer) scaleDown(ctx context.Context) {
	cur, load, ok := d.load.observe(ctx)
	if !ok {
		return
	}
	cands := d.members.candidates(load, d.load.stats(), d.deploy())
	d.auto.Sizing.Min = d.floor.at(cur).Replicas
	surplus, idle := d.auto.ScaleDown(cur, cands, d.members.pool(cur.At))
	if len(surplus) > 0 {
		d.log.Info("scaling down to demand", "drain", surplus, "ready", len(cands),
			"stable_max", fmt.Sprintf("%.2f", d.auto.Win.StableMax(cur.At)), "window", d.cfg.StableWindow.String())
		d.drain(ctx, surplus, decide.ReasonSurplus)
	}
	if len(idle) > 0 {
		d.log.Info("scaling down idle containers", "drain", idle, "ready", len(cands))
		d.drain(ctx, idle, decide.ReasonIdle)
	}
	d.load.gauges()
}

// drain marks ids draining in the registry (balancers stop picking them at
// their next sync) and hands each to a drain worker.
func (d *drainer) drain(ctx context.Context, ids []string, reason decide.Reason) {
	var done []string
	for _, id := range ids {
		m, b := d.members.drainable(id)
		if m == nil {
			continue
		}
		now := d.now()
		b.Since = now
		if err := d.store.PutBackend(ctx, b); err != nil {
			d.rep.fail("redis registry", err)
			continue
		}
		dctx := d.members.draining(ctx, m, now, reason)
		d.workers.Add(1)
		go d.drainOne(ctx, dctx, m)
		done = append(done, id)
	}
	if len(done) > 0 {
		r := d.load.latest()
		ev := Event{Direction: "down", Reason: reason, Count: len(done), IDs: done, Desired: r.desired, Inflight: r.inflight, Queued: r.queued,
			Arrivals: r.demand.Arrivals, ServiceMs: r.demand.ServiceMs}
		if reason == decide.ReasonSurplus || reason == decide.ReasonIdle {
			d.flaps.down(d.now())
		}
		d.rep.record(ev)
	}
}

// resumeDrain continues a drain a previous leader began (its deadline
// counts from when that leader marked the entry draining).
func (d *drainer) resumeDrain(ctx context.Context, b state.Backend) {
	dctx, cancel := context.WithCancel(ctx)
	m := &member{id: b.ID, addr: b.Addr, phase: phaseDraining, booted: true, since: b.Since, drainStart: b.Since, cancel: cancel, reason: "resumed"}
	if !d.members.add(m) {
		cancel()
		return
	}
	d.log.Info("resuming drain", "id", b.ID)
	d.workers.Add(1)
	go d.drainOne(ctx, dctx, m)
}

// drainOne waits until m has nothing in flight cluster-wide (after
// DRAIN_SETTLE, so every balancer has seen the draining state) or
// DRAIN_TIMEOUT passed, and until its long-lived connections are closed or
// CONNECTION_DRAIN passed, then stops it with STOP_GRACE and unregisters
// it. The connections get their own bound: a WebSocket lives for minutes,
// and neither must a request wait for one nor must one be cut as soon as
// the requests are done; the application (or its client) closes it in
// that time, and SIGTERM tells the rest. A reclaim cancels dctx before the
// stop begins; once stopping, it goes.
func (d *drainer) drainOne(ctx, dctx context.Context, m *member) {
	defer d.workers.Done()
	start := d.members.drainStart(m)
	settle := start.Add(d.cfg.DrainSettle)
	deadline := start.Add(d.cfg.DrainTimeout)
	connDeadline := start.Add(d.cfg.ConnDrain)
	requestsDone := false
	tick := time.NewTicker(d.cfg.PollInterval)
	defer tick.Stop()
wait:
	for {
		now := d.now()
		if !now.Before(settle) {
			load, err := d.store.ClusterLoad(dctx)
			switch {
			case err != nil:
				if dctx.Err() == nil {
					d.rep.fail("redis load", err)
				}
			case now.Sub(start) < 2*load.SyncInterval:
				// A balancer's view of the registry, and the count it
				// last published, are up to one of its sync intervals
				// old: wait until the slowest has synced twice since the
				// mark, or a request it is about to send would be lost.
			case load.Inflight[m.id] <= 0:
				requestsDone = true
			}
		}
		if !requestsDone && !now.Before(deadline) {
			d.log.Warn("drain timed out; stopping with requests in flight (the server drains on SIGTERM)", "id", m.id, "timeout", d.cfg.DrainTimeout.String())
			requestsDone = true
		}
		if requestsDone {
			conns := d.load.connsOf(m.id)
			if conns <= 0 {
				break wait
			}
			if !now.Before(connDeadline) {
				d.log.Info("connection drain over; stopping with long-lived connections open (the server closes them on SIGTERM)",
					"id", m.id, "conns", conns, "connection_drain", d.cfg.ConnDrain.String())
				break wait
			}
		}
		select {
		case <-dctx.Done():
			return
		case <-tick.C:
		}
	}
	if !d.members.stopping(dctx, m) {
		return
	}
	d.removeMember(ctx, m, d.cfg.StopGrace)
	d.log.Info("container stopped and removed", "id", m.id)
}

// removeMember stops and removes m's container (retrying Docker errors
// with back-off until ctx ends), unregisters it and forgets it.
func (d *drainer) removeMember(ctx context.Context, m *member, grace time.Duration) {
	for attempt := 1; ; attempt++ {
		err := d.drv.Stop(ctx, m.id, grace)
		if err == nil {
			d.rep.recover("docker stop")
			break
		}
		if errors.Is(err, driver.ErrNotInPool) {
			// Never reached through Reconcile (it lists by label); kept as
			// the last guard: forget it, do not touch it.
			d.log.Error("refusing to stop a container outside the pool", "id", m.id, "err", err)
			break
		}
		d.rep.fail("docker stop", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(decide.Backoff(attempt, backoffBase, backoffCap)):
		}
	}
	if err := d.store.RemoveBackend(ctx, m.id); err != nil {
		d.rep.fail("redis registry", err) // the next reconcile drops the entry
	}
	d.members.remove(m)
	d.rep.finished(m.id, d.now())
}
