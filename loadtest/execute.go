package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"lbscale/loadtest/drive"
	"lbscale/loadtest/measure"
	"lbscale/loadtest/report"
	"lbscale/loadtest/schedule"
	"lbscale/loadtest/status"
	"lbscale/loadtest/target"
)

// phase is one stretch of load: a whole `run`, or one step of `saturate`.
type phase struct {
	common
	settings report.Settings
	// Open loop: profile (and requests as a limit). Closed loop: users > 0.
	profile  schedule.Profile
	requests int64
	users    int
	duration time.Duration // closed loop
	think    time.Duration
	// trace sends a traceparent with each request and keeps the slowest
	// requests' trace ids.
	trace bool
	// dashboard, when set, receives the live dashboard's URL if a --status
	// document names one (run prints it; saturate's steps do not repeat it).
	dashboard io.Writer
}

// execute drives one phase and returns what it measured. It stops early,
// keeping what it has, when ctx is done; requests in flight then still finish
// (each within --timeout) so none is lost from the counts.
func execute(ctx context.Context, p phase, prog *progress) *report.Run {
	conns := p.Concurrency
	if p.users > 0 {
		conns = p.users
	}
	hc := p.httpConfig(conns)
	hc.Trace = p.trace
	h := drive.NewHTTP(hc)
	defer h.Close()
	urls := p.urls()
	start := time.Now()
	rec := measure.New(measure.Config{Start: start, Targets: urls, MaxLatency: max(time.Hour, 2*p.Timeout)})

	var sampler *status.Sampler
	stopSampling := func() {}
	samplerDone := make(chan struct{})
	if len(p.Status) > 0 {
		sampler = &status.Sampler{URLs: p.Status, Interval: p.StatusInterval, Token: p.StatusToken}
		if p.dashboard != nil {
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			if u := sampler.Dashboard(dctx); u != "" {
				fmt.Fprintf(p.dashboard, "loadtest: live dashboard at %s\n", u)
			}
			cancel()
		}
		sctx, cancel := context.WithCancel(context.Background())
		stopSampling = cancel
		go func() { sampler.Run(sctx); close(samplerDone) }()
	} else {
		close(samplerDone)
	}

	pick := target.NewPicker(p.Targets)
	var inflight func() int64
	var sched *schedule.Schedule
	var run func(context.Context)
	if p.users > 0 {
		c := &drive.Closed{Users: p.users, Pick: pick.Pick, New: h.Requester, Rec: rec, Limit: p.requests, Think: p.think}
		if p.duration > 0 {
			c.Until = start.Add(p.duration)
		}
		inflight, run = c.Inflight, c.Run
	} else {
		sched = schedule.New(p.profile, start, p.requests)
		o := &drive.Open{Schedule: sched, Pick: pick.Pick, New: h.Requester, Rec: rec, Cap: p.Concurrency}
		inflight, run = o.Inflight, o.Run
	}

	// Dispatching stops at the end of the schedule or on ctx; stoppedAt
	// records when, for the offered-rate window.
	dctx, stopDispatch := context.WithCancel(ctx)
	defer stopDispatch()
	done := make(chan struct{})
	go func() { run(dctx); close(done) }()
	var stoppedAt time.Time
	ctxDone := ctx.Done()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-done:
			break loop
		case <-ctxDone:
			stoppedAt, ctxDone = time.Now(), nil
		case now := <-tick.C:
			rec.Tick(now)
			if prog != nil {
				var latest []status.Sample
				if sampler != nil {
					latest = sampler.Latest()
				}
				prog.update(now, start, rec, inflight(), latest)
			}
		}
	}
	end := time.Now()
	stopSampling()
	<-samplerDone
	rec.Tick(end)
	secs := rec.Finish()
	rep := rec.Report()

	window := end.Sub(start)
	switch {
	case !stoppedAt.IsZero():
		window = stoppedAt.Sub(start)
	case sched != nil && p.requests > 0 && sched.Sent() >= p.requests:
		// Stopped by --requests: the last request's share of the timeline
		// ends half an interval after it was due.
		due := rep.LastDue.Sub(start)
		window = due
		if r := p.profile.Rate(due); r > 0 {
			window += time.Duration(0.5 / r * float64(time.Second))
		}
	case sched != nil:
		window = p.profile.Duration()
	}
	run2 := &report.Run{
		Settings: p.settings,
		Start:    start,
		Window:   window,
		End:      maxTime(rep.LastDone, start.Add(window)),
		Seconds:  secs,
		Report:   rep,
	}
	if sampler != nil {
		run2.Samples = sampler.Samples()
		run2.Points = status.PerSecond(run2.Samples, start, len(secs))
	}
	return run2
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
