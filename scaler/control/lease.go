package control

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// leaseStore is the part of state.Store the lease loop uses.
type leaseStore interface {
	AcquireLease(ctx context.Context, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, holder string) error
}

// lease campaigns for the pool's leader lease and, while it holds it,
// keeps a term going: begin starts one when the lease is won, and the func
// begin returns ends it (and waits for its workers) when the lease is lost
// or run returns.
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
type lease struct {
	store  leaseStore
	holder string
	ttl    time.Duration
	// now is the injected clock; it only stamps alive (healthz compares
	// alive with the same clock).
	now   func() time.Time
	log   *slog.Logger
	rep   *reporter
	begin func(ctx context.Context) (end func())

	// alive is the unix-nano time of the loop's latest round (healthz).
	alive atomic.Int64
}

func newLease(store leaseStore, holder string, ttl time.Duration, now func() time.Time, log *slog.Logger, rep *reporter, begin func(context.Context) func()) *lease {
	l := &lease{store: store, holder: holder, ttl: ttl, now: now, log: log, rep: rep, begin: begin}
	l.alive.Store(now().UnixNano())
	return l
}

// lastRound is when the loop last ran a round, by the injected clock.
func (l *lease) lastRound() time.Time { return time.Unix(0, l.alive.Load()) }

// run campaigns and renews until ctx ends. It returns after the current
// term (if any) ended and the lease was released, so that another scaler
// takes over at once rather than after the TTL.
func (l *lease) run(ctx context.Context) {
	// A leader renews every TTL/3; a follower tries every TTL/6, so that it
	// takes over at most TTL/6 after a dead leader's lease expires (at most
	// TTL + TTL/6 after the leader died).
	renew := max(l.ttl/3, 10*time.Millisecond)
	campaign := max(l.ttl/6, 10*time.Millisecond)
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
		if err := l.store.ReleaseLease(rctx, l.holder); err != nil {
			l.log.Warn("release lease", "err", err)
		}
	}()
	for {
		l.alive.Store(l.now().UnixNano())
		timeout := renew
		if retrying {
			timeout = retry
		}
		sent := time.Now()
		actx, cancel := context.WithTimeout(ctx, timeout)
		ok, err := l.store.AcquireLease(actx, l.holder, l.ttl)
		cancel()
		if ctx.Err() != nil {
			return
		}
		retrying = false
		switch {
		case err == nil:
			l.rep.recover("redis lease")
			if ok {
				validUntil = sent.Add(l.ttl)
			}
		case endTerm != nil && time.Until(validUntil) > 3*retry:
			// Still ours for a wait, an attempt and a margin: try again.
			l.rep.fail("redis lease", err)
			ok, retrying = true, true
		default:
			l.rep.fail("redis lease", err)
			ok = false
		}
		switch {
		case ok && endTerm == nil:
			endTerm = l.begin(ctx)
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
			return
		case <-tick.C:
		}
	}
}
