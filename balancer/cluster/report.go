package cluster

import (
	"context"
	"math"
	"time"

	"lbscale/internal/state"
)

// ReportEvery and ReportFresh are the state package's: one cadence for
// the writers and the readers of reports.
const (
	ReportEvery = state.ReportEvery
	ReportFresh = state.ReportFresh
)

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
			Served: b.Served(), Failures: b.Failures(), Busy: b.Busy(), Conns: b.Conns()})
	}
	return r
}

// runReports writes a Report every ReportEvery until ctx ends, then reads
// every balancer's back for the others' long-lived connections per backend
// (pool.Backend.SetRemoteConns), which MAX_CONNECTIONS bounds cluster-wide.
// The reports carry them rather than the sync: connections are admitted
// rarely compared with requests, and a count a second old only lets a
// backend go a few over a soft limit. A failed write is dropped: the next
// one replaces it, and the sync loop, not this one, says whether the store
// is reachable. A failed read keeps the counts last read.
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
		now := s.o.Now()
		_ = to.PutReport(rctx, s.Report(now))
		all, err := to.Reports(rctx)
		cancel()
		if err == nil {
			s.setRemoteConns(RemoteConns(all, s.o.ID, now))
		}
	}
}

// setRemoteConns applies the other balancers' connection counts to the
// current set (0 for a backend none reports), then dispatches the queue:
// connections closed elsewhere may have made room.
func (s *Syncer) setRemoteConns(remote map[string]int64) {
	for _, b := range s.set.Load().Backends {
		b.SetRemoteConns(remote[b.ID])
	}
	s.o.OnCapacity()
}

// RemoteConns sums, per backend id, the long-lived connections in the
// reports of the balancers other than self made within ReportFresh of now
// (either way: the clocks of two hosts differ a little).
func RemoteConns(reports []state.Report, self string, now time.Time) map[string]int64 {
	sums := map[string]int64{}
	for _, r := range reports {
		if r.Balancer == self {
			continue
		}
		if age := now.Sub(r.At); age > ReportFresh || age < -ReportFresh {
			continue
		}
		for _, b := range r.Backends {
			if b.Conns > 0 {
				sums[b.ID] += b.Conns
			}
		}
	}
	return sums
}
