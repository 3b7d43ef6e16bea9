package control

import (
	"time"

	"lbscale/internal/state"
)

// backendStats is one backend's figures summed over the balancers'
// reports: counters since each balancer started (a deploy's canary is
// judged on their growth) and the open long-lived connections.
type backendStats struct {
	Served, Failures uint64
	Busy             time.Duration
	Conns            int64
}

// sumReports adds the balancers' reports up per backend, as of now.
func sumReports(rs []state.Report, now time.Time) map[string]backendStats {
	out := map[string]backendStats{}
	for _, r := range rs {
		fresh := now.Sub(r.At) <= state.ReportFresh
		for _, b := range r.Backends {
			s := out[b.ID]
			s.Served += b.Served
			s.Failures += b.Failures
			s.Busy += b.Busy
			if fresh {
				s.Conns += max(b.Conns, 0)
			}
			out[b.ID] = s
		}
	}
	return out
}

// since is s's growth from base: a counter that went back (its balancer
// restarted) counts from zero.
func (s backendStats) since(base backendStats) backendStats {
	d := backendStats{Conns: s.Conns}
	if s.Served >= base.Served && s.Failures >= base.Failures && s.Busy >= base.Busy {
		d.Served, d.Failures, d.Busy = s.Served-base.Served, s.Failures-base.Failures, s.Busy-base.Busy
	} else {
		d.Served, d.Failures, d.Busy = s.Served, s.Failures, s.Busy
	}
	return d
}

// add sums two backends' growth.
func (s backendStats) add(o backendStats) backendStats {
	return backendStats{Served: s.Served + o.Served, Failures: s.Failures + o.Failures, Busy: s.Busy + o.Busy, Conns: s.Conns + o.Conns}
}
