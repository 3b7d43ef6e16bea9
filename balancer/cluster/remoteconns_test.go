package cluster

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"lbscale/balancer/pool"
	"lbscale/internal/state"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv"
	"lbscale/internal/testenv/statetest"
)

// RemoteConns counts the other balancers' fresh reports only: not this
// balancer's own (its count is exact locally), not a report older (or, by
// a skewed clock, newer) than ReportFresh.
func TestRemoteConns(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	rep := func(id string, age time.Duration, conns ...int64) state.Report {
		r := state.Report{Balancer: id, At: now.Add(-age)}
		for i, n := range conns {
			r.Backends = append(r.Backends, state.BackendReport{ID: string(rune('x' + i)), Conns: n})
		}
		return r
	}
	for _, tc := range []struct {
		name    string
		reports []state.Report
		want    map[string]int64
	}{
		{"none", nil, map[string]int64{}},
		{"own report left out", []state.Report{rep("self", 0, 5, 1)}, map[string]int64{}},
		{"others summed per backend", []state.Report{rep("self", 0, 9), rep("a", time.Second, 2, 1), rep("b", 0, 3)},
			map[string]int64{"x": 5, "y": 1}},
		{"3s old still counts", []state.Report{rep("a", ReportFresh, 4)}, map[string]int64{"x": 4}},
		{"older is a balancer gone", []state.Report{rep("a", ReportFresh+time.Millisecond, 4), rep("b", time.Hour, 7)}, map[string]int64{}},
		{"clock ahead within bounds", []state.Report{rep("a", -2*time.Second, 4)}, map[string]int64{"x": 4}},
		{"clock far ahead", []state.Report{rep("a", -4*time.Second, 4)}, map[string]int64{}},
		{"zero counts make no entry", []state.Report{rep("a", 0, 0, 0)}, map[string]int64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RemoteConns(tc.reports, "self", now); !maps.Equal(got, tc.want) {
				t.Errorf("RemoteConns = %v, want %v", got, tc.want)
			}
		})
	}
}

// Two balancers on one real Redis learn each other's long-lived
// connections through their reports within about two report intervals:
// each backend's ClusterConns is its own exact count plus the other's, and
// a stale report of a balancer that stopped long ago adds nothing.
func TestRemoteConnsThroughRedis(t *testing.T) {
	srv := statetest.StartRedis(t)
	const addr = "10.9.0.1:8080"
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	start := func(id string) *pool.Backend {
		store, err := redisstore.New(srv.URL(), "conns")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { store.Close() })
		s := New(Options{Store: store, Reports: store, ID: id, Share: true, Interval: 25 * time.Millisecond, Limit: 4,
			Static: []Static{{Addr: addr, Weight: 1}}})
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(ctx) }()
		return s.Set().Backends[0]
	}

	// A balancer that stopped a minute ago left its report (reports are
	// kept for the dashboard): its connections must not count.
	old, err := redisstore.New(srv.URL(), "conns")
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := old.PutReport(ctx, state.Report{Balancer: "gone", At: time.Now().Add(-time.Minute),
		Backends: []state.BackendReport{{ID: addr, Conns: 100}}}); err != nil {
		t.Fatal(err)
	}

	a, b := start("a"), start("b")
	for range 3 {
		b.OpenConn()
	}
	a.OpenConn()
	within := 4 * ReportEvery
	testenv.Eventually(t, within, "a to see b's 3 connections beside its own", func() bool {
		return a.Conns() == 1 && a.ClusterConns() == 4
	})
	testenv.Eventually(t, within, "b to see a's connection beside its own 3", func() bool {
		return b.Conns() == 3 && b.ClusterConns() == 4
	})
	for range 3 {
		b.CloseConn()
	}
	testenv.Eventually(t, within, "a to see b's connections closed", func() bool { return a.ClusterConns() == 1 })
}
