package drive

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lbscale/internal/testenv"
	"lbscale/loadtest/measure"
	"lbscale/loadtest/schedule"
	"lbscale/loadtest/target"
)

// stallServer answers nothing until release is called, recording when each
// request arrived and how many were in flight at most.
type stallServer struct {
	*httptest.Server
	mu       sync.Mutex
	arrivals []time.Time
	inflight atomic.Int64
	peak     atomic.Int64
	release  func()
}

func newStallServer(t *testing.T, id string) *stallServer {
	t.Helper()
	s := &stallServer{}
	gate := make(chan struct{})
	s.release = sync.OnceFunc(func() { close(gate) })
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.inflight.Add(1)
		defer s.inflight.Add(-1)
		for {
			p := s.peak.Load()
			if n <= p || s.peak.CompareAndSwap(p, n) {
				break
			}
		}
		s.mu.Lock()
		s.arrivals = append(s.arrivals, time.Now())
		s.mu.Unlock()
		<-gate
		w.Header().Set(ServerIDHeader, id)
		w.Write([]byte("hello from " + id))
	}))
	t.Cleanup(func() { s.release(); s.Close() })
	return s
}

func (s *stallServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.arrivals)
}

func (s *stallServer) arrivedBy(t time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.arrivals {
		if !a.After(t) {
			n++
		}
	}
	return n
}

func newHTTP(urls []string, conns int, timeout time.Duration, keepAlive bool) *HTTP {
	return NewHTTP(HTTPConfig{Targets: urls, Timeout: timeout, KeepAlive: keepAlive, Conns: conns})
}

// The required open-loop property: with a server that answers nothing, a
// 50 req/s run for 1 s still delivers its 50 requests on schedule, and each
// latency includes the whole stall measured from the intended send time.
func TestOpenLoopSendsOnScheduleWhileServerStalls(t *testing.T) {
	srv := newStallServer(t, "web-1")
	h := newHTTP([]string{srv.URL}, 100, 30*time.Second, true)
	defer h.Close()
	start := time.Now()
	rec := measure.New(measure.Config{Start: start, Targets: []string{srv.URL}})
	o := &Open{
		Schedule: schedule.New(schedule.Constant(50, time.Second), start, 0),
		Pick:     func() int { return 0 },
		New:      h.Requester,
		Rec:      rec,
		Cap:      100,
	}
	done := make(chan struct{})
	go func() { o.Run(context.Background()); close(done) }()

	testenv.Eventually(t, 10*time.Second, "50 arrivals", func() bool { return srv.count() >= 50 })
	if got := srv.arrivedBy(start.Add(1200 * time.Millisecond)); got != 50 {
		t.Errorf("%d requests arrived within 1.2 s, want all 50 (open loop must not wait for answers)", got)
	}
	if got := o.Inflight(); got != 50 {
		t.Errorf("driver reports %d in flight, want 50", got)
	}
	// Hold the stall until 2 s after start, then let everything through.
	time.Sleep(time.Until(start.Add(2 * time.Second)))
	releasedAt := time.Now()
	srv.release()
	<-done

	if srv.count() != 50 {
		t.Fatalf("server saw %d requests, want 50", srv.count())
	}
	rep := rec.Report()
	if rep.Totals.Offered != 50 || rep.Totals.Sent != 50 || rep.Totals.OK != 50 || rep.Totals.Dropped != 0 {
		t.Fatalf("totals %+v", rep.Totals)
	}
	// The first request was due at 10 ms and answered after the release at
	// >= 2 s; the last was due at 990 ms. Measured from intended time,
	// latencies span [release-0.99 s, release-0.01 s] and beyond.
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	stall := releasedAt.Sub(start)
	if lo := ms(stall - 990*time.Millisecond); rep.Latency.Min < lo-5 {
		t.Errorf("min latency %.1f ms, want >= %.1f ms (stall since the last intended send)", rep.Latency.Min, lo)
	}
	if hi := ms(stall - 10*time.Millisecond); rep.Latency.Max < hi-5 {
		t.Errorf("max latency %.1f ms, want >= %.1f ms (stall since the first intended send)", rep.Latency.Max, hi)
	}
	secs := rec.Finish()
	if secs[0].Offered != 50 || secs[0].Sent != 50 || secs[0].OK != 0 {
		t.Errorf("second 0: %+v (all due and sent in second 0, none answered)", secs[0])
	}
}

// The contrast: N closed-loop users never have more than N requests in
// flight, so a stalled server sees exactly N and the run sends nothing else.
func TestClosedLoopHoldsAtMostUsersInFlight(t *testing.T) {
	srv := newStallServer(t, "web-1")
	h := newHTTP([]string{srv.URL}, 5, 30*time.Second, true)
	defer h.Close()
	start := time.Now()
	rec := measure.New(measure.Config{Start: start, Targets: []string{srv.URL}})
	c := &Closed{Users: 5, Pick: func() int { return 0 }, New: h.Requester, Rec: rec, Until: start.Add(time.Second)}
	done := make(chan struct{})
	go func() { c.Run(context.Background()); close(done) }()

	testenv.Eventually(t, 10*time.Second, "5 arrivals", func() bool { return srv.count() >= 5 })
	time.Sleep(time.Until(start.Add(1200 * time.Millisecond)))
	if got := srv.count(); got != 5 {
		t.Errorf("closed loop sent %d requests to a stalled server, want exactly 5 (one per user)", got)
	}
	srv.release()
	<-done
	if p := srv.peak.Load(); p > 5 {
		t.Errorf("peak in flight %d > 5 users", p)
	}
	if rep := rec.Report(); rep.Totals.Sent != 5 || rep.Totals.OK != 5 {
		t.Errorf("totals %+v", rep.Totals)
	}
}

func TestClosedLoopLimit(t *testing.T) {
	srv := idServer(t, "web-1")
	h := newHTTP([]string{srv.URL}, 4, 5*time.Second, true)
	defer h.Close()
	rec := measure.New(measure.Config{Start: time.Now(), Targets: []string{srv.URL}})
	c := &Closed{Users: 4, Pick: func() int { return 0 }, New: h.Requester, Rec: rec, Limit: 101}
	c.Run(context.Background())
	if rep := rec.Report(); rep.Totals.Sent != 101 || rep.Totals.OK != 101 {
		t.Fatalf("totals %+v, want exactly 101", rep.Totals)
	}
}

// When Cap requests are stuck, further due requests are dropped and
// counted, not queued behind them.
func TestOpenLoopDropsAtCap(t *testing.T) {
	srv := newStallServer(t, "web-1")
	h := newHTTP([]string{srv.URL}, 10, 30*time.Second, true)
	defer h.Close()
	start := time.Now()
	rec := measure.New(measure.Config{Start: start, Targets: []string{srv.URL}})
	o := &Open{
		Schedule: schedule.New(schedule.Constant(100, 500*time.Millisecond), start, 0),
		Pick:     func() int { return 0 }, New: h.Requester, Rec: rec, Cap: 10,
	}
	done := make(chan struct{})
	go func() { o.Run(context.Background()); close(done) }()
	// The schedule ends at 500 ms; the dispatcher then waits for the 10.
	testenv.Eventually(t, 10*time.Second, "all 50 dispatched", func() bool {
		r := rec.Report()
		return r.Totals.Offered == 50
	})
	srv.release()
	<-done
	tot := rec.Report().Totals
	if tot.Offered != 50 || tot.Sent != 10 || tot.Dropped != 40 || tot.OK != 10 {
		t.Fatalf("totals %+v, want 10 sent and 40 dropped", tot)
	}
	if srv.count() != 10 {
		t.Fatalf("server saw %d, want 10", srv.count())
	}
}

func idServer(t *testing.T, id string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(ServerIDHeader, id)
		w.Write([]byte("hello from " + id))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// countingServer counts the requests it serves and the connections opened.
func countingServer(t *testing.T, id string) (*httptest.Server, *atomic.Int64, *atomic.Int64) {
	t.Helper()
	var reqs, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs.Add(1)
		w.Header().Set(ServerIDHeader, id)
		w.Write([]byte("hello from " + id))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &reqs, &conns
}

// A 9:1 weighting sends 90/10 (±2%) of 1000 requests to two real servers,
// and the X-Server-Id of the answers shows the same split.
func TestWeightedSplitAcrossRealServers(t *testing.T) {
	a, aReqs, _ := countingServer(t, "a")
	b, bReqs, _ := countingServer(t, "b")
	ts := []target.Target{{URL: a.URL, Weight: 9}, {URL: b.URL, Weight: 1}}
	urls := []string{a.URL, b.URL}
	h := newHTTP(urls, 1000, 10*time.Second, true)
	defer h.Close()
	start := time.Now()
	rec := measure.New(measure.Config{Start: start, Targets: urls})
	pick := target.NewPicker(ts)
	o := &Open{
		Schedule: schedule.New(schedule.Constant(1000, time.Minute), start, 1000),
		Pick:     pick.Pick, New: h.Requester, Rec: rec, Cap: 1000,
	}
	o.Run(context.Background())
	rep := rec.Report()
	if rep.Totals.Offered != 1000 {
		t.Fatalf("offered %d", rep.Totals.Offered)
	}
	served := aReqs.Load() + bReqs.Load()
	if served != rep.Totals.Sent || served < 980 {
		t.Fatalf("servers saw %d, driver sent %d (dropped %d)", served, rep.Totals.Sent, rep.Totals.Dropped)
	}
	share := float64(aReqs.Load()) / float64(served)
	if share < 0.88 || share > 0.92 {
		t.Errorf("server a got %.1f%%, want 90±2%%", share*100)
	}
	shares := map[string]float64{}
	for _, bk := range rep.Backends {
		shares[bk.ID] = bk.Share
	}
	if shares["a"] < 0.88 || shares["a"] > 0.92 || shares["b"] < 0.08 || shares["b"] > 0.12 {
		t.Errorf("X-Server-Id shares %v, want a 0.9, b 0.1", shares)
	}
	if rep.Targets[0].Backends["a"] != rep.Targets[0].OK || rep.Targets[1].Backends["b"] != rep.Targets[1].OK {
		t.Errorf("per-target backends %+v", rep.Targets)
	}
}

func TestKeepAliveReusesConnections(t *testing.T) {
	for _, keep := range []bool{true, false} {
		srv, reqs, conns := countingServer(t, "web-1")
		h := newHTTP([]string{srv.URL}, 2, 5*time.Second, keep)
		rec := measure.New(measure.Config{Start: time.Now(), Targets: []string{srv.URL}})
		(&Closed{Users: 2, Pick: func() int { return 0 }, New: h.Requester, Rec: rec, Limit: 50}).Run(context.Background())
		h.Close()
		if reqs.Load() != 50 {
			t.Fatalf("keep-alive %v: %d requests", keep, reqs.Load())
		}
		// net/http returns a connection to the pool just after the body is
		// read, so a user may occasionally dial before its old one is back:
		// a few extra connections, never one per request.
		if keep && conns.Load() > 10 {
			t.Errorf("keep-alive on: %d connections for 2 users and 50 requests", conns.Load())
		}
		if !keep && conns.Load() != 50 {
			t.Errorf("keep-alive off: %d connections for 50 requests", conns.Load())
		}
	}
}

func TestErrorsAreCountedByKind(t *testing.T) {
	slow := newStallServer(t, "slow")
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "saturated", http.StatusServiceUnavailable)
	}))
	defer busy.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()

	urls := []string{slow.URL, busy.URL, dead}
	h := newHTTP(urls, 10, 200*time.Millisecond, true)
	defer h.Close()
	rec := measure.New(measure.Config{Start: time.Now(), Targets: urls})
	var n atomic.Int64
	pick := func() int { return int(n.Add(1)-1) % 3 }
	(&Closed{Users: 3, Pick: pick, New: h.Requester, Rec: rec, Limit: 9}).Run(context.Background())
	rep := rec.Report()
	if rep.Errors["timeout"] != 3 || rep.Errors["status_503"] != 3 || rep.Errors["refused"] != 3 {
		t.Fatalf("errors %v, want 3 timeouts, 3 status_503, 3 refused", rep.Errors)
	}
	if rep.Totals.OK != 0 || rep.Totals.Failed != 9 || rep.Latency.Count != 0 {
		t.Fatalf("totals %+v latency %+v", rep.Totals, rep.Latency)
	}
}

// fakeClock only moves when told to: the dispatcher's sleeps overshoot by
// 25 ms, as a descheduled process would.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time        { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) sleep(d time.Duration) { c.ns.Add(int64(d + 25*time.Millisecond)) }

// A dispatcher that falls behind its schedule must not hide it: the lag
// counts as lateness and as latency, even when the server answers at once.
func TestLateDispatchCountsInLatency(t *testing.T) {
	clk := &fakeClock{}
	start := clk.now()
	rec := measure.New(measure.Config{Start: start, Targets: []string{"x"}})
	instant := func() Requester {
		return func(int) measure.Outcome { return measure.Outcome{Kind: measure.OK, Status: 200, Backend: "b"} }
	}
	o := &Open{
		Schedule: schedule.New(schedule.Constant(10, time.Second), start, 0), // due 50, 150, … ms
		Pick:     func() int { return 0 }, New: instant, Rec: rec, Cap: 100,
		Now: clk.now, Sleep: clk.sleep,
	}
	o.Run(context.Background())
	rep := rec.Report()
	if rep.Totals.Sent != 10 || rep.Totals.OK != 10 {
		t.Fatalf("totals %+v", rep.Totals)
	}
	if rep.Totals.Late != 10 || rep.Totals.MaxLagMS < 25 {
		t.Errorf("late %d, max lag %.1f ms; every send was 25 ms behind", rep.Totals.Late, rep.Totals.MaxLagMS)
	}
	if rep.Latency.Min < 24.9 {
		t.Errorf("min latency %.1f ms: the 25 ms the request waited for the driver is missing", rep.Latency.Min)
	}
}

// A profile ending in a zero-rate stretch keeps the run going until the
// profile's end (found while measuring: the driver used to stop at the last
// answer and the status sampler missed the scale-down it was meant to see).
func TestOpenLoopLastsThroughZeroRateTail(t *testing.T) {
	start := time.Unix(1000, 0)
	var clock time.Time = start
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	sleep := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }
	p := schedule.Profile{
		{Start: 0, End: time.Second, From: 4, To: 4},
		{Start: time.Second, End: 5 * time.Second, From: 0, To: 0},
	}
	rec := measure.New(measure.Config{Start: start, Targets: []string{"t"}})
	var calls atomic.Int64
	o := &Open{
		Schedule: schedule.New(p, start, 0),
		Pick:     func() int { return 0 },
		New: func() Requester {
			return func(int) measure.Outcome { calls.Add(1); return measure.Outcome{Status: 200} }
		},
		Rec: rec, Cap: 4, Now: now, Sleep: sleep,
	}
	o.Run(context.Background())
	if calls.Load() != 4 {
		t.Fatalf("sent %d requests, want 4", calls.Load())
	}
	if got := now().Sub(start); got != 5*time.Second {
		t.Fatalf("run ended %v after start, want at the profile's end (5s)", got)
	}
}
