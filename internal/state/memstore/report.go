package memstore

import (
	"context"
	"sort"
	"time"

	"lbscale/internal/state"
)

// PutReport implements state.Reports.
func (m *Store) PutReport(_ context.Context, r state.Report) error {
	r.Backends = append([]state.BackendReport(nil), r.Backends...)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reports == nil {
		m.reports = map[string]state.Report{}
	}
	m.reports[r.Balancer] = r
	return nil
}

// Reports implements state.Reports.
func (m *Store) Reports(context.Context) ([]state.Report, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	out := make([]state.Report, 0, len(m.reports))
	for id, r := range m.reports {
		if now.Sub(r.At) > state.ReportKeep {
			delete(m.reports, id)
			continue
		}
		r.Backends = append([]state.BackendReport(nil), r.Backends...)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Balancer < out[j].Balancer })
	return out, nil
}

// PutSummary implements state.Summaries.
func (m *Store) PutSummary(_ context.Context, doc []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.summary, m.summaryEnd = append([]byte(nil), doc...), m.now().Add(ttl)
	return nil
}

// Summary implements state.Summaries.
func (m *Store) Summary(context.Context) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.summary == nil || !m.now().Before(m.summaryEnd) {
		return nil, nil
	}
	return append([]byte(nil), m.summary...), nil
}
