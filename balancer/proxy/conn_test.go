package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"lbscale/balancer/flow"
	"lbscale/balancer/pool"
	"lbscale/balancer/proxy"
	"lbscale/internal/testenv"
)

// connFront is a balancer handler over raw backends for the long-lived
// connection tests: MAX_INFLIGHT 1 per backend unless said otherwise, the
// policy always the first available backend (so a test sees where the
// policy would have sent a request), and the flow counter and metrics
// kept for the test to read.
type connFront struct {
	backends []*pool.Backend
	queue    *proxy.Queue
	flow     *flow.Counter
	metrics  *proxy.Metrics
	reg      *prometheus.Registry
	srv      *httptest.Server
}

// conns reads lbscale_balancer_connections_open as a scrape would.
func (f *connFront) conns(t *testing.T) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "lbscale_balancer_connections_open" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no lbscale_balancer_connections_open series")
	return 0
}

type connOpts struct {
	limit        int64 // MAX_INFLIGHT (0: 1)
	maxConns     int64
	streamAfter  time.Duration
	queueTimeout time.Duration // 0: 5 s
}

func newConnFront(t *testing.T, o connOpts, addrs ...string) *connFront {
	t.Helper()
	if o.limit == 0 {
		o.limit = 1
	}
	if o.queueTimeout == 0 {
		o.queueTimeout = 5 * time.Second
	}
	f := &connFront{flow: &flow.Counter{}, reg: prometheus.NewRegistry(), queue: proxy.NewQueue(8, o.queueTimeout, nil)}
	f.metrics = proxy.NewMetrics(f.reg)
	for i, a := range addrs {
		f.backends = append(f.backends, pool.New(fmt.Sprintf("b%d", i), a, 1, o.limit))
	}
	f.srv = httptest.NewServer(proxy.New(proxy.Options{
		Sets: fixedSet{&pool.Set{Backends: f.backends, Version: 1}}, Policy: firstAvailable{}, Queue: f.queue,
		UpstreamTimeout: 5 * time.Second, Flow: f.flow, Metrics: f.metrics,
		MaxConnections: o.maxConns, StreamAfter: o.streamAfter,
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *connFront) addr() string { return strings.TrimPrefix(f.srv.URL, "http://") }

// settled waits until no backend holds a slot or a connection, and the
// connection gauge is back to 0: whatever the clients did, nothing leaks.
func (f *connFront) settled(t *testing.T) {
	t.Helper()
	testenv.Eventually(t, 3*time.Second, "every slot and connection given back", func() bool {
		for _, b := range f.backends {
			if b.Local() != 0 || b.Conns() != 0 {
				return false
			}
		}
		return f.conns(t) == 0
	})
}

// getFast sends a plain GET and fails unless it is answered 200 within a
// second: a request slot held by a connection would make it wait in the
// queue for seconds.
func (f *connFront) getFast(t *testing.T) {
	t.Helper()
	start := time.Now()
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get(f.srv.URL + "/plain")
	if err != nil {
		t.Fatalf("plain GET beside the connection: %v", err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if d := time.Since(start); res.StatusCode != http.StatusOK || d > time.Second {
		t.Fatalf("plain GET beside the connection: %d after %v, want 200 at once", res.StatusCode, d)
	}
}

// upgradeBackend answers an upgrade request with 101 (naming itself in
// X-Backend, after delay) and then echoes every byte; a plain request gets
// 200 "ok".
func upgradeBackend(t *testing.T, name string, delay time.Duration) *rawServer {
	return newRawServer(t, func(_ int, c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			if up := req.Header.Get("Upgrade"); up != "" {
				time.Sleep(delay)
				_, _ = fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\nX-Backend: %s\r\n\r\n", up, name)
				_, _ = io.Copy(c, br) // echo, the bytes already read first
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
}

// upgrade sends an upgrade request on a new connection to addr, then
// extra bytes right behind it, and reads the answer.
func upgrade(t *testing.T, addr, extra string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"+extra)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	return c, br, res
}

// echo sends a line through a tunnel and checks it comes back.
func echo(t *testing.T, c net.Conn, br *bufio.Reader, line string) {
	t.Helper()
	_, _ = io.WriteString(c, line+"\n")
	got, err := br.ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("echo of %q: %q, %v", line, got, err)
	}
}

// An upgraded connection gives its request slot back when the backend
// answers 101: with MAX_INFLIGHT 1, a plain GET is served at once while
// the tunnel stays open and keeps working, and the tunnel counts as the
// backend's connection instead.
func TestUpgradeHoldsNoSlot(t *testing.T) {
	f := newConnFront(t, connOpts{}, upgradeBackend(t, "a", 0).addr())
	b := f.backends[0]
	c, br, res := upgrade(t, f.addr(), "")
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %d, want 101", res.StatusCode)
	}
	echo(t, c, br, "one")
	if b.Local() != 0 || b.Conns() != 1 || f.conns(t) != 1 {
		t.Fatalf("open tunnel: %d slots, %d conns, gauge %v; want 0, 1, 1", b.Local(), b.Conns(), f.conns(t))
	}
	f.getFast(t)
	echo(t, c, br, "two") // still open after the GET used the slot
	c.Close()
	f.settled(t)
}

// A server-sent-event stream gives its slot back as soon as the backend
// answers text/event-stream, and keeps streaming.
func TestEventStreamHoldsNoSlot(t *testing.T) {
	next := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/plain" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		for i := 1; ; i++ {
			_, _ = fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}))
	defer backend.Close()
	f := newConnFront(t, connOpts{}, strings.TrimPrefix(backend.URL, "http://"))
	b := f.backends[0]
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(res.Body)
	event := func(want string) {
		t.Helper()
		for sc.Scan() {
			if sc.Text() != "" {
				if sc.Text() != want {
					t.Fatalf("event %q, want %q", sc.Text(), want)
				}
				return
			}
		}
		t.Fatalf("stream ended before %q: %v", want, sc.Err())
	}
	event("data: 1")
	if b.Local() != 0 || b.Conns() != 1 {
		t.Fatalf("open stream: %d slots, %d conns; want 0, 1", b.Local(), b.Conns())
	}
	f.getFast(t)
	next <- struct{}{}
	event("data: 2")
	res.Body.Close() // the client leaves mid-stream
	f.settled(t)
}

// A body still being copied STREAM_AFTER after its headers converts: one
// that trickles (checked at each read, whatever its framing) and one of
// unknown length that sends its headers and then nothing for a while, as
// a long poll does (the timer's case: no read returns to notice).
func TestSlowBodyConvertsAfterStreamAfter(t *testing.T) {
	for _, tc := range []struct {
		name   string
		length bool // Content-Length rather than chunked
		stall  bool // nothing after the headers until released
	}{
		{"trickle chunked", false, false},
		{"trickle with length", true, false},
		{"stall chunked", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/plain" {
					_, _ = io.WriteString(w, "ok")
					return
				}
				if tc.length {
					w.Header().Set("Content-Length", "100")
				}
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				for i := 0; i < 100; i++ {
					if !tc.stall || i > 0 {
						select {
						case <-release:
						case <-time.After(10 * time.Millisecond):
						}
					} else {
						<-release
					}
					_, _ = w.Write([]byte{'x'})
					w.(http.Flusher).Flush()
				}
			}))
			defer backend.Close()
			f := newConnFront(t, connOpts{streamAfter: 50 * time.Millisecond}, strings.TrimPrefix(backend.URL, "http://"))
			b := f.backends[0]
			// The client reads in the background: a body of known length
			// reaches it only as the copy's buffer fills (no flush), so
			// even the headers may wait for the body's end.
			got := make(chan int, 1)
			go func() {
				res, err := http.Get(f.srv.URL + "/slow")
				if err != nil {
					got <- -1
					return
				}
				defer res.Body.Close()
				n, _ := io.Copy(io.Discard, res.Body)
				got <- int(n)
			}()
			testenv.Eventually(t, 2*time.Second, "the slow body to become a connection", func() bool {
				return b.Conns() == 1 && b.Local() == 0
			})
			f.getFast(t)
			close(release)
			if n := <-got; n != 100 {
				t.Fatalf("client read %d bytes, want 100", n)
			}
			f.settled(t)
		})
	}
}

// A short answer stays a request: STREAM_AFTER converts only bodies still
// open past it, and the answer's service time goes to the backend.
func TestQuickAnswerStaysARequest(t *testing.T) {
	f := newConnFront(t, connOpts{streamAfter: time.Hour}, upgradeBackend(t, "a", 0).addr())
	f.getFast(t)
	b := f.backends[0]
	if b.Conns() != 0 || b.Served() != 1 || b.Busy() <= 0 {
		t.Fatalf("after a GET: %d conns, %d served, busy %v; want 0, 1, > 0", b.Conns(), b.Served(), b.Busy())
	}
	f.settled(t)
}

// The scaler's service time (the flow counter) and the backend's busy time
// count a tunnel's handshake, not its life: a tunnel open for 400 ms adds
// one served request of a few milliseconds.
func TestTunnelLifeIsNotServiceTime(t *testing.T) {
	f := newConnFront(t, connOpts{}, upgradeBackend(t, "a", 0).addr())
	win := flow.NewWindow(f.flow, time.Hour) // the base reading stays the first
	t0 := time.Now()
	win.Rates(t0)
	c, br, res := upgrade(t, f.addr(), "")
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %d", res.StatusCode)
	}
	for range 4 {
		time.Sleep(100 * time.Millisecond)
		echo(t, c, br, "ping")
	}
	c.Close()
	f.settled(t)
	t1 := time.Now()
	fl := win.Rates(t1)
	if done := math.Round(fl.Done * t1.Sub(t0).Seconds()); done != 1 {
		t.Fatalf("%v requests done, want the tunnel's one", done)
	}
	if fl.Service <= 0 || fl.Service > 200*time.Millisecond {
		t.Fatalf("service time %v for a tunnel open 400ms: want its handshake only", fl.Service)
	}
	if busy := f.backends[0].Busy(); busy <= 0 || busy > 200*time.Millisecond {
		t.Fatalf("backend busy %v: want the handshake only", busy)
	}
}

// Connection admission: with MAX_CONNECTIONS 1 the second upgrade goes to
// the other backend, whatever the policy says (it always names the first);
// with both full a third waits in the queue, while plain requests behind
// it are served, and gets 503 + Retry-After at QUEUE_TIMEOUT; one that
// waits when a tunnel closes gets its room.
func TestConnectionAdmission(t *testing.T) {
	f := newConnFront(t, connOpts{limit: 4, maxConns: 1, queueTimeout: 400 * time.Millisecond},
		upgradeBackend(t, "a", 0).addr(), upgradeBackend(t, "b", 0).addr())
	c1, _, r1 := upgrade(t, f.addr(), "")
	_, _, r2 := upgrade(t, f.addr(), "")
	if r1.StatusCode != http.StatusSwitchingProtocols || r2.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrades answered %d, %d; want 101, 101", r1.StatusCode, r2.StatusCode)
	}
	first, second := r1.Header.Get("X-Backend"), r2.Header.Get("X-Backend")
	if first == "" || first == second {
		t.Fatalf("upgrades went to %q and %q: want one on each backend", first, second)
	}

	// Both full: the third waits; a plain GET meanwhile is not held up.
	third := make(chan *http.Response, 1)
	start := time.Now()
	go func() {
		c, err := net.Dial("tcp", f.addr())
		if err != nil {
			third <- nil
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		res, _ := http.ReadResponse(bufio.NewReader(c), nil)
		third <- res
	}()
	testenv.Eventually(t, 2*time.Second, "the third upgrade to queue", func() bool { return f.queue.Depth() == 1 })
	f.getFast(t)
	res := <-third
	if res == nil || res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Fatalf("third upgrade with both backends full: %+v, want 503 with Retry-After", res)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("503 after %v, before QUEUE_TIMEOUT", d)
	}

	// A fourth waits, and gets the room the first tunnel leaves.
	fourth := make(chan string, 1)
	go func() {
		c, err := net.Dial("tcp", f.addr())
		if err != nil {
			fourth <- err.Error()
			return
		}
		defer c.Close()
		_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			fourth <- err.Error()
			return
		}
		fourth <- fmt.Sprint(res.StatusCode, " ", res.Header.Get("X-Backend"))
	}()
	testenv.Eventually(t, 2*time.Second, "the fourth upgrade to queue", func() bool { return f.queue.Depth() == 1 })
	c1.Close()
	if got, want := <-fourth, fmt.Sprint(http.StatusSwitchingProtocols, " ", first); got != want {
		t.Fatalf("fourth upgrade after the first tunnel closed: %q, want %q", got, want)
	}
}

// Clients that misbehave around a tunnel leave nothing held: bytes sent
// right behind the upgrade request, a hang-up mid-tunnel, a hang-up before
// the backend's 101, and a backend that closes the tunnel.
func TestMisbehavingTunnelsLeaveNoCounts(t *testing.T) {
	slow := upgradeBackend(t, "slow", 200*time.Millisecond)
	f := newConnFront(t, connOpts{limit: 2}, upgradeBackend(t, "a", 0).addr())
	fs := newConnFront(t, connOpts{limit: 2}, slow.addr())

	t.Run("stray bytes after the request", func(t *testing.T) {
		c, br, res := upgrade(t, f.addr(), "early bytes\n")
		if res.StatusCode == http.StatusSwitchingProtocols {
			// The early bytes are the tunnel's, or lost; either way the
			// tunnel still works.
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			_, _ = br.ReadString('\n')
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			echo(t, c, br, "after")
		}
		c.Close()
		f.settled(t)
	})
	t.Run("hang-up mid-tunnel", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.Dial("tcp", f.addr())
				if err != nil {
					return
				}
				defer c.Close()
				_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhalf a mess")
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, _ = http.ReadResponse(bufio.NewReader(c), nil)
			}()
		}
		wg.Wait()
		f.settled(t)
	})
	t.Run("hang-up before the 101", func(t *testing.T) {
		c, err := net.Dial("tcp", fs.addr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		time.Sleep(50 * time.Millisecond)
		c.Close()
		time.Sleep(300 * time.Millisecond) // the 101 arrives after the client left
		fs.settled(t)
	})
	t.Run("backend closes the tunnel", func(t *testing.T) {
		c, br, res := upgrade(t, f.addr(), "")
		if res.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade answered %d", res.StatusCode)
		}
		echo(t, c, br, "x")
		_ = c.(*net.TCPConn).CloseWrite() // the echo backend ends its side in turn
		_, _ = io.Copy(io.Discard, br)
		c.Close()
		f.settled(t)
	})
}
