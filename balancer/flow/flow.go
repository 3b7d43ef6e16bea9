// Package flow measures a balancer's request flow for the scaler: the rate
// at which requests arrive and how long backends take to serve them.
//
// The scaler sizes the pool by Little's law (concurrency = arrival rate ×
// service time), which needs both figures cluster-wide and fresh. In-flight
// counts alone cannot give them: a saturated pool caps in-flight at its
// capacity, so the demand above it shows only as a queue, and a queue that
// built up in one second reads the same as standing concurrency. The arrival
// rate counts every request offered (queued and refused ones too), so it is
// the demand whatever the pool's size.
//
// Counter is the request path's half: three atomic adds per request, no
// lock, no allocation. Window is the sync loop's half: it turns successive
// readings of the counters into rates over the last Span, with the time
// passed in, so it is tested with a made-up clock.
package flow

import (
	"sync/atomic"
	"time"

	"lbscale/internal/state"
)

// Counter counts requests as they arrive and finish. Safe for concurrent use.
type Counter struct {
	arrived  atomic.Uint64
	done     atomic.Uint64
	busyNano atomic.Uint64
}

// Arrive counts one request offered to the balancer.
func (c *Counter) Arrive() { c.arrived.Add(1) }

// Done counts one request a backend served, d from sending it to the
// backend to the end of its response (queue wait excluded: the pool's size
// changes the wait, not the work).
func (c *Counter) Done(d time.Duration) {
	c.done.Add(1)
	c.busyNano.Add(uint64(max(d, 0)))
}

// reading is the counters at one instant.
type reading struct {
	at                   time.Time
	arrived, done, nanos uint64
}

// read returns the counters' totals so far.
func (c *Counter) read(at time.Time) reading {
	return reading{at: at, arrived: c.arrived.Load(), done: c.done.Load(), nanos: c.busyNano.Load()}
}

// DefaultSpan is the window the rates are measured over: long enough that
// a few requests make a rate, short enough that a step in traffic shows in
// the scaler's next reading a second later.
const DefaultSpan = time.Second

// Window turns readings of a Counter into a state.Flow over the last Span. It is
// owned by one goroutine (the balancer's sync loop).
type Window struct {
	c    *Counter
	span time.Duration
	// hist holds readings, oldest first, covering at least span.
	hist    []reading
	service time.Duration
}

// NewWindow measures c over span (DefaultSpan when 0).
func NewWindow(c *Counter, span time.Duration) *Window {
	if span <= 0 {
		span = DefaultSpan
	}
	return &Window{c: c, span: span}
}

// Rates reads the counter at now and returns the flow since the newest
// earlier reading at least a span old: over a span plus at most one sync
// interval (over the time since the first reading while less than a span
// has passed).
//
// E.g. span 1s, readings at 0 s (10 arrived) and 1 s (40 arrived, 25 done
// with 5 s of service in all): 30 arrivals/s, 25 done/s, service 200 ms.
func (w *Window) Rates(now time.Time) state.Flow {
	cur := w.c.read(now)
	w.hist = append(w.hist, cur)
	// Keep the newest reading at or before now-span as the base, drop older.
	cut := 0
	for i := 1; i < len(w.hist); i++ {
		if !w.hist[i].at.After(now.Add(-w.span)) {
			cut = i
		}
	}
	if cut > 0 {
		w.hist = append(w.hist[:0], w.hist[cut:]...)
	}
	base := w.hist[0]
	el := cur.at.Sub(base.at)
	if el <= 0 {
		return state.Flow{Service: w.service}
	}
	sec := el.Seconds()
	done := cur.done - base.done
	if done > 0 {
		w.service = time.Duration((cur.nanos - base.nanos) / done)
	}
	return state.Flow{
		Arrivals: float64(cur.arrived-base.arrived) / sec,
		Done:     float64(done) / sec,
		Service:  w.service,
	}
}
