// Package drive sends the load: an open-loop dispatcher that fires each
// request at its scheduled time whatever happened to the earlier ones, and
// closed-loop users that each wait for an answer before sending again.
//
// Open loop is the honest way to measure a server under a given arrival
// rate. A closed-loop client that waits for slow answers sends less exactly
// when the server struggles, so the stall never shows in its numbers
// ("coordinated omission"). Here a stalled server keeps receiving requests on
// schedule, and every latency is measured from the request's *intended* send
// time, so time a request spent waiting for the driver counts too.
package drive

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"lbscale/loadtest/measure"
	"lbscale/loadtest/schedule"
)

// Requester sends one request to target i and reports what came back. Each
// worker goroutine makes its own through a factory, so an implementation may
// keep state between its calls (the HTTP one reuses one *http.Request per
// target) without locking.
type Requester func(target int) measure.Outcome

// Open is the open-loop dispatcher.
//
// Concurrency cap: at most Cap requests are in flight. A request that falls
// due while Cap are outstanding is *dropped* (counted, never sent) rather
// than queued: queueing would delay every later request behind it and turn
// the run back into a closed loop whose offered rate silently follows the
// server. A dropped request is a clear signal that the target could not keep
// up (or that Cap is too small), reported as such.
type Open struct {
	Schedule *schedule.Schedule
	Pick     func() int            // target of the next request
	New      func() Requester      // one per worker goroutine
	Rec      *measure.Recorder     // where results go
	Cap      int                   // max requests in flight (> 0)
	Now      func() time.Time      // default time.Now
	Sleep    func(d time.Duration) // waits d; default a reused timer

	inflight atomic.Int64
}

type ticket struct {
	due    time.Time
	target int
}

// Inflight is the number of requests sent and not yet answered.
func (o *Open) Inflight() int64 { return o.inflight.Load() }

// Run dispatches the schedule until it ends or ctx is done, then waits for
// the requests in flight (each bounded by the requester's own timeout).
func (o *Open) Run(ctx context.Context) {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	sleep := o.Sleep
	if sleep == nil {
		timer := time.NewTimer(time.Hour)
		timer.Stop()
		sleep = func(d time.Duration) {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
			}
		}
	}
	// Idle workers wait on work; an unbuffered send succeeds only if one is
	// idle right now, which is exactly "a slot is free".
	work := make(chan ticket)
	var wg sync.WaitGroup
	workers := 0
	worker := func(first ticket) {
		defer wg.Done()
		do := o.New()
		o.handle(now, do, first)
		for t := range work {
			o.handle(now, do, t)
		}
	}
	for ctx.Err() == nil {
		due, ok := o.Schedule.Next()
		if !ok {
			break
		}
		t := ticket{due: due, target: o.Pick()}
		if wait := due.Sub(now()); wait > 0 {
			sleep(wait)
			if ctx.Err() != nil {
				break
			}
		}
		select {
		case work <- t:
		default:
			if workers < o.Cap {
				workers++
				wg.Add(1)
				go worker(t)
			} else {
				o.Rec.Dispatched(t.due, 0, t.target, true)
			}
		}
	}
	// A profile that ends at rate 0 still lasts until its end: the run (and
	// its timeline and status sampling) covers the quiet tail too.
	if end, wait := o.Schedule.Tail(); wait && ctx.Err() == nil {
		if d := end.Sub(now()); d > 0 {
			sleep(d)
		}
	}
	close(work)
	wg.Wait()
}

func (o *Open) handle(now func() time.Time, do Requester, t ticket) {
	o.inflight.Add(1)
	sent := now()
	o.Rec.Dispatched(t.due, sent.Sub(t.due), t.target, false)
	out := do(t.target)
	o.Rec.Done(t.target, t.due, now(), out)
	o.inflight.Add(-1)
}

// Closed runs Users clients that each send, wait for the answer, pause Think,
// and send again. There is no schedule, so latency is measured from the
// actual send; at most Users requests are ever in flight. Use it to model a
// fixed population of users, not to measure a server under an arrival rate.
type Closed struct {
	Users int
	Pick  func() int
	New   func() Requester
	Rec   *measure.Recorder
	Now   func() time.Time
	// Until stops sending once reached (zero: no time bound).
	Until time.Time
	// Limit stops after this many requests in total (0: no limit).
	Limit int64
	Think time.Duration

	inflight atomic.Int64
	started  atomic.Int64
}

// Inflight is the number of requests sent and not yet answered.
func (c *Closed) Inflight() int64 { return c.inflight.Load() }

// Run starts the users and returns when all have stopped: at Until, after
// Limit requests, or when ctx is done (requests in flight finish first).
func (c *Closed) Run(ctx context.Context) {
	now := c.Now
	if now == nil {
		now = time.Now
	}
	var wg sync.WaitGroup
	for range c.Users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do := c.New()
			var think *time.Timer
			for ctx.Err() == nil {
				start := now()
				if !c.Until.IsZero() && !start.Before(c.Until) {
					return
				}
				if c.Limit > 0 && c.started.Add(1) > c.Limit {
					return
				}
				target := c.Pick()
				c.inflight.Add(1)
				c.Rec.Dispatched(start, 0, target, false)
				out := do(target)
				c.Rec.Done(target, start, now(), out)
				c.inflight.Add(-1)
				if c.Think > 0 {
					if think == nil {
						think = time.NewTimer(c.Think)
					} else {
						think.Reset(c.Think)
					}
					select {
					case <-think.C:
					case <-ctx.Done():
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}
