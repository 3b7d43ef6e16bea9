package control

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"lbscale/internal/state"
	"lbscale/internal/testenv"
	"lbscale/scaler/dashboard"
	"lbscale/scaler/decide"
)

// The dashboard's source joins the registry, the cluster load, the
// balancers' reports and the leader's summary; a follower shows the
// leader's decision and events, not blanks.
func TestDashboardSnapshotLeaderAndFollower(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		h.eng.SetBootDelay(300 * time.Millisecond)
		cfgA, cfgB := testConfig(), testConfig()
		cfgA.TargetInflight, cfgB.TargetInflight = 2, 2
		cfgB.ID = "scaler-b"
		a, b := h.pair(cfgA, cfgB, nil, 1)
		first := h.ready()[0]
		// Saturated, 3 queued: ceil(5/2) = 3 replicas, so 2 start.
		h.balancer("b1", 3, map[string]int64{first: 2}, nil)
		testenv.Eventually(t, 15*time.Second, "3 ready", func() bool { return len(h.ready()) == 3 })
		ctx := context.Background()
		now := h.clk.now()
		put := func(r state.Report) {
			if err := h.store.PutReport(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		put(state.Report{Balancer: "b1", At: now, LastSync: now, StoreUp: true, Queued: 3, Arrivals: 12.5,
			Backends: []state.BackendReport{{ID: first, Local: 2, Limit: 4, Served: 100, Failures: 2}}})
		put(state.Report{Balancer: "b2", At: now.Add(-time.Minute), LastSync: now.Add(-time.Minute), StoreUp: true,
			Backends: []state.BackendReport{{ID: first, Limit: 3, Served: 50, Failures: 1}}})
		time.Sleep(2 * summaryEvery) // the leader publishes its summary

		for _, c := range []*Controller{a, b} {
			s, err := c.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			who := "leader"
			if c == b {
				who = "follower"
			}
			if s.Replicas.Ready != 3 || s.Replicas.Starting != 0 || s.Replicas.Desired != 3 {
				t.Errorf("%s: replicas %+v, want 3 ready, desired 3", who, s.Replicas)
			}
			if s.Leader.ID != a.instance || s.Leader.Self != (c == a) || s.Leader.Since.IsZero() {
				t.Errorf("%s: leader %+v, want %s", who, s.Leader, a.instance)
			}
			var up *dashboard.Event
			for i, e := range s.Events {
				if e.Direction == "up" && e.Reason == string(decide.ReasonDemand) {
					up = &s.Events[i]
				}
			}
			if up == nil || up.From != 1 || up.To != 3 || len(up.IDs) != 2 || up.TookMs < 300 {
				t.Errorf("%s: demand event %+v in %+v, want 1 -> 3 taking the boot delay", who, up, s.Events)
			}
			var fb dashboard.Backend
			for _, x := range s.Backends {
				if x.ID == first {
					fb = x
				}
			}
			if fb.Inflight != 2 || fb.Limit != 4 || fb.Served != 150 || fb.Failures != 3 || fb.State != "ready" {
				t.Errorf("%s: backend %+v, want 2 in flight of 4, 150 served, 3 failures", who, fb)
			}
			if s.Requests.Inflight != 2 || s.Requests.Queued != 3 {
				t.Errorf("%s: requests %+v", who, s.Requests)
			}
			if len(s.Balancers) != 2 || !s.Balancers[0].Redis || s.Balancers[1].Redis || s.Balancers[0].Queued != 3 || s.Balancers[0].Inflight != 2 {
				t.Errorf("%s: balancers %+v, want b1 reaching Redis, b2 silent", who, s.Balancers)
			}
		}
	})
}

// The dashboard shows the pool's deploy, on the leader's page and on a
// follower's (from the leader's Summary), while it runs and once done; the
// member rows carry their image, and the open connections come from the
// balancers' reports.
func TestDashboardSnapshotShowsTheDeploy(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfgA, cfgB := deployConfig(), deployConfig()
		cfgA.CanaryTime, cfgB.CanaryTime = 5*time.Second, 5*time.Second
		cfgB.ID = "scaler-b"
		a, b := h.pair(cfgA, cfgB, nil, 3)
		ctx := context.Background()
		snap := func(c *Controller) dashboard.Snapshot {
			s, err := c.Snapshot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		for _, c := range []*Controller{a, b} {
			if s := snap(c); s.Deploy != nil {
				t.Fatalf("deploy %+v before any", s.Deploy)
			}
		}
		if _, err := a.StartDeploy(ctx, "app:v2"); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*Controller{a, b} {
			testenv.Eventually(t, 15*time.Second, c.instance+" shows the canary", func() bool {
				d := snap(c).Deploy
				return d != nil && d.Phase == string(state.DeployCanary) && d.Image == "app:v2" &&
					d.Previous == cfgA.WebImage && !d.Started.IsZero() && d.Finished.IsZero()
			})
		}
		testenv.Eventually(t, 30*time.Second, "deploy done", func() bool { return h.deploy(a).Phase == state.DeployDone })
		h.settle(3)
		time.Sleep(2 * summaryEvery) // the leader publishes its summary
		per := map[string]state.BackendReport{}
		for i, id := range h.ready() {
			per[id] = state.BackendReport{Conns: int64(i + 1)}
		}
		h.report("b1", per)
		for _, c := range []*Controller{a, b} {
			s := snap(c)
			if d := s.Deploy; d == nil || d.Phase != string(state.DeployDone) || d.Image != "app:v2" || d.Finished.IsZero() || d.Reason == "" {
				t.Errorf("%s: deploy %+v, want app:v2 done, with its canary's verdict", c.instance, d)
			}
			if s.Conns != 1+2+3 {
				t.Errorf("%s: %d connections, want 6", c.instance, s.Conns)
			}
			for _, x := range s.Backends {
				if x.State == string(state.Ready) && (x.Image != "app:v2" || x.Conns != per[x.ID].Conns) {
					t.Errorf("%s: backend %s on %q with %d conns, want app:v2 with %d", c.instance, x.ID, x.Image, x.Conns, per[x.ID].Conns)
				}
			}
		}
	})
}

// The event log goes on across a change of leader: the new leader starts
// from the old one's summary.
func TestEventsCarryOverFailover(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfgA, cfgB := testConfig(), testConfig()
		cfgA.MinReplicas, cfgB.MinReplicas = 2, 2
		cfgB.ID = "scaler-b"
		a, _ := h.start(cfgA, nil)
		testenv.Eventually(t, 15*time.Second, "a leads", a.Leader)
		h.settle(2)
		time.Sleep(2 * summaryEvery)
		b, _ := h.start(cfgB, nil)
		time.Sleep(3 * cfgA.LeaseTTL)
		before := a.rep.events.list() // the MIN_REPLICAS start
		if len(before) == 0 {
			t.Fatal("a recorded no event")
		}
		// a stops (its lease is released); b leads.
		stopA(t, h, a)
		testenv.Eventually(t, 15*time.Second, "b leads", b.Leader)
		testenv.Eventually(t, 15*time.Second, "b's log holds a's events", func() bool {
			got := b.Status(context.Background()).Events
			return len(got) >= len(before) && got[0].Time.Equal(before[0].Time) && got[0].Reason == before[0].Reason
		})
	})
}

// stopA stops the controller a that the harness started.
func stopA(t *testing.T, h *harness, a *Controller) {
	t.Helper()
	for _, s := range h.stops {
		if s.c == a {
			s.stop()
			return
		}
	}
	t.Fatal("controller not started by the harness")
}

// With ADMIN_TOKEN set, /status, /metrics and the dashboard's stream want
// it; the page and /healthz do not.
func TestAdminToken(t *testing.T) {
	h := newHarness(t)
	cfg := testConfig()
	cfg.AdminToken = "s3cret"
	c := New(Options{Config: cfg, Store: h.store, Driver: h.eng.Driver(cfg.Pool), Health: h.eng.Health, Logger: testLogger(t)})
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.dash.Run(ctx)
	cases := []struct {
		path, token string
		want        int
	}{
		{"/", "", 200},
		{"/healthz", "", 200},
		{"/status", "", 401},
		{"/status", "wrong", 401},
		{"/status", "s3cret", 200},
		{"/metrics", "", 401},
		{"/metrics", "s3cret", 200},
		{dashboard.StreamPath, "", 401},
		{dashboard.StreamPath, "s3cret", 200},
	}
	for _, tc := range cases {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, srv.URL+tc.path, nil)
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s with %q: %d, want %d", tc.path, tc.token, resp.StatusCode, tc.want)
		}
		if tc.path == dashboard.StreamPath && tc.want == 200 {
			// The stream starts with the history at once.
			buf := make([]byte, 64)
			n, _ := io.ReadAtLeast(resp.Body, buf, 20)
			if !strings.Contains(string(buf[:n]), "event: init") {
				t.Errorf("stream begins %q, want an init event", buf[:n])
			}
		}
		resp.Body.Close()
		rcancel()
	}
}
