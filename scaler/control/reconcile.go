package control

import (
	"context"
	"log/slog"
	"time"

	"lbscale/internal/state"
	"lbscale/scaler/config"
	"lbscale/scaler/decide"
	"lbscale/scaler/driver"
)

// reconcileStore is the part of state.Store reconcile uses.
type reconcileStore interface {
	Backends(ctx context.Context) ([]state.Backend, error)
	PutBackend(ctx context.Context, b state.Backend) error
	RemoveBackend(ctx context.Context, id string) error
}

// lister is the part of driver.Driver reconcile uses.
type lister interface {
	List(ctx context.Context) ([]driver.Instance, error)
	Stop(ctx context.Context, id string, grace time.Duration) error
}

// reconciler makes the registry and the engine agree and keeps the pool
// within MIN_REPLICAS..MAX_REPLICAS. It decides nothing itself
// (decide.Reconcile does) and does no slow work: it hands adoptions and
// starts to scale-up, resumed drains and trims to drain, whose workers
// carry them out.
type reconciler struct {
	cfg     config.Config
	store   reconcileStore
	drv     lister
	now     func() time.Time
	log     *slog.Logger
	rep     *reporter
	members *memberTable
	up      *upscaler
	down    *drainer
	// surge is the deploy under way's surge: MAX_REPLICAS is exceeded by
	// it while the deploy runs, so that a deploy of a pool at its maximum
	// can start new containers before it drains old ones.
	surge func() int
}

// createGracer is a driver that knows how long one of its containers may
// stay created and not started before it is debris.
type createGracer interface{ CreateGrace() time.Duration }

// staleCreate is how long a created container no worker of this scaler
// owns is left to start: the driver's grace, or a health timeout and a
// minute (a Swarm service whose task Swarm is replacing reads as created).
func (r *reconciler) staleCreate() time.Duration {
	if g, ok := r.drv.(createGracer); ok {
		return g.CreateGrace()
	}
	return r.cfg.HealthTimeout + time.Minute
}

// reconcile makes the registry and the engine agree (see decide.Reconcile)
// and keeps MIN_REPLICAS..MAX_REPLICAS.
func (r *reconciler) reconcile(ctx context.Context) error {
	// Busy ids are taken before and after listing: a start that finishes
	// while we list is busy in the first set, one that begins in the second,
	// so neither is mistaken for an unknown container or a stale entry.
	busy := map[string]bool{}
	r.members.busy(busy)

	insts, err := r.drv.List(ctx)
	if err != nil {
		r.rep.fail("docker list", err)
		return err
	}
	r.rep.recover("docker list")
	reg, err := r.store.Backends(ctx)
	if err != nil {
		r.rep.fail("redis registry", err)
		return err
	}
	r.rep.recover("redis registry")
	now := r.now()

	plan := r.members.reconcile(busy, insts, func(starting int) decide.Plan {
		return decide.Reconcile(decide.World{
			Containers:  insts,
			Registry:    reg,
			Busy:        busy,
			Starting:    starting,
			Min:         r.cfg.MinReplicas,
			Max:         r.cfg.MaxReplicas + r.surge(),
			StaleCreate: r.staleCreate(),
		}, now)
	})

	// Unregister first: balancers stop dialling a dead address at their
	// next sync, whatever removing the container costs.
	for _, id := range plan.Unregister {
		if err := r.store.RemoveBackend(ctx, id); err != nil {
			r.rep.fail("redis registry", err)
		} else {
			r.log.Info("unregistered backend without a running container", "id", id)
		}
	}
	if len(plan.Unregister) > 0 {
		r.rep.record(Event{Direction: "down", Reason: decide.ReasonExited, Count: len(plan.Unregister), IDs: plan.Unregister})
	}
	for _, id := range plan.Remove {
		if err := r.drv.Stop(ctx, id, 0); err != nil {
			r.rep.fail("docker remove", err)
		} else {
			r.log.Info("removed stopped container", "id", id)
		}
	}
	for _, b := range plan.Rewrite {
		if err := r.store.PutBackend(ctx, b); err != nil {
			r.rep.fail("redis registry", err)
		}
	}
	for _, in := range plan.Adopt {
		r.up.adopt(ctx, in)
	}
	for _, b := range plan.Resume {
		r.down.resumeDrain(ctx, b)
	}
	r.down.drain(ctx, plan.Trim, decide.ReasonAboveMax)
	if plan.Start > 0 {
		if now.Before(r.up.heldUntil()) {
			r.log.Debug("below min but starts back off after failures", "need", plan.Start)
		} else {
			l := r.up.latest()
			ev := Event{Desired: max(l.desired, r.cfg.MinReplicas), Inflight: l.inflight, Queued: l.queued}
			r.up.start(ctx, plan.Start, plan.Reason, ev)
		}
	}
	return nil
}
