package control

import (
	"context"
	"errors"
	"sync"
	"time"

	"lbscale/internal/state"
	"lbscale/scaler/decide"
	"lbscale/scaler/driver"
)

// reasonRetired is the reason of the drains that retire a pool: it was
// removed from the pool file.
const reasonRetired decide.Reason = "retired"

// Retire takes the pool out of service: every container is drained (marked
// draining in the registry, so that balancers stop picking it, and stopped
// once nothing is in flight on it cluster-wide or DRAIN_TIMEOUT passed, as a
// scale-down drains), stopped and removed, and the registry is left empty.
// It returns nil once the engine has no container of the pool and the
// registry no entry, or ctx's error if ctx ends first.
//
// It holds the pool's lease while it acts, as a leader does: when several
// scalers retire the pool at once (each read the same pool file), one
// drains and the others wait for the lease, then find nothing left. A
// retiring scaler that dies leaves the lease to expire, and the next one
// resumes the drains (their deadlines count from the registry's marks).
//
// Retire is for a Controller whose Run has returned (or never ran): the
// two share the member table and the workers.
func (c *Controller) Retire(ctx context.Context) error {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	retired := make(chan struct{})
	var once sync.Once
	begin := func(tctx context.Context) func() {
		tctx, tcancel := context.WithCancel(tctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if c.retire(tctx) {
				once.Do(func() { close(retired) })
				cancel() // the lease loop ends, releasing the lease
			}
		}()
		return func() {
			tcancel()
			<-done
		}
	}
	c.log.Info("retiring the pool: draining and removing every container")
	newLease(c.store, c.instance, c.cfg.LeaseTTL, c.now, c.log, c.rep, begin).run(ctx)
	select {
	case <-retired:
		c.log.Info("pool retired: no container left, registry empty")
		return nil
	default:
	}
	if err := parent.Err(); err != nil {
		c.takeBack(context.WithoutCancel(parent))
		return err
	}
	return errors.New("retire ended before the pool was empty")
}

// takeBack marks ready again the running containers the registry lists as
// draining, after a retirement was called off: the pool is back in the
// pool file (or this scaler stops, and the next retirement marks them
// anew), and its next controller should find them serving rather than
// resume their drains and start MIN_REPLICAS beside them.
func (c *Controller) takeBack(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	insts, err := c.drv.List(ctx)
	if err != nil {
		c.log.Warn("retirement called off; its drains are left for the next leader to finish", "err", err)
		return
	}
	reg, err := c.store.Backends(ctx)
	if err != nil {
		c.log.Warn("retirement called off; its drains are left for the next leader to finish", "err", err)
		return
	}
	running := map[string]string{}
	for _, in := range insts {
		if in.Running() && in.Addr != "" {
			running[in.ID] = in.Addr
		}
	}
	for _, b := range reg {
		addr, ok := running[b.ID]
		if b.State != state.Draining || !ok {
			continue
		}
		b.State, b.Addr, b.Since = state.Ready, addr, c.now()
		if err := c.store.PutBackend(ctx, b); err != nil {
			c.log.Warn("retirement called off; a drain is left for the next leader to finish", "id", b.ID, "err", err)
		}
	}
}

// retire works while it holds the lease: it waits for the balancers to
// let go of the pool, then runs rounds of list, drain and remove, until a
// round finds the pool empty (true) or ctx ends (false).
func (c *Controller) retire(ctx context.Context) bool {
	defer c.members.reset()
	c.awaitBalancersGone(ctx)
	for attempt := 1; ; attempt++ {
		empty, err := c.retireRound(ctx)
		c.wg.Wait() // the round's drains
		if empty {
			return true
		}
		wait := c.cfg.ReconcileInterval
		if err != nil {
			wait = max(wait, decide.Backoff(attempt, backoffBase, backoffCap))
		} else {
			attempt = 0
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}

// retireGrace bounds how long a retirement waits for the balancers to let
// go of the pool: they read the pool file every 0.5 s, as the scalers do,
// so their lag behind this scaler is about that, plus the time the
// requests they routed there take.
const retireGrace = 10 * time.Second

// awaitBalancersGone waits, at most retireGrace, until no live balancer
// serves the pool any more. Each balancer reads the pool file on its own
// and may learn of the removal a moment after this scaler did; until it
// does it routes requests to the pool, and a request it queued there must
// still find a backend. A balancer leaves the pool (and its live set in
// the store) only once the requests it routed there are answered, so once
// none is left the drains below find nothing in flight and nothing
// queued; a balancer that died drops out when its heartbeat expires.
func (c *Controller) awaitBalancersGone(ctx context.Context) {
	deadline := c.now().Add(retireGrace)
	for {
		load, err := c.store.ClusterLoad(ctx)
		if err == nil && load.Balancers == 0 {
			return
		}
		if !c.now().Before(deadline) {
			c.log.Warn("retiring the pool while balancers still serve it", "balancers", load.Balancers, "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.cfg.PollInterval):
		}
	}
}

// retireRound lists the pool and the registry and takes away what is
// left: running containers are drained (ones a previous round or leader
// marked draining resume their drain), others are removed at once, and
// entries without a container are dropped. It reports whether the pool
// was empty already.
func (c *Controller) retireRound(ctx context.Context) (bool, error) {
	// The previous round's workers are done: what they did not finish
	// (a registry write failed, ctx ended) is found again below.
	c.members.reset()
	insts, err := c.drv.List(ctx)
	if err != nil {
		c.rep.fail("docker list", err)
		return false, err
	}
	c.rep.recover("docker list")
	reg, err := c.store.Backends(ctx)
	if err != nil {
		c.rep.fail("redis registry", err)
		return false, err
	}
	c.rep.recover("redis registry")
	if len(insts) == 0 && len(reg) == 0 {
		return true, nil
	}
	entries := make(map[string]state.Backend, len(reg))
	for _, b := range reg {
		entries[b.ID] = b
	}
	now := c.now()
	var drain []string
	for _, in := range insts {
		b, registered := entries[in.ID]
		delete(entries, in.ID)
		switch {
		case in.Running() && in.Addr != "" && registered && b.State == state.Draining:
			b.Addr = in.Addr
			c.down.resumeDrain(ctx, b)
		case in.Running() && in.Addr != "":
			if c.members.add(&member{id: in.ID, containerID: in.ContainerID, addr: in.Addr, phase: phaseReady, booted: true, since: now, created: in.Created}) {
				drain = append(drain, in.ID)
			}
		default:
			// Not serving (created, exited, or without an address on the
			// network): nothing to drain.
			c.removeNow(ctx, in, registered)
		}
	}
	for id := range entries {
		if err := c.store.RemoveBackend(ctx, id); err != nil {
			c.rep.fail("redis registry", err)
		}
	}
	c.down.drain(ctx, drain, reasonRetired)
	return false, nil
}

// removeNow removes a container that serves nothing, and its entry.
func (c *Controller) removeNow(ctx context.Context, in driver.Instance, registered bool) {
	if err := c.drv.Stop(ctx, in.ID, 0); err != nil {
		c.rep.fail("docker remove", err)
		return
	}
	c.log.Info("removed container of a retired pool", "id", in.ID, "state", in.State)
	if registered {
		if err := c.store.RemoveBackend(ctx, in.ID); err != nil {
			c.rep.fail("redis registry", err)
		}
	}
}
