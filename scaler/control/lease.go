package control

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"lbscale/internal/state"
)

// leaseStore is the part of state.Store the lease loop uses.
type leaseStore interface {
	AcquireLease(ctx context.Context, holder string, ttl time.Duration) (state.Lease, error)
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
//
// Takeover: a follower campaigns every TTL/6, and, when the lease it lost
// to runs out sooner, right after it runs out (Redis says how much is
// left). A leader that dies renewed at most TTL/3 before, so its lease ends
// at most TTL after its death, and the follower leads a few milliseconds
// later: a dead leader is replaced within the TTL (plus one round trip).
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
	// leader is the holder the latest round saw ("" before any answer):
	// /status and the logs name it.
	leader atomic.Pointer[string]
	// since is the unix-nano time at which the latest round first saw that
	// leader (the dashboard's "leading since" when the leader's own word is
	// not at hand).
	since atomic.Int64
}

func newLease(store leaseStore, holder string, ttl time.Duration, now func() time.Time, log *slog.Logger, rep *reporter, begin func(context.Context) func()) *lease {
	l := &lease{store: store, holder: holder, ttl: ttl, now: now, log: log, rep: rep, begin: begin}
	l.alive.Store(now().UnixNano())
	return l
}

// leaderID is the scaler that led at the latest round, as Redis said
// ("" when nobody did, or before Redis answered).
func (l *lease) leaderID() string {
	if p := l.leader.Load(); p != nil {
		return *p
	}
	return ""
}

// saw records who leads, logging a change of leader once.
func (l *lease) saw(holder string) {
	if prev := l.leaderID(); prev != holder || l.leader.Load() == nil {
		l.leader.Store(&holder)
		l.since.Store(l.now().UnixNano())
		switch {
		case holder == l.holder:
		case holder == "":
			l.log.Info("no leader: the lease is free")
		default:
			l.log.Info("following", "leader", holder)
		}
	}
}

// followWait is a follower's wait before it campaigns again: every
// campaign, or as soon as the leader's lease runs out if that is sooner
// (2 ms after, so that Redis has expired it).
func followWait(campaign time.Duration, got state.Lease) time.Duration {
	if got.Holder == "" {
		return campaign
	}
	return min(campaign, got.Left+2*time.Millisecond)
}

// leaderSince is when this scaler first saw the current leader lead.
func (l *lease) leaderSince() time.Time { return time.Unix(0, l.since.Load()) }

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
		got, err := l.store.AcquireLease(actx, l.holder, l.ttl)
		cancel()
		if ctx.Err() != nil {
			return
		}
		ok := got.HeldBy(l.holder)
		retrying = false
		switch {
		case err == nil:
			l.rep.recover("redis lease")
			l.saw(got.Holder)
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
		case err != nil:
			tick.Reset(campaign)
		default:
			tick.Reset(followWait(campaign, got))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
