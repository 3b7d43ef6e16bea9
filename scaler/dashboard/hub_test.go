package dashboard_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"lbscale/scaler/dashboard"
	"lbscale/scaler/dashboard/dashboardtest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a made-up time that a test moves by hand.
type clock struct {
	mu sync.Mutex // protects at
	at time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.at
}

func (c *clock) step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at = c.at.Add(d)
}

func TestPointOf(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    dashboard.Snapshot
		want dashboard.Point
	}{
		{"zero", dashboard.Snapshot{Time: time.UnixMilli(0)}, dashboard.Point{}},
		{"every field", dashboard.Snapshot{
			Time:     t0.Add(1500 * time.Millisecond),
			Replicas: dashboard.Replicas{Ready: 4, Starting: 2, Draining: 1, Desired: 6, Ideal: 5.5, Min: 1, Max: 10},
			Requests: dashboard.Requests{Inflight: 130, Queued: 7, Limit: 128, Rate: 412.5},
		}, dashboard.Point{T: t0.UnixMilli() + 1500, Ready: 4, Starting: 2, Draining: 1, Desired: 6, Ideal: 5.5,
			Inflight: 130, Queued: 7, Rate: 412.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := dashboard.PointOf(tc.s); got != tc.want {
				t.Errorf("PointOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// The page reads points by their short keys.
func TestPointJSONKeys(t *testing.T) {
	b, err := json.Marshal(dashboard.Point{T: 1, Ready: 2, Starting: 3, Draining: 4, Desired: 5, Ideal: 6.5, Inflight: 7, Queued: 8, Rate: 9.5})
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"t":1,"r":2,"s":3,"d":4,"w":5,"i":6.5,"f":7,"q":8,"a":9.5}`
	if string(b) != want {
		t.Errorf("JSON = %s, want %s", b, want)
	}
}

// sse reads server-sent events from a real HTTP response.
type sse struct {
	t    *testing.T
	resp *http.Response
	r    *bufio.Reader
}

// sseEvent is one event: its fields in order, as "name: value" lines.
type sseEvent struct {
	lines []string
}

func (e sseEvent) field(name string) string {
	for _, l := range e.lines {
		if v, ok := strings.CutPrefix(l, name+": "); ok {
			return v
		}
	}
	return ""
}

func openStream(t *testing.T, url string) *sse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+dashboard.StreamPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream status %d", resp.StatusCode)
	}
	return &sse{t: t, resp: resp, r: bufio.NewReader(resp.Body)}
}

// next reads the next event, up to its blank line.
func (s *sse) next() sseEvent {
	s.t.Helper()
	var e sseEvent
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("read stream after %q: %v", e.lines, err)
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			return e
		}
		e.lines = append(e.lines, line)
	}
}

// ended reports whether the stream ends without another event.
func (s *sse) ended() bool {
	_, err := s.r.ReadString('\n')
	return err != nil
}

type initMsg struct {
	History  []dashboard.Point   `json:"history"`
	Snapshot *dashboard.Snapshot `json:"snapshot"`
	EveryMs  int64               `json:"every_ms"`
}

type tickMsg struct {
	Point    *dashboard.Point    `json:"point"`
	Snapshot *dashboard.Snapshot `json:"snapshot"`
}

func decode[T any](t *testing.T, e sseEvent) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(e.field("data")), &v); err != nil {
		t.Fatalf("data of %q: %v", e.lines, err)
	}
	return v
}

func newHub(shape dashboardtest.Shape) (*dashboard.Hub, *dashboardtest.Source, *clock) {
	c := &clock{at: t0}
	shape.Time = t0
	src := dashboardtest.NewSource(dashboardtest.Cluster(shape), c.now)
	return dashboard.New(dashboard.Options{Source: src, Now: c.now}), src, c
}

func TestStreamFraming(t *testing.T) {
	h, src, c := newHub(dashboardtest.Shape{Backends: 5, Balancers: 2, Events: 3, Seed: 1})
	srv := httptest.NewServer(dashboardtest.Mux(h))
	defer srv.Close()
	defer srv.CloseClientConnections()

	// Before the first sample: an empty history, no snapshot.
	s := openStream(t, srv.URL)
	if got := s.resp.Header.Get("Content-Type"); got != "text/event-stream" {
		t.Errorf("Content-Type = %q", got)
	}
	if got := s.resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q", got)
	}
	if e := s.next(); len(e.lines) != 1 || e.lines[0] != "retry: 1000" {
		t.Errorf("first block = %q, want retry: 1000 alone", e.lines)
	}
	e := s.next()
	if len(e.lines) != 2 || e.lines[0] != "event: init" || !strings.HasPrefix(e.lines[1], "data: ") {
		t.Fatalf("init = %q, want an event line and one data line", e.lines)
	}
	if d := e.field("data"); !strings.Contains(d, `"history":[]`) || !strings.Contains(d, `"snapshot":null`) || !strings.Contains(d, `"every_ms":1000`) ||
		!strings.Contains(d, fmt.Sprintf(`"window_ms":%d`, dashboard.DefaultWindow.Milliseconds())) {
		t.Errorf("init before any sample = %s", d)
	}

	for range 3 {
		h.Sample(t.Context())
		c.step(time.Second)
	}
	// That stream gets a tick per sample.
	for i := range 3 {
		e := s.next()
		if len(e.lines) != 2 || e.lines[0] != "event: tick" {
			t.Fatalf("tick %d = %q", i, e.lines)
		}
		m := decode[tickMsg](t, e)
		if m.Point == nil || m.Snapshot == nil || m.Point.T != t0.Add(time.Duration(i)*time.Second).UnixMilli() {
			t.Fatalf("tick %d = %+v", i, m)
		}
		if *m.Point != dashboard.PointOf(*m.Snapshot) {
			t.Errorf("tick %d: point %+v is not its snapshot's", i, m.Point)
		}
	}

	// A new viewer gets the whole history and the latest snapshot.
	s2 := openStream(t, srv.URL)
	s2.next() // retry
	in := decode[initMsg](t, s2.next())
	if len(in.History) != 3 || in.EveryMs != 1000 || in.Snapshot == nil {
		t.Fatalf("init = %d points, every %d ms, snapshot %v", len(in.History), in.EveryMs, in.Snapshot != nil)
	}
	for i, p := range in.History {
		if p.T != t0.Add(time.Duration(i)*time.Second).UnixMilli() {
			t.Errorf("history[%d].T = %d, want oldest first", i, p.T)
		}
	}
	if !in.Snapshot.Time.Equal(t0.Add(2*time.Second)) || len(in.Snapshot.Backends) != 5 || len(in.Snapshot.Events) != 3 {
		t.Errorf("init snapshot at %v with %d backends, %d events", in.Snapshot.Time, len(in.Snapshot.Backends), len(in.Snapshot.Events))
	}

	// A change at the source shows in the next tick, to both viewers.
	src.Update(func(s *dashboard.Snapshot) { s.Replicas.Ready = 77 })
	h.Sample(t.Context())
	for _, v := range []*sse{s, s2} {
		if m := decode[tickMsg](t, v.next()); m.Snapshot.Replicas.Ready != 77 || m.Point.Ready != 77 {
			t.Errorf("tick after the change: ready %d, point %d", m.Snapshot.Replicas.Ready, m.Point.Ready)
		}
	}
}

func TestSourceFailure(t *testing.T) {
	h, src, c := newHub(dashboardtest.Shape{Backends: 4, Balancers: 1, Seed: 2})
	src.Update(func(s *dashboard.Snapshot) { s.Problems = map[string]string{"lease": "redis timeout"} })
	srv := httptest.NewServer(dashboardtest.Mux(h))
	defer srv.Close()
	defer srv.CloseClientConnections()
	h.Sample(t.Context())
	s := openStream(t, srv.URL)
	s.next()
	last := decode[initMsg](t, s.next()).Snapshot

	src.Fail(errors.New("redis: connection refused"))
	c.step(time.Second)
	h.Sample(t.Context())
	e := s.next()
	if strings.Contains(e.field("data"), `"point"`) {
		t.Errorf("tick of a failed sample has a point: %s", e.field("data"))
	}
	m := decode[tickMsg](t, e)
	if m.Snapshot == nil {
		t.Fatal("tick of a failed sample has no snapshot")
	}
	if got := m.Snapshot.Problems["dashboard source"]; got != "redis: connection refused" {
		t.Errorf(`problems["dashboard source"] = %q`, got)
	}
	if got := m.Snapshot.Problems["lease"]; got != "redis timeout" {
		t.Errorf(`problems["lease"] = %q, want the last snapshot's kept`, got)
	}
	if m.Snapshot.Replicas != last.Replicas || len(m.Snapshot.Backends) != len(last.Backends) {
		t.Errorf("failed tick's snapshot = %+v, want the last one's %+v", m.Snapshot.Replicas, last.Replicas)
	}
	if !m.Snapshot.Time.Equal(t0.Add(time.Second)) {
		t.Errorf("failed tick's time = %v, want the hub's clock %v", m.Snapshot.Time, t0.Add(time.Second))
	}
	if n := len(h.History()); n != 1 {
		t.Errorf("history has %d points, want 1: a failure adds none", n)
	}

	// Healed: points again, and the problem is gone.
	src.Fail(nil)
	src.Update(func(s *dashboard.Snapshot) { s.Problems = nil })
	c.step(time.Second)
	h.Sample(t.Context())
	m = decode[tickMsg](t, s.next())
	if m.Point == nil || len(m.Snapshot.Problems) != 0 {
		t.Errorf("healed tick: point %v, problems %v", m.Point, m.Snapshot.Problems)
	}
	if n := len(h.History()); n != 2 {
		t.Errorf("history has %d points, want 2", n)
	}
}

// A failure before any success still yields a tick, with the problem.
func TestSourceFailureFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, src, _ := newHub(dashboardtest.Shape{Seed: 3})
		src.Fail(errors.New("boom"))
		w := &writer{}
		ctx, leave := context.WithCancel(t.Context())
		go h.Stream(w, httptest.NewRequestWithContext(ctx, http.MethodGet, dashboard.StreamPath, nil))
		synctest.Wait()
		h.Sample(t.Context())
		synctest.Wait()
		leave()
		out := w.String()
		if !strings.Contains(out, "event: tick\ndata: {\"snapshot\":{") || !strings.Contains(out, `"dashboard source":"boom"`) {
			t.Errorf("stream = %s", out)
		}
	})
}

// writer is a ResponseWriter that records what a stream writes; when
// stuck, its first Write waits for release, as a viewer that reads
// nothing makes the handler wait.
type writer struct {
	mu      sync.Mutex // protects buf
	buf     bytes.Buffer
	header  http.Header
	stuck   bool
	release chan struct{}
	once    sync.Once
}

func (w *writer) Header() http.Header {
	w.once.Do(func() { w.header = http.Header{} })
	return w.header
}

func (w *writer) WriteHeader(int) {}

func (w *writer) Write(b []byte) (int, error) {
	if w.stuck {
		<-w.release
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(b)
}

func (w *writer) Flush() {}

func (w *writer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestSlowViewerCutOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _, c := newHub(dashboardtest.Shape{Backends: 3, Seed: 4})
		w := &writer{stuck: true, release: make(chan struct{})}
		done := make(chan struct{})
		go func() {
			h.Stream(w, httptest.NewRequest(http.MethodGet, dashboard.StreamPath, nil))
			close(done)
		}()
		synctest.Wait() // stuck writing the init
		const ticks = 20
		for range ticks {
			h.Sample(t.Context())
			c.step(time.Second)
		}
		close(w.release)
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatalf("a viewer %d ticks behind still streams", ticks)
		}
		got := strings.Count(w.String(), "event: tick\n")
		if got == 0 || got >= ticks {
			t.Errorf("the cut-off viewer got %d ticks, want the few it had buffered (0 < n < %d)", got, ticks)
		}

		// The hub goes on: the page reconnects and gets everything again.
		w2 := &writer{}
		ctx, leave := context.WithCancel(t.Context())
		go h.Stream(w2, httptest.NewRequestWithContext(ctx, http.MethodGet, dashboard.StreamPath, nil))
		synctest.Wait()
		h.Sample(t.Context())
		synctest.Wait()
		leave()
		if n := strings.Count(w2.String(), "event: tick\n"); n != 1 {
			t.Errorf("the next viewer got %d ticks, want 1", n)
		}
		if n := len(h.History()); n != ticks+1 {
			t.Errorf("history = %d points, want %d", n, ticks+1)
		}
	})
}

func TestStreamEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(stopRun, leave context.CancelFunc)
	}{
		{"when Run's context ends", func(stopRun, _ context.CancelFunc) { stopRun() }},
		{"when the viewer leaves", func(_, leave context.CancelFunc) { leave() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				src := dashboardtest.NewSource(dashboardtest.Cluster(dashboardtest.Shape{Backends: 2, Seed: 5}), nil)
				h := dashboard.New(dashboard.Options{Source: src})
				w := &writer{}
				reqCtx, leave := context.WithCancel(t.Context())
				defer leave()
				streamDone := make(chan struct{})
				go func() {
					h.Stream(w, httptest.NewRequestWithContext(reqCtx, http.MethodGet, dashboard.StreamPath, nil))
					close(streamDone)
				}()
				synctest.Wait()
				runCtx, stopRun := context.WithCancel(t.Context())
				defer stopRun()
				runDone := make(chan struct{})
				go func() {
					h.Run(runCtx)
					close(runDone)
				}()
				// Run samples at once, then every second: 0, 1, 2, 3 s.
				time.Sleep(3500 * time.Millisecond)
				synctest.Wait()
				if n := strings.Count(w.String(), "event: tick\n"); n != 4 {
					t.Errorf("%d ticks in 3.5 s, want 4", n)
				}
				if n := src.Calls(); n != 4 {
					t.Errorf("source called %d times in 3.5 s, want 4", n)
				}
				tc.end(stopRun, leave)
				synctest.Wait()
				select {
				case <-streamDone:
				default:
					t.Fatal("the stream goes on")
				}
				stopRun()
				<-runDone
			})
		})
	}
}

func TestPage(t *testing.T) {
	h := dashboard.New(dashboard.Options{Source: dashboardtest.NewSource(dashboard.Snapshot{}, nil)})
	srv := httptest.NewServer(dashboardtest.Mux(h))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	if _, err := body.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	page := body.String()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
		t.Errorf("Content-Type = %q", got)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'unsafe-inline'", "connect-src 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options = %q", got)
	}
	lower := strings.ToLower(page)
	for _, bad := range []string{`src="http`, `href="http`, `src='http`, `href='http`, `url(http`, `@import`, "<iframe"} {
		if strings.Contains(lower, bad) {
			t.Errorf("page holds %q: everything must be inline", bad)
		}
	}
	if !strings.Contains(page, "'"+dashboard.StreamPath+"'") {
		t.Errorf("page does not read the stream at %s", dashboard.StreamPath)
	}
	for _, id := range []string{"conn", "ready", "starting", "draining", "desired", "inflight", "queued", "rate",
		"chart-replicas", "chart-requests", "heatmap", "backends", "filter", "prev", "next", "page",
		"balancers", "events", "problems", "token", "token-save"} {
		if !strings.Contains(page, `id="`+id+`"`) {
			t.Errorf("page has no element id=%q", id)
		}
	}
	if n := strings.Count(page, "\n"); n > 800 {
		t.Errorf("page is %d lines", n)
	}
}
