package control

import (
	"log/slog"
	"sync"
	"time"

	"lbscale/scaler/decide"
)

// reporter is where every concern of the controller reports what went
// wrong and what it did: failing operations (in /status until they work
// again, logged at a bounded rate) and scale events (counted in /metrics,
// kept for /status). It is shared by the lease loop, scale-up, drain and
// reconcile, so that one outage shows as one problem whichever of them
// hit it.
type reporter struct {
	now    func() time.Time
	log    *slog.Logger
	m      *metrics
	events eventLog
	// size counts the replicas (ready and starting) for an event's From
	// and To (nil: not counted).
	size func() int

	mu       sync.Mutex // protects problems
	problems map[string]*problem
}

type problem struct {
	first, logged time.Time
	err           string
}

func newReporter(now func() time.Time, log *slog.Logger, m *metrics) *reporter {
	return &reporter{now: now, log: log, m: m, events: eventLog{cap: eventsKept}, problems: map[string]*problem{}}
}

// record counts ev and keeps it for /status (stamped now unless it has a
// time). It is called after the member table changed, so the replicas now
// are the event's To, and its From is To less the containers it added (or
// plus those it took away). The event waits for each of its ids to finish,
// unless there is nothing to wait for: a reclaim is done at once, and an
// exited container is already gone.
func (r *reporter) record(ev Event) {
	if ev.Time.IsZero() {
		ev.Time = r.now()
	}
	if r.size != nil {
		ev.To = r.size()
		ev.From = ev.To - ev.Count
		if ev.Direction == "down" {
			ev.From = ev.To + ev.Count
		}
	}
	if len(ev.IDs) > 0 && ev.Reason != decide.ReasonReclaim && ev.Reason != decide.ReasonExited {
		ev.pending = make(map[string]bool, len(ev.IDs))
		for _, id := range ev.IDs {
			ev.pending[id] = true
		}
	}
	r.m.events.WithLabelValues(ev.Direction, string(ev.Reason)).Add(float64(ev.Count))
	r.events.add(ev)
}

// finished tells the event log that container id's start or stop ended at t.
func (r *reporter) finished(id string, t time.Time) { r.events.finish(id, t) }

// fail counts and logs a failed operation, at most every problemEvery per
// operation, so that a Redis outage is one line per 10 s, not four a second.
func (r *reporter) fail(op string, err error) {
	r.m.errors.WithLabelValues(op).Inc()
	now := r.now()
	r.mu.Lock()
	p := r.problems[op]
	if p == nil {
		p = &problem{first: now}
		r.problems[op] = p
	}
	p.err = err.Error()
	log := p.logged.IsZero() || now.Sub(p.logged) >= problemEvery
	if log {
		p.logged = now
	}
	since := now.Sub(p.first)
	r.mu.Unlock()
	if log {
		r.log.Warn("operation failing; retrying", "op", op, "err", err, "for", since.Round(time.Millisecond).String())
	}
}

// problem records err as op's latest failure for /status, without
// counting or logging it: for a caller that logs and counts its failures
// itself (a failed start has its own counter and log line).
func (r *reporter) problem(op string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.problems[op]
	if p == nil {
		p = &problem{first: r.now(), logged: r.now()}
		r.problems[op] = p
	}
	p.err = err.Error()
}

// recover logs once that a failing operation works again.
func (r *reporter) recover(op string) {
	r.mu.Lock()
	p := r.problems[op]
	delete(r.problems, op)
	r.mu.Unlock()
	if p != nil {
		r.log.Info("operation recovered", "op", op, "after", r.now().Sub(p.first).Round(time.Millisecond).String())
	}
}

// failing returns the operations failing now with their latest error, or
// nil when none is.
func (r *reporter) failing() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out map[string]string
	for op, p := range r.problems {
		if out == nil {
			out = map[string]string{}
		}
		out[op] = p.err
	}
	return out
}
