package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// upgrade opens a tunnel on /upgrade and returns it once the 101 is read.
func upgrade(t *testing.T, base string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprint(conn, "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo-proto\r\n\r\n")
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %s", res.Status)
	}
	return conn, br
}

// echo checks that the tunnel still echoes.
func echo(t *testing.T, conn net.Conn, br *bufio.Reader, msg string) {
	t.Helper()
	fmt.Fprint(conn, msg+"\n")
	if line, err := br.ReadString('\n'); err != nil || line != msg+"\n" {
		t.Fatalf("echo of %q: %q %v", msg, line, err)
	}
}

// events opens /events?query and returns the response, its head checked.
func events(t *testing.T, base, query string) (*http.Response, *bufio.Reader) {
	t.Helper()
	res, err := http.Get(base + "/events?" + query)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" ||
		res.Header.Get("Cache-Control") != "no-cache" || res.Header.Get(HeaderServerID) == "" {
		t.Fatalf("/events?%s: %s %v", query, res.Status, res.Header)
	}
	return res, bufio.NewReader(res.Body)
}

// nextEvent reads one event (up to its blank line).
func nextEvent(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var ev strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("event stream after %q: %v", ev.String(), err)
		}
		if line == "\n" {
			return ev.String()
		}
		ev.WriteString(line)
	}
}

// TestUpgradesHoldNoSlot: with CAPACITY=1, twenty tunnels stay open at once
// (each took the slot for its handshake only), ordinary requests are still
// answered beside them, and /load counts them in conns.
func TestUpgradesHoldNoSlot(t *testing.T) {
	s, base := start(t, Config{Capacity: 1})
	type tunnel struct {
		conn net.Conn
		br   *bufio.Reader
	}
	var tunnels []tunnel
	for range 20 {
		conn, br := upgrade(t, base)
		tunnels = append(tunnels, tunnel{conn, br})
	}
	l := loadOf(t, base)
	if l.Conns != 20 || l.Active != 0 || l.Inflight != 0 || l.Served != 20 || l.PeakActive != 1 {
		t.Fatalf("20 open tunnels: %+v, want conns 20, no slot held, every handshake served one at a time", l)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	res, err := client.Get(base + "/?sleep_ms=10")
	if err != nil {
		t.Fatalf("GET / beside 20 tunnels: %v", err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(string(body), "Hello from") {
		t.Fatalf("GET / beside 20 tunnels: %s %q", res.Status, body)
	}
	for i, tn := range tunnels {
		echo(t, tn.conn, tn.br, fmt.Sprintf("tunnel %d", i))
	}
	for _, tn := range tunnels[:5] {
		tn.conn.Close()
	}
	waitLoad(t, base, "5 tunnels closed", func(l LoadReport) bool { return l.Conns == 15 })
	if s.Snapshot().Inflight != 0 {
		t.Errorf("closed tunnels left requests inside: %+v", s.Snapshot())
	}
}

// TestUpgradeWaitsForSlotToHandshake: the handshake is a request like any
// other: with the one slot busy it waits, and gets its 101 once the slot
// frees.
func TestUpgradeWaitsForSlotToHandshake(t *testing.T) {
	_, base := start(t, Config{Capacity: 1})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if res, err := http.Get(base + "/?sleep_ms=1000"); err == nil {
			res.Body.Close()
		}
	}()
	waitLoad(t, base, "the slot taken", func(l LoadReport) bool { return l.Active == 1 })
	t0 := time.Now()
	conn, br := upgrade(t, base)
	if waited := time.Since(t0); waited < 100*time.Millisecond {
		t.Errorf("101 after %s while the only slot was busy", waited)
	}
	echo(t, conn, br, "after the wait")
	<-done
}

// TestEventsStream: count events, interval_ms apart, then the stream ends;
// the stream is in conns while open and holds no slot.
func TestEventsStream(t *testing.T) {
	_, base := start(t, Config{Capacity: 1})
	t0 := time.Now()
	res, _ := events(t, base, "interval_ms=50&count=4")
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := "data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n"; string(body) != want {
		t.Fatalf("stream %q, want %q", body, want)
	}
	if took := time.Since(t0); took < 150*time.Millisecond {
		t.Errorf("4 events 50 ms apart took %s", took)
	}

	// An unbounded stream: counted while open, a GET / answered beside it
	// with CAPACITY=1, and counted out when the client leaves.
	res, br := events(t, base, "interval_ms=20")
	for i := 1; i <= 3; i++ {
		if ev := nextEvent(t, br); ev != fmt.Sprintf("data: %d\n", i) {
			t.Fatalf("event %d: %q", i, ev)
		}
	}
	if l := loadOf(t, base); l.Conns != 1 || l.Active != 0 {
		t.Errorf("open stream: %+v, want conns 1 and no slot held", l)
	}
	if r, _ := get(t, base+"/"); r.StatusCode != http.StatusOK {
		t.Errorf("GET / beside a stream: %s", r.Status)
	}
	res.Body.Close()
	waitLoad(t, base, "the stream to end when its client left", func(l LoadReport) bool { return l.Conns == 0 && l.Served == 3 })
}

func TestEventsBadParams(t *testing.T) {
	_, base := start(t, Config{})
	for _, q := range []string{"interval_ms=0", "interval_ms=60001", "interval_ms=x", "interval_ms=5&interval_ms=6",
		"count=-1", "count=1000001", "count=1.5", "count=%zz"} {
		res, body := get(t, base+"/events?"+q)
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("/events?%s: %d %q, want 400", q, res.StatusCode, body)
		}
	}
	if res, _ := do(t, http.MethodPost, base+"/events"); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /events: %d, want 405", res.StatusCode)
	}
	if l := loadOf(t, base); l.Conns != 0 || l.Served != 0 {
		t.Errorf("refused streams counted: %+v", l)
	}
}

// TestShutdownClosesLongConns: on shutdown the server closes open tunnels
// and ends event streams with "bye" itself, at once, while a request inside
// still completes; Serve returns well before SHUTDOWN_TIMEOUT.
func TestShutdownClosesLongConns(t *testing.T) {
	s := New(Config{ServerID: "d", Capacity: 1, ShutdownTimeout: 30 * time.Second}, nil)
	base, cancel, served := serveLoopback(t, s)
	defer cancel()

	conn1, br1 := upgrade(t, base)
	_, br2 := upgrade(t, base)
	_, ev := events(t, base, "interval_ms=50")
	if e := nextEvent(t, ev); e != "data: 1\n" {
		t.Fatalf("first event %q", e)
	}
	inside := make(chan string, 1)
	go func() {
		res, err := http.Get(base + "/?sleep_ms=300")
		if err != nil {
			inside <- err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		inside <- string(b)
	}()
	waitLoad(t, base, "2 tunnels, 1 stream, 1 request", func(l LoadReport) bool { return l.Conns == 3 && l.Inflight == 1 })
	echo(t, conn1, br1, "before")

	t0 := time.Now()
	cancel()
	for i, br := range []*bufio.Reader{br1, br2} {
		rest, err := io.ReadAll(br)
		if err != nil && !strings.Contains(err.Error(), "reset") {
			t.Errorf("tunnel %d: %v", i, err)
		}
		if len(rest) != 0 {
			t.Errorf("tunnel %d: %q after shutdown", i, rest)
		}
	}
	if took := time.Since(t0); took > 3*time.Second {
		t.Errorf("tunnels closed %s after shutdown began", took)
	}
	var last string
	for {
		e := nextEvent(t, ev)
		if strings.HasPrefix(e, "event: ") {
			last = e
			break
		}
	}
	if last != "event: bye\ndata: shutting down\n" {
		t.Errorf("last event %q, want bye", last)
	}
	if rest, err := io.ReadAll(ev); err != nil || len(rest) != 0 {
		t.Errorf("stream after bye: %q %v", rest, err)
	}
	if got := <-inside; !strings.HasPrefix(got, "Hello from d") {
		t.Errorf("request inside at shutdown: %q", got)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after closing its long-lived connections")
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("shutdown took %s with SHUTDOWN_TIMEOUT 30s", took)
	}
	if l := s.Snapshot(); l.Conns != 0 || l.Inflight != 0 {
		t.Errorf("after shutdown: %+v", l)
	}
}

// TestNoLongConnsWhileShuttingDown: once shutdown has begun, a new tunnel
// or stream is refused with 503 and the connection closed, so the client
// goes elsewhere instead of opening what would be closed at once.
func TestNoLongConnsWhileShuttingDown(t *testing.T) {
	s, base := start(t, Config{})
	s.BeginShutdown()
	if res, _ := get(t, base+"/events"); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/events while shutting down: %s", res.Status)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(conn, "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusServiceUnavailable || !res.Close {
		t.Errorf("/upgrade while shutting down: %s close=%v", res.Status, res.Close)
	}
	if l := s.Snapshot(); l.Conns != 0 {
		t.Errorf("refused connections counted: %+v", l)
	}
}
