package memstore

import (
	"context"
	"slices"
	"time"

	"lbscale/internal/state"
)

// PutBucketRate implements state.Forecasts.
func (m *Store) PutBucketRate(_ context.Context, r state.BucketRate, oldest time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.forecast == nil {
		m.forecast = map[int64]float64{}
	}
	m.forecast[r.Start.Unix()] = r.Rate
	for at := range m.forecast {
		if at < oldest.Unix() {
			delete(m.forecast, at)
		}
	}
	return nil
}

// BucketRates implements state.Forecasts.
func (m *Store) BucketRates(context.Context) ([]state.BucketRate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]state.BucketRate, 0, len(m.forecast))
	for at, r := range m.forecast {
		out = append(out, state.BucketRate{Start: time.Unix(at, 0).UTC(), Rate: r})
	}
	slices.SortFunc(out, func(a, b state.BucketRate) int { return a.Start.Compare(b.Start) })
	return out, nil
}
