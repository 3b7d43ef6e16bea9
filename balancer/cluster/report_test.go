package cluster

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"lbscale/internal/state"
	"lbscale/internal/state/memstore"
)

// The balancer reports once a second what the dashboard shows: its sync,
// its queue, and per backend in flight, limit, served and failures.
func TestReportsEverySecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := memstore.New(nil)
		queued := int64(2)
		s := New(Options{Store: store, Reports: store, ID: "a", Interval: 25 * time.Millisecond, Limit: 4,
			Static: []Static{{Addr: "10.0.0.1:8080", Weight: 1}}, Queued: func() int64 { return queued }})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); s.Run(ctx) }()
		defer func() {
			cancel()
			<-done // Run waits for the report loop: nothing outlives it
		}()

		time.Sleep(100 * time.Millisecond)
		b := s.Set().Backends[0]
		for range 3 {
			b.TryAcquire()
		}
		b.Release()
		b.Failed()
		time.Sleep(ReportEvery)
		synctest.Wait()
		got, err := store.Reports(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("reports %+v, want one", got)
		}
		r := got[0]
		want := state.BackendReport{ID: "10.0.0.1:8080", Local: 2, Limit: 4, Served: 1, Failures: 1}
		if r.Balancer != "a" || !r.StoreUp || r.Queued != 2 || len(r.Backends) != 1 || r.Backends[0] != want {
			t.Fatalf("report %+v, want a, store up, 2 queued, %+v", r, want)
		}
		if age := r.At.Sub(r.LastSync); r.LastSync.IsZero() || age < 0 || age > 100*time.Millisecond {
			t.Fatalf("last sync %s before the report, want within a few intervals", age)
		}
	})
}
