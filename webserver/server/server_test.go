package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"lbscale/internal/testenv"
)

// start serves cfg on a real loopback listener for the test's lifetime.
func start(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	if cfg.ServerID == "" {
		cfg.ServerID = "srv-1"
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "host-1"
	}
	s := New(cfg, nil)
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return s, hs.URL
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	return do(t, http.MethodGet, url)
}

func do(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

func loadOf(t *testing.T, base string) LoadReport {
	t.Helper()
	res, body := get(t, base+"/load")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/load: %s %s", res.Status, body)
	}
	var l LoadReport
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatalf("/load body %q: %v", body, err)
	}
	return l
}

// waitLoad polls /load until ok holds, failing after 10 s.
func waitLoad(t *testing.T, base string, what string, ok func(LoadReport) bool) LoadReport {
	t.Helper()
	var l LoadReport
	testenv.Eventually(t, 10*time.Second, what, func() bool {
		l = loadOf(t, base)
		return ok(l)
	})
	return l
}

func TestServerIDOnEveryResponse(t *testing.T) {
	s, base := start(t, Config{})
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/", 200},
		{"POST", "/anything/else", 200},
		{"PUT", "/", 200},
		{"HEAD", "/", 200},
		{"GET", "/?work_ms=x", 400},
		{"GET", "/load", 200},
		{"POST", "/load", 405},
		{"POST", "/load/reset", 200},
		{"GET", "/load/reset", 405},
		{"GET", "/healthz", 200},
		{"DELETE", "/healthz", 405},
		{"GET", "/upgrade", 426},
	} {
		res, body := do(t, tc.method, base+tc.path)
		if res.StatusCode != tc.status {
			t.Errorf("%s %s: %d, want %d (%s)", tc.method, tc.path, res.StatusCode, tc.status, body)
		}
		if got := res.Header.Get(HeaderServerID); got != "srv-1" {
			t.Errorf("%s %s: X-Server-Id %q, want srv-1", tc.method, tc.path, got)
		}
	}
	s.BeginShutdown()
	if res, _ := get(t, base+"/healthz"); res.StatusCode != 503 || res.Header.Get(HeaderServerID) != "srv-1" {
		t.Errorf("healthz while shutting down: %d, X-Server-Id %q", res.StatusCode, res.Header.Get(HeaderServerID))
	}
}

func TestHello(t *testing.T) {
	_, base := start(t, Config{ServerID: "web-3", Hostname: "abc123"})
	res, body := get(t, base+"/some/path?x=1")
	if res.StatusCode != 200 || body != "Hello from web-3 (container abc123)\n" {
		t.Errorf("got %d %q", res.StatusCode, body)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
}

// TestCapacityQueues is the gunicorn-worker model: with CAPACITY=2 six
// concurrent requests are all let in, two are processed at a time, the
// other four wait, and they finish in three batches.
func TestCapacityQueues(t *testing.T) {
	const sleep = 800 * time.Millisecond
	s, base := start(t, Config{Capacity: 2})

	begin := time.Now()
	var mu sync.Mutex
	var done []time.Duration
	var wg sync.WaitGroup
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := http.Get(fmt.Sprintf("%s/?sleep_ms=%d", base, sleep.Milliseconds()))
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != 200 {
				t.Errorf("status %d", res.StatusCode)
			}
			mu.Lock()
			done = append(done, time.Since(begin))
			mu.Unlock()
		}()
	}
	// All six are inside at once: two processing, four waiting.
	l := waitLoad(t, base, "2 active + 4 waiting", func(l LoadReport) bool { return l.Inflight == 6 })
	if l.Active != 2 || l.Waiting != 4 || l.Utilization != 3 {
		t.Errorf("with 6 inside: %+v, want active 2, waiting 4, utilization 3", l)
	}
	wg.Wait()

	slices.Sort(done)
	if len(done) != 6 {
		t.Fatalf("%d requests finished", len(done))
	}
	// Two slots, each serving one request at a time for at least `sleep`:
	// the k-th completion (1-based) cannot come before ceil(k/2) sleeps.
	for i, d := range done {
		if batch := time.Duration((i+2)/2) * sleep; d < batch {
			t.Errorf("completion %d at %v, before %v: more than 2 processed at once", i+1, d, batch)
		}
	}
	l = loadOf(t, base)
	if l.PeakActive != 2 || l.PeakInflight != 6 || l.Served != 6 || l.Inflight != 0 || l.Active != 0 || l.Waiting != 0 {
		t.Errorf("after the batch: %+v", l)
	}
	if s.Snapshot().PeakActive != 2 {
		t.Error("Snapshot disagrees with /load")
	}
}

func TestUnlimitedCapacityNeverWaits(t *testing.T) {
	_, base := start(t, Config{})
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); get(t, base+"/?sleep_ms=800") }()
	}
	l := waitLoad(t, base, "5 inside", func(l LoadReport) bool { return l.Inflight == 5 })
	if l.Active != 5 || l.Waiting != 0 || l.Utilization != 0 || l.Capacity != 0 {
		t.Errorf("unlimited with 5 inside: %+v", l)
	}
	wg.Wait()
}

func TestQueryOverrides(t *testing.T) {
	// The configured cost is large; the query sets it to nothing.
	_, base := start(t, Config{Sleep: 20 * time.Second, Work: 20 * time.Second})
	t0 := time.Now()
	if res, _ := get(t, base+"/?sleep_ms=0&work_ms=0"); res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("overridden to 0 yet took %v", d)
	}

	// And the other way round: from nothing to a cost.
	_, base = start(t, Config{})
	t0 = time.Now()
	get(t, base+"/?sleep_ms=300")
	if d := time.Since(t0); d < 300*time.Millisecond {
		t.Errorf("sleep_ms=300 answered after %v", d)
	}
	cpu0 := processCPU()
	get(t, base+"/?work_ms=300")
	if used := processCPU() - cpu0; used < 300*time.Millisecond {
		t.Errorf("work_ms=300 used %v of CPU", used)
	}
}

func TestBadParams(t *testing.T) {
	_, base := start(t, Config{})
	for _, q := range []string{
		"work_ms=abc", "work_ms=-1", "work_ms=60001", "work_ms=1.5", "work_ms=",
		"sleep_ms=1e3", "sleep_ms=-10", "sleep_ms=99999999999999999999", "work_ms=5&sleep_ms=x",
	} {
		res, body := get(t, base+"/?"+q)
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, res.StatusCode)
			continue
		}
		name, _, _ := strings.Cut(q[strings.LastIndex(q, "&")+1:], "=")
		if !strings.Contains(body, name) || !strings.Contains(body, "60000") {
			t.Errorf("%s: message %q does not name %s and the range", q, body, name)
		}
	}
	// Queries the parser cannot read, or that name a cost twice, are
	// refused too, not served at the default cost.
	for _, q := range []string{"work_ms=%zz", "sleep_ms=5;x", "work_ms=5&work_ms=abc"} {
		if res, body := get(t, base+"/?"+q); res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d %q, want 400", q, res.StatusCode, body)
		}
	}
	if l := loadOf(t, base); l.Served != 0 || l.PeakInflight != 0 {
		t.Errorf("rejected requests were counted: %+v", l)
	}
}

func TestLoadJSON(t *testing.T) {
	_, base := start(t, Config{Capacity: 2, ServerID: "w9"})
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); get(t, base+"/?sleep_ms=1000") }()
	}
	waitLoad(t, base, "3 inside", func(l LoadReport) bool { return l.Inflight == 3 })

	_, body := get(t, base+"/load")
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"id": "w9", "inflight": 3.0, "peak_inflight": 3.0, "active": 2.0, "waiting": 1.0,
		"capacity": 2.0, "served": 0.0, "utilization": 1.5, "conns": 0.0,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v (body %s)", k, m[k], v, body)
		}
	}
	if _, ok := m["cpu_percent"].(float64); !ok {
		t.Errorf("cpu_percent missing: %s", body)
	}
	// /load and /healthz neither count nor wait for a slot.
	for i := 0; i < 5; i++ {
		get(t, base+"/healthz")
	}
	if l := loadOf(t, base); l.PeakInflight != 3 || l.Inflight != 3 {
		t.Errorf("monitoring requests were counted: %+v", l)
	}
	wg.Wait()
	if l := loadOf(t, base); l.Served != 3 || l.Inflight != 0 || l.Utilization != 0 {
		t.Errorf("after: %+v", l)
	}
}

func TestReset(t *testing.T) {
	_, base := start(t, Config{})
	for i := 0; i < 3; i++ {
		get(t, base+"/")
	}
	if l := loadOf(t, base); l.Served != 3 || l.PeakInflight != 1 {
		t.Fatalf("before reset: %+v", l)
	}
	res, body := do(t, http.MethodPost, base+"/load/reset")
	if res.StatusCode != 200 || !strings.Contains(body, `"served":0`) {
		t.Fatalf("reset: %d %s", res.StatusCode, body)
	}
	if l := loadOf(t, base); l.Served != 0 || l.PeakInflight != 0 || l.PeakActive != 0 {
		t.Errorf("after reset: %+v", l)
	}

	// A request inside during the reset belongs to the new phase.
	go get(t, base+"/?sleep_ms=800")
	waitLoad(t, base, "1 inside", func(l LoadReport) bool { return l.Inflight == 1 })
	do(t, http.MethodPost, base+"/load/reset")
	if l := loadOf(t, base); l.PeakInflight != 1 || l.PeakActive != 1 {
		t.Errorf("reset with one inside: %+v", l)
	}
	waitLoad(t, base, "it to finish", func(l LoadReport) bool { return l.Served == 1 && l.Inflight == 0 })
}

func TestWaitingRequestCancelledWhenClientLeaves(t *testing.T) {
	_, base := start(t, Config{Capacity: 1})
	go get(t, base+"/?sleep_ms=2500")
	waitLoad(t, base, "the slot taken", func(l LoadReport) bool { return l.Active == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/", nil)
	errc := make(chan error, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	waitLoad(t, base, "one waiting", func(l LoadReport) bool { return l.Waiting == 1 })
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("cancelled request succeeded")
	}
	l := waitLoad(t, base, "the waiter to leave", func(l LoadReport) bool { return l.Waiting == 0 })
	if l.Cancelled != 1 || l.Inflight != 1 || l.Active != 1 {
		t.Errorf("after the waiter left: %+v", l)
	}
	l = waitLoad(t, base, "the first to finish", func(l LoadReport) bool { return l.Inflight == 0 })
	if l.Served != 1 {
		t.Errorf("served %d, want 1", l.Served)
	}
}

func TestCPUPercent(t *testing.T) {
	s := New(Config{ServerID: "c"}, nil)
	s.cpuEvery = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.SampleCPU(ctx)
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()

	done := make(chan struct{})
	go func() { defer close(done); get(t, hs.URL+"/?work_ms=1000") }()
	peak := 0.0
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-time.After(50 * time.Millisecond):
		}
		peak = max(peak, loadOf(t, hs.URL).CPUPercent)
	}
	// One request burns a whole core for a second. On a crowded 2-core
	// host (load 9) its thread still gets some 20% of a core, and the
	// test's own polling costs far less than 10%.
	if peak < 10 {
		t.Errorf("cpu_percent peaked at %.1f during a 1 s CPU burn", peak)
	}
}

// TestShutdownDrains: after the context ends, requests already inside —
// processing or waiting for a slot — complete, then Serve returns nil.
func TestShutdownDrains(t *testing.T) {
	s := New(Config{ServerID: "d", Capacity: 1, ShutdownTimeout: 10 * time.Second}, nil)
	base, cancel, served := serveLoopback(t, s)
	defer cancel()

	type result struct {
		status int
		body   string
		err    error
	}
	results := make(chan result, 2)
	for i := 0; i < 2; i++ {
		go func() {
			res, err := http.Get(base + "/?sleep_ms=1000")
			if err != nil {
				results <- result{err: err}
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			results <- result{status: res.StatusCode, body: string(b)}
		}()
	}
	waitLoad(t, base, "1 active + 1 waiting", func(l LoadReport) bool { return l.Active == 1 && l.Waiting == 1 })
	cancel()
	// While the two drain, health reads 503 (the listener is closed by
	// now, so ask the handler directly).
	for deadline := time.Now().Add(5 * time.Second); !s.Snapshot().ShuttingDown; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("shutdown never began")
		}
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("healthz during drain: %d, want 503", rec.Code)
	}
	if l := s.Snapshot(); l.Inflight < 1 {
		t.Errorf("nothing left inside during the drain: %+v", l)
	}
	for i := 0; i < 2; i++ {
		r := <-results
		if r.err != nil || r.status != 200 || !strings.HasPrefix(r.body, "Hello from d") {
			t.Errorf("in-flight request during shutdown: %+v", r)
		}
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the drain")
	}
	if !s.Snapshot().ShuttingDown {
		t.Error("not marked shutting down")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("still accepting connections after shutdown")
	}
}

func TestShutdownTimeoutCutsDrain(t *testing.T) {
	s := New(Config{ServerID: "d", ShutdownTimeout: 200 * time.Millisecond}, nil)
	base, cancel, served := serveLoopback(t, s)
	go func() {
		if res, err := http.Get(base + "/?sleep_ms=30000"); err == nil {
			res.Body.Close()
		}
	}()
	waitLoad(t, base, "1 inside", func(l LoadReport) bool { return l.Inflight == 1 })
	cancel()
	select {
	case err := <-served:
		if err == nil || !strings.Contains(err.Error(), "drain 1 in-flight") {
			t.Errorf("Serve = %v, want a drain error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve ignored SHUTDOWN_TIMEOUT")
	}
}

func TestUpgradeEcho(t *testing.T) {
	_, base := start(t, Config{ServerID: "u1", Capacity: 4})
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// Bytes sent right behind the headers must be echoed too (the server
	// has them in its read buffer when it takes the connection over).
	fmt.Fprint(conn, "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\nUpgrade: echo-proto\r\n\r\nearly;")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Upgrade") != "echo-proto" ||
		res.Header.Get("Connection") != "Upgrade" || res.Header.Get(HeaderServerID) != "u1" {
		t.Fatalf("upgrade answer: %s %v", res.Status, res.Header)
	}
	// The slot is given back once the handshake is written, which the
	// client may read a moment before the server counts it.
	waitLoad(t, base, "the open upgraded connection in conns, holding no slot", func(l LoadReport) bool {
		return l.Conns == 1 && l.Active == 0 && l.Inflight == 0
	})
	fmt.Fprint(conn, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "early;ping\n" {
		t.Fatalf("echo: %q %v", line, err)
	}
	// Half-close: the server sees EOF, stops echoing and closes.
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after EOF: %q %v", rest, err)
	}
	waitLoad(t, base, "the connection to be released", func(l LoadReport) bool { return l.Conns == 0 && l.Inflight == 0 && l.Served == 1 })

	// Without the upgrade headers: 426.
	for _, h := range []string{"Upgrade: echo-proto", "Connection: Upgrade", "Connection: keep-alive\r\nUpgrade: x"} {
		c2, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c2, "GET /upgrade HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n", h)
		res, err := http.ReadResponse(bufio.NewReader(c2), nil)
		c2.Close()
		if err != nil {
			t.Errorf("%q: %v", h, err)
		} else if res.StatusCode != http.StatusUpgradeRequired {
			t.Errorf("%q: %s, want 426", h, res.Status)
		}
	}
}

// serveLoopback runs s on a loopback port until cancel; served delivers
// what Serve returned.
func serveLoopback(t *testing.T, s *Server) (base string, cancel context.CancelFunc, served <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	return "http://" + ln.Addr().String(), cancel, done
}
