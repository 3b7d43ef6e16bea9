package cluster

import (
	"context"
	"math"
	"time"

	"lbscale/internal/state"
)

// ReportEvery is how often a balancer writes its Report: the dashboard
// refreshes once a second, and a report costs Redis one small transaction,
// against the sync's 40 script calls a second.
const ReportEvery = time.Second

// Report is this balancer's account for the dashboard at now: its sync
// state and queue, and per backend its in-flight count, limit and counters.
// Safe to call from any goroutine.
func (s *Syncer) Report(now time.Time) state.Report {
	r := state.Report{Balancer: s.o.ID, At: now, StoreUp: s.up.Load(), Queued: s.o.Queued(),
		Arrivals: math.Float64frombits(s.arrivals.Load())}
	if ms := s.lastOKMs.Load(); ms > 0 {
		r.LastSync = time.UnixMilli(ms)
	}
	set := s.set.Load()
	r.Backends = make([]state.BackendReport, 0, len(set.Backends))
	for _, b := range set.Backends {
		r.Backends = append(r.Backends, state.BackendReport{ID: b.ID, Local: b.Local(), Limit: b.Limit(),
			Served: b.Served(), Failures: b.Failures()})
	}
	return r
}

// runReports writes a Report every ReportEvery until ctx ends. A failed
// write is dropped: the next one replaces it, and the sync loop, not this
// one, says whether the store is reachable.
func (s *Syncer) runReports(ctx context.Context, to state.Reports) {
	t := time.NewTicker(ReportEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, ReportEvery)
		_ = to.PutReport(rctx, s.Report(s.o.Now()))
		cancel()
	}
}
