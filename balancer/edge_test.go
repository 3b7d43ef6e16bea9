package main_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"lbscale/internal/state"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv/proctest"
	"lbscale/internal/testenv/statetest"
)

// Tests of the client edge: raw bytes over real TCP connections to a real
// balancer process, in front of real backends.

// exchange is one raw request's outcome.
type exchange struct {
	status int
	header http.Header
	body   string
	closed bool          // the balancer closed the connection after answering
	took   time.Duration // from the read's start to the response's headers
}

// rawDo sends raw on a new connection to the balancer's proxy port and
// reads one response (status 0 if none came within wait), then whether the
// connection was closed.
func rawDo(t *testing.T, proxyURL, raw string, wait time.Duration) exchange {
	t.Helper()
	conn := dialProxy(t, proxyURL)
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	return readExchange(t, conn, bufio.NewReader(conn), wait)
}

func dialProxy(t *testing.T, proxyURL string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(proxyURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func readExchange(t *testing.T, conn net.Conn, br *bufio.Reader, wait time.Duration) exchange {
	t.Helper()
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return exchange{closed: isClosed(err), took: time.Since(start)}
	}
	took := time.Since(start)
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	ex := exchange{status: res.StatusCode, header: res.Header, body: string(b), took: took}
	ex.closed = connClosed(conn, br)
	return ex
}

// connClosed reports whether the peer closed conn (EOF or reset within a
// second) rather than keeping it open.
func connClosed(conn net.Conn, br *bufio.Reader) bool {
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	_, err := br.ReadByte()
	return err != nil && isClosed(err)
}

func isClosed(err error) bool {
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// recorder is a backend that records the requests it sees.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request
}

func newRecorder(t *testing.T) *recorder {
	rec := &recorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rec.mu.Lock()
		rec.seen = append(rec.seen, r)
		rec.mu.Unlock()
		_, _ = io.WriteString(w, "ok "+r.Method+" "+r.URL.Path)
	}))
	t.Cleanup(rec.Close)
	return rec
}

func (rec *recorder) addr() string { return strings.TrimPrefix(rec.URL, "http://") }

func (rec *recorder) requests() []*http.Request {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]*http.Request(nil), rec.seen...)
}

// TestStalledBodiesHoldNoSlot: clients that announce a body and go silent
// (8, then 100 of them; MAX_INFLIGHT=4 on two backends, so 8 would fill
// every slot) do not keep a normal request from an answer within 1 s, and
// each gets 408 and a closed connection after CLIENT_BODY_TIMEOUT.
func TestStalledBodiesHoldNoSlot(t *testing.T) {
	b := balancer(t, "BACKENDS="+web(t, "s1")+","+web(t, "s2"), "MAX_INFLIGHT=4", "CLIENT_BODY_TIMEOUT=1500ms")
	waitReplicas(t, b.admin, 2)
	for _, n := range []int{8, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			conns := make([]net.Conn, n)
			for i := range conns {
				conns[i] = dialProxy(t, b.proxy)
				defer conns[i].Close()
				_, _ = io.WriteString(conns[i], "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\na")
			}
			time.Sleep(200 * time.Millisecond)
			start := time.Now()
			res := get(t, &http.Client{Timeout: 5 * time.Second}, b.proxy+"/")
			if took := time.Since(start); res.StatusCode != http.StatusOK || took > time.Second {
				t.Fatalf("with %d stalled bodies a GET got %d after %v, want 200 within 1s", n, res.StatusCode, took)
			}
			for i, c := range conns[:3] {
				ex := readExchange(t, c, bufio.NewReader(c), 5*time.Second)
				if ex.status != http.StatusRequestTimeout || !ex.closed {
					t.Errorf("stalled client %d: %+v, want 408 and a closed connection", i, ex)
				}
			}
		})
	}
}

// TestStalledLongBodyGets408: a body longer than BODY_BUFFER_BYTES streams
// to the backend on a slot; when it stalls, each read's CLIENT_BODY_TIMEOUT
// ends it with 408, the slot comes back, and the backend is not counted as
// failed.
func TestStalledLongBodyGets408(t *testing.T) {
	b := balancer(t, "BACKENDS="+web(t, "l1"), "MAX_INFLIGHT=1", "BODY_BUFFER_BYTES=16", "CLIENT_BODY_TIMEOUT=500ms")
	waitReplicas(t, b.admin, 1)
	ex := rawDo(t, b.proxy, "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n"+strings.Repeat("x", 40), 5*time.Second)
	if ex.status != http.StatusRequestTimeout || !ex.closed {
		t.Fatalf("stalled long body: %+v, want 408 and closed", ex)
	}
	if res := get(t, &http.Client{Timeout: 5 * time.Second}, b.proxy+"/"); res.StatusCode != http.StatusOK {
		t.Fatalf("after the stalled body a GET got %d: the slot was not returned", res.StatusCode)
	}
	if be := status(t, b.admin).Backends[0]; be.Failures != 0 || !be.Healthy {
		t.Errorf("the client's stall counted against the backend: %+v", be)
	}
}

// TestIdleTunnelClosed: an upgraded connection with no traffic either way
// is closed after TUNNEL_IDLE_TIMEOUT and its slot serves the next request;
// one with traffic stays open past it.
func TestIdleTunnelClosed(t *testing.T) {
	b := balancer(t, "BACKENDS="+web(t, "t1"), "MAX_INFLIGHT=1", "TUNNEL_IDLE_TIMEOUT=500ms", "QUEUE_TIMEOUT=200ms")
	waitReplicas(t, b.admin, 1)
	upgrade := func() (net.Conn, *bufio.Reader) {
		conn := dialProxy(t, b.proxy)
		_, _ = io.WriteString(conn, "GET /upgrade HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
		br := bufio.NewReader(conn)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		res, err := http.ReadResponse(br, nil)
		if err != nil || res.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v %v", res, err)
		}
		return conn, br
	}

	conn, br := upgrade()
	for range 5 { // 1 s of traffic, twice the idle timeout
		time.Sleep(200 * time.Millisecond)
		_, _ = io.WriteString(conn, "ping\n")
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if line, err := br.ReadString('\n'); err != nil || line != "ping\n" {
			t.Fatalf("busy tunnel: %q %v", line, err)
		}
	}
	start := time.Now()
	if !connClosed(conn, br) {
		_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := br.ReadByte(); !isClosed(err) {
			t.Fatalf("idle tunnel still open %v after its last byte", time.Since(start))
		}
	}
	conn.Close()
	if res := get(t, &http.Client{Timeout: 5 * time.Second}, b.proxy+"/"); res.StatusCode != http.StatusOK {
		t.Fatalf("after the idle tunnel closed a GET got %d", res.StatusCode)
	}
}

// TestSmugglingRefused: Content-Length with Transfer-Encoding (any
// spelling), obs-fold and Transfer-Encoding on HTTP/1.0 get 400 and a closed
// connection; the request hidden in the body never reaches the backend.
func TestSmugglingRefused(t *testing.T) {
	rec := newRecorder(t)
	b := balancer(t, "BACKENDS="+rec.addr())
	waitReplicas(t, b.admin, 1)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
	for _, tc := range []struct{ name, raw string }{
		{"CL then TE", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE then CL", "POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE with a leading blank", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding:  chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE with a tab", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"TE with a trailing blank", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding: chunked \r\n\r\n0\r\n\r\n" + smuggled},
		{"TE obs-folded", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"HTTP/1.0 with TE", "POST /a HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
		{"after a good request", "GET /ok HTTP/1.1\r\nHost: h\r\n\r\nPOST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := dialProxy(t, b.proxy)
			defer conn.Close()
			_, _ = io.WriteString(conn, tc.raw)
			br := bufio.NewReader(conn)
			if strings.HasPrefix(tc.raw, "GET /ok") {
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				res, err := http.ReadResponse(br, nil)
				if err != nil || res.StatusCode != http.StatusOK {
					t.Fatalf("good request before the bad one: %v %v", res, err)
				}
				_, _ = io.Copy(io.Discard, res.Body)
			}
			ex := readExchange(t, conn, br, 5*time.Second)
			if ex.status != http.StatusBadRequest || !ex.closed {
				t.Fatalf("%+v, want 400 and a closed connection", ex)
			}
		})
	}
	for _, r := range rec.requests() {
		if r.URL.Path != "/ok" {
			t.Errorf("backend saw %s %s", r.Method, r.URL.Path)
		}
	}
}

// TestIdleKeepAliveClosed: a keep-alive connection with no next request is
// closed after CLIENT_IDLE_TIMEOUT; one that sends no complete header
// within CLIENT_HEADER_TIMEOUT is closed too.
func TestIdleKeepAliveClosed(t *testing.T) {
	b := balancer(t, "BACKENDS="+web(t, "i1"), "CLIENT_IDLE_TIMEOUT=300ms", "CLIENT_HEADER_TIMEOUT=300ms")
	waitReplicas(t, b.admin, 1)
	conn := dialProxy(t, b.proxy)
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET: %v %v", res, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := br.ReadByte(); !isClosed(err) || time.Since(start) > 2*time.Second {
		t.Fatalf("idle keep-alive connection not closed within 2s (%v, %v)", time.Since(start), err)
	}

	slow := dialProxy(t, b.proxy)
	defer slow.Close()
	_, _ = io.WriteString(slow, "GET / HTTP/1.1\r\nHost: h\r\n")
	start = time.Now()
	_ = slow.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadAll(slow); err != nil || time.Since(start) > 2*time.Second {
		t.Fatalf("half-sent headers not cut off within 2s (%v, %v)", time.Since(start), err)
	}
}

// TestHeaderLimits: a 64 KiB URI gets 414, a 1 MiB header and 10,000
// headers get 431, each with the connection closed.
func TestHeaderLimits(t *testing.T) {
	rec := newRecorder(t)
	b := balancer(t, "BACKENDS="+rec.addr())
	waitReplicas(t, b.admin, 1)
	many := strings.Builder{}
	for i := range 10000 {
		fmt.Fprintf(&many, "X-H%d: v\r\n", i)
	}
	for _, tc := range []struct {
		name, raw string
		want      int
	}{
		{"64 KiB URI", "GET /" + strings.Repeat("a", 64<<10) + " HTTP/1.1\r\nHost: h\r\n\r\n", http.StatusRequestURITooLong},
		{"20 KiB header", "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("a", 20<<10) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"1 MiB header", "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("a", 1<<20) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"10,000 headers", "GET / HTTP/1.1\r\nHost: h\r\n" + many.String() + "\r\n", http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex := rawDo(t, b.proxy, tc.raw, 5*time.Second)
			if ex.status != tc.want || !ex.closed {
				t.Fatalf("status %d closed %v, want %d and closed", ex.status, ex.closed, tc.want)
			}
		})
	}
	if n := len(rec.requests()); n != 0 {
		t.Errorf("backend saw %d of the oversized requests", n)
	}
}

// TestHonestErrors: the client's malformed body is its 400, not a backend
// failure; a backend that hangs up gets 502, a dead one 502, a slow one 504;
// no body names a backend or quotes a Go error; X-Lbscale-Backend only with
// DEBUG_BACKEND_HEADER.
func TestHonestErrors(t *testing.T) {
	rec := newRecorder(t)
	b := balancer(t, "BACKENDS="+rec.addr())
	waitReplicas(t, b.admin, 1)
	ex := rawDo(t, b.proxy, "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 5*time.Second)
	if ex.status != http.StatusBadRequest || !ex.closed {
		t.Fatalf("malformed chunked body: %+v, want 400 and closed", ex)
	}
	if be := status(t, b.admin).Backends[0]; be.Failures != 0 || !be.Healthy {
		t.Errorf("a client's malformed body counted against the backend: %+v", be)
	}
	if ex := rawDo(t, b.proxy, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 5*time.Second); ex.status != http.StatusOK || ex.header.Get("X-Lbscale-Backend") != "" {
		t.Errorf("X-Lbscale-Backend is opt-in: %+v", ex)
	}

	hangup, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hangup.Close()
	go func() {
		for {
			c, err := hangup.Accept()
			if err != nil {
				return
			}
			_, _ = bufio.NewReader(c).ReadString('\n')
			c.Close()
		}
	}()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	}))
	defer slow.Close()
	dead := proctest.Addr(proctest.FreePort(t))
	for _, tc := range []struct {
		name, backend string
		want          int
	}{
		{"hang-up", hangup.Addr().String(), http.StatusBadGateway},
		{"dead", dead, http.StatusBadGateway},
		{"slow", strings.TrimPrefix(slow.URL, "http://"), http.StatusGatewayTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := balancer(t, "BACKENDS="+tc.backend, "HEALTH_INTERVAL=1h", "UPSTREAM_TIMEOUT=300ms", "DEBUG_BACKEND_HEADER=true")
			ex := rawDo(t, b.proxy, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 5*time.Second)
			if ex.status != tc.want {
				t.Fatalf("%+v, want %d", ex, tc.want)
			}
			for _, leak := range []string{"127.0.0.1", tc.backend, "dial", "EOF", "tcp", "backend"} {
				if strings.Contains(ex.body, leak) {
					t.Errorf("body %q gives away %q", ex.body, leak)
				}
			}
			if !strings.Contains(b.proc.Output(), ex.header.Get("X-Request-Id")) {
				t.Errorf("the log does not carry request id %q", ex.header.Get("X-Request-Id"))
			}
		})
	}
	t.Run("debug header", func(t *testing.T) {
		b := balancer(t, "BACKENDS="+rec.addr(), "DEBUG_BACKEND_HEADER=true")
		waitReplicas(t, b.admin, 1)
		if ex := rawDo(t, b.proxy, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 5*time.Second); ex.header.Get("X-Lbscale-Backend") != rec.addr() {
			t.Errorf("DEBUG_BACKEND_HEADER=true: X-Lbscale-Backend %q", ex.header.Get("X-Lbscale-Backend"))
		}
	})
}

// TestNothingComingAnswersAtOnce: with the only static backend down, a
// request gets 503 + Retry-After at once instead of after QUEUE_TIMEOUT.
// With a scaler-owned registry scaled to zero it queues instead, and is
// served by the container the registry gains while it waits.
func TestNothingComingAnswersAtOnce(t *testing.T) {
	dead := proctest.Addr(proctest.FreePort(t))
	b := balancer(t, "BACKENDS="+dead, "HEALTH_INTERVAL=50ms", "QUEUE_TIMEOUT=10s")
	deadline := time.Now().Add(5 * time.Second)
	for status(t, b.admin).Backends[0].Healthy && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	ex := rawDo(t, b.proxy, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 5*time.Second)
	if ex.status != http.StatusServiceUnavailable || ex.header.Get("Retry-After") == "" || ex.took > 500*time.Millisecond {
		t.Fatalf("all down, nothing coming: %+v, want 503 + Retry-After at once", ex)
	}

	srv := statetest.StartRedis(t)
	store, err := redisstore.New(srv.URL(), "zero")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	w := web(t, "z1")
	if err := store.PutBackend(ctx, state.Backend{ID: "web-1", Addr: w, State: state.Ready}); err != nil {
		t.Fatal(err)
	}
	if err := store.RemoveBackend(ctx, "web-1"); err != nil {
		t.Fatal(err)
	}
	z := balancer(t, "REDIS_URL="+srv.URL(), "POOL=zero", "QUEUE_TIMEOUT=10s", "SLOW_START=0")
	time.AfterFunc(500*time.Millisecond, func() {
		_ = store.PutBackend(ctx, state.Backend{ID: "web-1", Addr: w, State: state.Ready, Since: time.Now()})
	})
	ex = rawDo(t, z.proxy, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 8*time.Second)
	if ex.status != http.StatusOK || ex.took < 300*time.Millisecond {
		t.Fatalf("scaled to zero: %+v, want 200 once the container is registered (~500ms)", ex)
	}
}

// TestExtensionMethodsForwarded: any method token reaches the backend;
// CONNECT gets 405 with Allow.
func TestExtensionMethodsForwarded(t *testing.T) {
	rec := newRecorder(t)
	b := balancer(t, "BACKENDS="+rec.addr())
	waitReplicas(t, b.admin, 1)
	for _, m := range []string{"PROPFIND", "PURGE", "MKCOL", "X-CUSTOM_1"} {
		ex := rawDo(t, b.proxy, m+" /dav HTTP/1.1\r\nHost: h\r\n\r\n", 5*time.Second)
		if ex.status != http.StatusOK || ex.body != "ok "+m+" /dav" {
			t.Errorf("%s: %+v", m, ex)
		}
	}
	ex := rawDo(t, b.proxy, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 5*time.Second)
	if ex.status != http.StatusMethodNotAllowed || ex.header.Get("Allow") == "" {
		t.Errorf("CONNECT: %+v, want 405 with Allow", ex)
	}
}

// TestForwardedHeaders: Connection cannot strip the request id; an HTTP/1.0
// request without Host reaches the backend with the balancer's address as
// Host, never the backend's; no Accept-Encoding is added.
func TestForwardedHeaders(t *testing.T) {
	rec := newRecorder(t)
	b := balancer(t, "BACKENDS="+rec.addr())
	waitReplicas(t, b.admin, 1)
	rawDo(t, b.proxy, "GET /id HTTP/1.1\r\nHost: h\r\nConnection: X-Request-Id\r\nX-Request-Id: abc-123\r\n\r\n", 5*time.Second)
	rawDo(t, b.proxy, "GET /old HTTP/1.0\r\n\r\n", 5*time.Second)
	got := map[string]*http.Request{}
	for _, r := range rec.requests() {
		got[r.URL.Path] = r
	}
	if r := got["/id"]; r == nil || r.Header.Get("X-Request-Id") != "abc-123" || r.Header.Get("Accept-Encoding") != "" {
		t.Errorf("/id: backend saw %v", r)
	}
	if r := got["/old"]; r == nil || r.Host != strings.TrimPrefix(b.proxy, "http://") {
		t.Errorf("/old (HTTP/1.0, no Host): backend saw Host %q, want the balancer's %q", r.Host, strings.TrimPrefix(b.proxy, "http://"))
	}
}
