package redisstore_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"lbscale/internal/state"
	"lbscale/internal/state/memstore"
)

// Reports and the summary, on a real Redis and in memory alike: a report
// replaces the balancer's previous one whole, they come back sorted by
// balancer, and the summary expires.
func TestReportsAndSummary(t *testing.T) {
	rs, _ := newRedis(t)
	stores := map[string]state.Store{"redis": rs, "memory": memstore.New(nil)}
	for name, s := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			now := time.Now().Truncate(time.Millisecond)
			b := state.Report{Balancer: "b", At: now, LastSync: now.Add(-20 * time.Millisecond), StoreUp: true, Queued: 3, Arrivals: 12.5,
				Backends: []state.BackendReport{{ID: "web-1", Local: 2, Limit: 4, Served: 100, Failures: 1}, {ID: "web-2", Limit: 4, Served: 7}}}
			a := state.Report{Balancer: "a", At: now, StoreUp: false,
				Backends: []state.BackendReport{{ID: "web-1", Local: 1, Limit: 2, Served: 5}}}
			for _, r := range []state.Report{b, a} {
				if err := s.PutReport(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			// b's next report no longer knows web-2: it must not linger.
			b.Backends = b.Backends[:1]
			b.Backends[0].Served = 101
			if err := s.PutReport(ctx, b); err != nil {
				t.Fatal(err)
			}
			got, err := s.Reports(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := []state.Report{a, b}
			for i := range got {
				got[i].At, got[i].LastSync = got[i].At.Local(), got[i].LastSync.Local()
			}
			for i := range want {
				want[i].At, want[i].LastSync = want[i].At.Local(), want[i].LastSync.Local()
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("reports\n got %+v\nwant %+v", got, want)
			}

			if doc, err := s.Summary(ctx); err != nil || doc != nil {
				t.Fatalf("summary before any: %q %v", doc, err)
			}
			if err := s.PutSummary(ctx, []byte(`{"leader":"x"}`), 200*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			if doc, err := s.Summary(ctx); err != nil || string(doc) != `{"leader":"x"}` {
				t.Fatalf("summary %q %v", doc, err)
			}
			time.Sleep(300 * time.Millisecond)
			if doc, err := s.Summary(ctx); err != nil || doc != nil {
				t.Fatalf("summary after its ttl: %q %v", doc, err)
			}
		})
	}
}

// A report writes only what changed since the balancer's previous one, so
// it must notice when that previous one is gone (it expired, or Redis lost
// it): the write after that one is whole again.
func TestReportRewrittenWhenLost(t *testing.T) {
	s, _, rdb := newFreshRedis(t)
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	r := state.Report{Balancer: "a", At: now, StoreUp: true,
		Backends: []state.BackendReport{{ID: "web-1", Local: 1, Limit: 4, Served: 5}, {ID: "web-2", Limit: 4, Served: 9}}}
	put := func() {
		t.Helper()
		if err := s.PutReport(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	put()
	if err := rdb.Del(ctx, s.Keys().Report("a")).Err(); err != nil {
		t.Fatal(err)
	}
	r.At = r.At.Add(time.Second)
	put() // unchanged, so it writes the scalars only, and finds the report gone
	r.At = r.At.Add(time.Second)
	put() // so this one writes it whole
	n, err := rdb.HLen(ctx, s.Keys().Report("a")).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(2); n != want {
		t.Fatalf("report has %d fields after it was lost and written twice, want both documents (%d)", n, want)
	}
	got, err := s.Reports(ctx)
	if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0].Backends, r.Backends) {
		t.Fatalf("reports %+v %v, want %+v", got, err, r.Backends)
	}
}
