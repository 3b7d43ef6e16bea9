package redisstore_test

import (
	"context"
	"testing"
	"time"

	"lbscale/internal/state"
	"lbscale/internal/state/memstore"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv/statetest"
)

// The forecast history is per pool, replaced bucket by bucket, trimmed on
// write, and read whole in time order; both stores keep the same books.
func TestForecastHistory(t *testing.T) {
	srv := statetest.StartRedis(t)
	rs, err := redisstore.New(srv.URL(), "web")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	other, err := redisstore.New(srv.URL(), "api")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for name, s := range map[string]state.Forecasts{"redis": rs, "memory": memstore.New(nil)} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if got, err := s.BucketRates(ctx); err != nil || len(got) != 0 {
				t.Fatalf("empty store: %v %v", got, err)
			}
			day := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
			keep := day.AddDate(0, 0, -7)
			put := func(at time.Time, rate float64, oldest time.Time) {
				t.Helper()
				if err := s.PutBucketRate(ctx, state.BucketRate{Start: at, Rate: rate}, oldest); err != nil {
					t.Fatal(err)
				}
			}
			put(day.Add(8*time.Hour+5*time.Minute), 40.25, keep)
			put(day.Add(8*time.Hour), 4, keep)
			put(day.Add(8*time.Hour), 5, keep) // replaces
			got, err := s.BucketRates(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := []state.BucketRate{{Start: day.Add(8 * time.Hour), Rate: 5}, {Start: day.Add(8*time.Hour + 5*time.Minute), Rate: 40.25}}
			if !equalRates(got, want) {
				t.Fatalf("BucketRates = %v, want %v", got, want)
			}
			// A week later the first day's buckets fall out at the next write.
			next := day.AddDate(0, 0, 8)
			put(next.Add(8*time.Hour), 7, next.AddDate(0, 0, -7))
			got, _ = s.BucketRates(ctx)
			if want := []state.BucketRate{{Start: next.Add(8 * time.Hour), Rate: 7}}; !equalRates(got, want) {
				t.Fatalf("after the trim: %v, want %v", got, want)
			}
		})
	}
	if got, err := other.BucketRates(context.Background()); err != nil || len(got) != 0 {
		t.Fatalf("pool api sees pool web's history: %v %v", got, err)
	}
}

func equalRates(a, b []state.BucketRate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Start.Equal(b[i].Start) || a[i].Rate != b[i].Rate {
			return false
		}
	}
	return true
}
