package main_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"lbscale/internal/testenv"
	"lbscale/internal/testenv/proctest"
)

// The edge comparison (scripts/exp-edge, docs/security.md): lbscale,
// HAProxy and nginx in front of the same kind of backends, each sent the
// same raw bytes, each outcome written as one cell of a table. It measures;
// it asserts nothing about the others. Off unless EDGE_COMPARE=1; the
// table goes to the test log and, with EDGE_COMPARE_OUT=<dir>, to
// <dir>/edge.md.

// cmpTimeout is the one timeout every front gets for client headers, idle
// keep-alive, client bodies, idle tunnels and the backend's answer, so
// that the timing rows compare behaviour rather than defaults.
const cmpTimeout = 5 * time.Second

// cmpLimit is the per-backend concurrency limit: lbscale MAX_INFLIGHT,
// HAProxy maxconn, nginx max_conns.
const cmpLimit = 4

// cmpBackend records what reaches it; an Upgrade request gets 101 and an
// echo of whatever follows.
type cmpBackend struct {
	*httptest.Server
	mu   sync.Mutex
	seen []*http.Request
}

func newCmpBackend(t *testing.T) *cmpBackend {
	b := &cmpBackend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		b.mu.Lock()
		b.seen = append(b.seen, r)
		b.mu.Unlock()
		if r.Header.Get("Upgrade") != "" {
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer c.Close()
			_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+r.Header.Get("Upgrade")+"\r\n\r\n")
			_, _ = io.Copy(c, brw)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok "+r.Method+" "+r.URL.Path)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *cmpBackend) addr() string { return strings.TrimPrefix(b.URL, "http://") }

// find returns the requests for path seen by any of bs.
func find(bs []*cmpBackend, path string) []*http.Request {
	var out []*http.Request
	for _, b := range bs {
		b.mu.Lock()
		for _, r := range b.seen {
			if r.URL.Path == path {
				out = append(out, r)
			}
		}
		b.mu.Unlock()
	}
	return out
}

// front is one balancer under comparison, started three times: in front of
// two recording backends, of one that hangs up without answering, and of
// one that is down.
type front struct {
	name               string
	addr, hang, down   string
	backends           []*cmpBackend
	hangAddr, downAddr string
}

// startFn starts a front of one kind before backends and returns the
// address it listens on; checks turns active health checks on (every
// 200 ms) where the front has them.
type startFn func(t *testing.T, backends []string, checks bool) string

func startLbscale(t *testing.T, backends []string, checks bool) string {
	d := cmpTimeout.String()
	interval := "HEALTH_INTERVAL=200ms"
	if !checks {
		interval = "HEALTH_INTERVAL=1h"
	}
	b := balancer(t, "BACKENDS="+strings.Join(backends, ","), fmt.Sprintf("MAX_INFLIGHT=%d", cmpLimit), interval,
		"CLIENT_HEADER_TIMEOUT="+d, "CLIENT_IDLE_TIMEOUT="+d, "CLIENT_BODY_TIMEOUT="+d, "TUNNEL_IDLE_TIMEOUT="+d,
		"UPSTREAM_TIMEOUT="+d, "QUEUE_TIMEOUT="+d, "SLOW_START=0")
	return strings.TrimPrefix(b.proxy, "http://")
}

// haproxyConfig is a minimal HTTP proxy: one thread, the common timeouts,
// maxconn per server and TCP health checks every 200 ms (as lbscale's
// HEALTH_INTERVAL in these tests).
func haproxyConfig(listen string, backends []string, checks bool) string {
	s := cmpTimeout.String()
	var b strings.Builder
	fmt.Fprintf(&b, "global\n  nbthread 1\n  maxconn 4000\n")
	fmt.Fprintf(&b, "defaults\n  mode http\n")
	for _, k := range []string{"connect", "client", "server", "http-request", "http-keep-alive", "tunnel", "queue"} {
		fmt.Fprintf(&b, "  timeout %s %s\n", k, s)
	}
	fmt.Fprintf(&b, "frontend fe\n  bind %s\n  default_backend be\n", listen)
	fmt.Fprintf(&b, "backend be\n  balance leastconn\n")
	for i, a := range backends {
		fmt.Fprintf(&b, "  server s%d %s maxconn %d", i, a, cmpLimit)
		if checks {
			b.WriteString(" check inter 200ms")
		}
		b.WriteString("\n")
	}
	return b.String()
}

func startHAProxy(t *testing.T, backends []string, checks bool) string {
	dir := t.TempDir()
	addr := proctest.Addr(proctest.FreePort(t))
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(haproxyConfig(addr, backends, checks)), 0o644); err != nil {
		t.Fatal(err)
	}
	bin, _ := exec.LookPath("haproxy")
	p := proctest.StartArgs(t, "haproxy", bin, []string{"-db", "-f", cfg})
	waitTCP(t, p, addr)
	return addr
}

// nginxConfig is a minimal reverse proxy: one process, the common
// timeouts, max_conns per server, the client's Host passed on, and the
// documented WebSocket lines (without them nginx tunnels nothing).
func nginxConfig(dir, listen string, backends []string) string {
	s := fmt.Sprintf("%ds", int(cmpTimeout.Seconds()))
	var b strings.Builder
	fmt.Fprintf(&b, "daemon off;\nmaster_process off;\nworker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log;\n", dir, dir)
	fmt.Fprintf(&b, "events { worker_connections 4096; }\nhttp {\n  access_log off;\n")
	for _, k := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&b, "  %s_temp_path %s/%s;\n", k, dir, k)
	}
	for _, k := range []string{"keepalive_timeout", "client_header_timeout", "client_body_timeout", "send_timeout",
		"proxy_connect_timeout", "proxy_read_timeout", "proxy_send_timeout"} {
		fmt.Fprintf(&b, "  %s %s;\n", k, s)
	}
	fmt.Fprintf(&b, "  map $http_upgrade $connection_upgrade { default upgrade; '' close; }\n")
	fmt.Fprintf(&b, "  upstream be {\n    least_conn;\n")
	for _, a := range backends {
		fmt.Fprintf(&b, "    server %s max_conns=%d;\n", a, cmpLimit)
	}
	fmt.Fprintf(&b, "  }\n  server {\n    listen %s;\n    location / {\n      proxy_pass http://be;\n", listen)
	fmt.Fprintf(&b, "      proxy_http_version 1.1;\n      proxy_set_header Host $host;\n")
	fmt.Fprintf(&b, "      proxy_set_header Upgrade $http_upgrade;\n      proxy_set_header Connection $connection_upgrade;\n    }\n  }\n}\n")
	return b.String()
}

// startNginx: open-source nginx has no active health checks; checks is
// ignored (a failed connection marks a server down for fail_timeout, 10 s).
func startNginx(t *testing.T, backends []string, _ bool) string {
	dir := t.TempDir()
	addr := proctest.Addr(proctest.FreePort(t))
	cfg := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(cfg, []byte(nginxConfig(dir, addr, backends)), 0o644); err != nil {
		t.Fatal(err)
	}
	bin, _ := exec.LookPath("nginx")
	p := proctest.StartArgs(t, "nginx", bin, []string{"-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", cfg})
	waitTCP(t, p, addr)
	return addr
}

func waitTCP(t *testing.T, p *proctest.Proc, addr string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "a listener on "+addr, func() bool {
		if p.Exited() {
			t.Fatalf("exited before listening on %s:\n%s", addr, p.Output())
		}
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// send writes raw on a new connection (in the background: a front may stop
// reading and close while a large request is still being written) and
// reads one response within wait.
func send(t *testing.T, addr, raw string, wait time.Duration) exchange {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() { _, _ = io.WriteString(conn, raw) }()
	return readExchange(t, conn, bufio.NewReader(conn), wait)
}

// closeAfter waits up to limit for the peer to close conn and says when.
func closeAfter(conn net.Conn, br *bufio.Reader, since time.Time, limit time.Duration) string {
	_ = conn.SetReadDeadline(since.Add(limit))
	for {
		if _, err := br.ReadByte(); err != nil {
			if !isClosed(err) {
				return fmt.Sprintf("open after %v", limit)
			}
			return "closed at " + secs(time.Since(since))
		}
	}
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return secs(d)
}

// verdict is "<status>, closed|kept", or what happened instead of a response.
func verdict(ex exchange, wait time.Duration) string {
	switch {
	case ex.status != 0 && ex.closed:
		return fmt.Sprintf("%d, closed", ex.status)
	case ex.status != 0:
		return fmt.Sprintf("%d, kept", ex.status)
	case ex.closed:
		return "closed, no response"
	}
	return fmt.Sprintf("no response in %v", wait)
}

// leaks lists what an error response gives away: a backend address, a Go
// or socket error, a server version.
var versionRe = regexp.MustCompile(`[A-Za-z]+/\d+\.\d+(\.\d+)?`)

func leaks(ex exchange, backend string) string {
	var found []string
	_, port, _ := net.SplitHostPort(backend)
	for _, s := range []string{backend, ":" + port, "dial", "EOF", "tcp", "refused"} {
		if strings.Contains(ex.body, s) {
			found = append(found, fmt.Sprintf("%q in body", s))
		}
	}
	if v := versionRe.FindString(ex.body); v != "" {
		found = append(found, v+" in body")
	}
	if v := ex.header.Get("Server"); v != "" {
		found = append(found, "Server: "+v)
	}
	if len(found) == 0 {
		return "none"
	}
	return strings.Join(found, ", ")
}

type row struct {
	name string
	run  func(t *testing.T, f *front) string
}

const smuggled = "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"

// smuggle sends raw (whose body hides GET /smuggled) and reports the
// answer and whether the hidden request reached a backend in any form.
func smuggle(raw string) func(t *testing.T, f *front) string {
	return func(t *testing.T, f *front) string {
		before := len(find(f.backends, "/smuggled"))
		ex := send(t, f.addr, raw, 3*time.Second)
		time.Sleep(300 * time.Millisecond)
		hidden := "hidden GET not forwarded"
		if len(find(f.backends, "/smuggled")) > before {
			hidden = "**hidden GET forwarded**"
		}
		return verdict(ex, 3*time.Second) + "; " + hidden
	}
}

func stalled(n int) func(t *testing.T, f *front) string {
	return func(t *testing.T, f *front) string {
		conns := make([]net.Conn, n)
		began := time.Now()
		for i := range conns {
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				return fmt.Sprintf("connection %d refused", i)
			}
			defer c.Close()
			conns[i] = c
			_, _ = io.WriteString(c, "POST /stall HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\na")
		}
		time.Sleep(200 * time.Millisecond)
		ex := send(t, f.addr, "GET /normal HTTP/1.1\r\nHost: h\r\n\r\n", cmpTimeout+2*time.Second)
		normal := verdict(ex, cmpTimeout+2*time.Second)
		if ex.status != 0 {
			normal = fmt.Sprintf("GET %d in %s", ex.status, ms(ex.took))
		}
		c := conns[0]
		st := readExchange(t, c, bufio.NewReader(c), 3*cmpTimeout)
		stall := verdict(st, 3*cmpTimeout)
		if st.status != 0 || st.closed {
			stall += " at " + secs(time.Since(began)) // since its headers; a closed connection ends the close check at once
		}
		return normal + "; stalled client: " + stall
	}
}

func edgeRows() []row {
	many := strings.Builder{}
	for i := range 10000 {
		fmt.Fprintf(&many, "X-H%d: v\r\n", i)
	}
	limit := 3 * cmpTimeout
	return []row{
		{"8 stalled bodies (limit 4 × 2 backends): normal GET; stalled client", stalled(8)},
		{"100 stalled bodies: normal GET; stalled client", stalled(100)},
		{"idle upgraded tunnel", func(t *testing.T, f *front) string {
			conn, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, _ = io.WriteString(conn, "GET /upgrade HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
			br := bufio.NewReader(conn)
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				return "no 101: " + err.Error()
			}
			if res.StatusCode != http.StatusSwitchingProtocols {
				return fmt.Sprintf("%d, no tunnel", res.StatusCode)
			}
			return "101; " + closeAfter(conn, br, time.Now(), limit)
		}},
		{"CL + TE (CL first)", smuggle("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled)},
		{"TE + CL (TE first)", smuggle("POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + smuggled)},
		{"CL + `TE:\\tchunked`", smuggle("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n" + smuggled)},
		{"CL + `TE: chunked ` (trailing blank)", smuggle("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding: chunked \r\n\r\n0\r\n\r\n" + smuggled)},
		{"CL + TE obs-folded", smuggle("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + smuggled)},
		{"HTTP/1.0 + TE: chunked", smuggle("POST /a HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled)},
		{"idle keep-alive connection", func(t *testing.T, f *front) string {
			conn, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
			br := bufio.NewReader(conn)
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				return err.Error()
			}
			_, _ = io.Copy(io.Discard, res.Body)
			return closeAfter(conn, br, time.Now(), limit)
		}},
		{"half-sent headers", func(t *testing.T, f *front) string {
			conn, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			start := time.Now()
			_, _ = io.WriteString(conn, "GET / HTTP/1.1\r\nHost: h\r\n")
			br := bufio.NewReader(conn)
			_ = conn.SetReadDeadline(start.Add(limit))
			if res, err := http.ReadResponse(br, nil); err == nil {
				return fmt.Sprintf("%d at %s, ", res.StatusCode, secs(time.Since(start))) + closeAfter(conn, br, start, limit)
			}
			if time.Since(start) >= limit {
				return fmt.Sprintf("open after %v", limit)
			}
			return "closed at " + secs(time.Since(start))
		}},
		{"64 KiB URI", func(t *testing.T, f *front) string {
			return verdict(send(t, f.addr, "GET /"+strings.Repeat("a", 64<<10)+" HTTP/1.1\r\nHost: h\r\n\r\n", 5*time.Second), 5*time.Second)
		}},
		{"1 MiB header", func(t *testing.T, f *front) string {
			return verdict(send(t, f.addr, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: "+strings.Repeat("a", 1<<20)+"\r\n\r\n", 5*time.Second), 5*time.Second)
		}},
		{"10,000 headers", func(t *testing.T, f *front) string {
			return verdict(send(t, f.addr, "GET / HTTP/1.1\r\nHost: h\r\n"+many.String()+"\r\n", 5*time.Second), 5*time.Second)
		}},
		{"malformed chunked body", func(t *testing.T, f *front) string {
			return verdict(send(t, f.addr, "POST /chunk HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 5*time.Second), 5*time.Second)
		}},
		{"backend closes without answering", func(t *testing.T, f *front) string {
			ex := send(t, f.hang, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 2*cmpTimeout)
			return verdict(ex, 2*cmpTimeout) + " in " + ms(ex.took)
		}},
		{"leaks in that error response", func(t *testing.T, f *front) string {
			return leaks(send(t, f.hang, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 2*cmpTimeout), f.hangAddr)
		}},
		{"every backend down (health checks had 1.5 s)", func(t *testing.T, f *front) string {
			ex := send(t, f.down, "GET / HTTP/1.1\r\nHost: h\r\n\r\n", 2*cmpTimeout)
			s := verdict(ex, 2*cmpTimeout) + " in " + ms(ex.took)
			if ex.header.Get("Retry-After") != "" {
				s += ", Retry-After"
			}
			if l := leaks(ex, f.downAddr); l != "none" {
				s += "; leaks " + l
			}
			return s
		}},
		{"PROPFIND", func(t *testing.T, f *front) string {
			ex := send(t, f.addr, "PROPFIND /dav HTTP/1.1\r\nHost: h\r\nDepth: 0\r\n\r\n", 5*time.Second)
			got := "not forwarded"
			if rs := find(f.backends, "/dav"); len(rs) > 0 && rs[0].Method == "PROPFIND" {
				got = "forwarded"
			}
			return fmt.Sprintf("%d, %s", ex.status, got)
		}},
		{"`Connection: X-Request-Id` + `X-Request-Id: abc-123`", func(t *testing.T, f *front) string {
			send(t, f.addr, "GET /rid HTTP/1.1\r\nHost: h\r\nConnection: X-Request-Id\r\nX-Request-Id: abc-123\r\n\r\n", 5*time.Second)
			rs := find(f.backends, "/rid")
			switch {
			case len(rs) == 0:
				return "not forwarded"
			case rs[0].Header.Get("X-Request-Id") == "abc-123":
				return "backend got abc-123"
			case rs[0].Header.Get("X-Request-Id") == "":
				return "**id dropped**"
			}
			return "backend got " + rs[0].Header.Get("X-Request-Id")
		}},
		{"HTTP/1.0 without Host: Host at the backend", func(t *testing.T, f *front) string {
			ex := send(t, f.addr, "GET /old HTTP/1.0\r\n\r\n", 5*time.Second)
			rs := find(f.backends, "/old")
			if len(rs) == 0 {
				if strings.Contains(ex.body, "missing required Host header") {
					return fmt.Sprintf("%d from the backend: **sent as HTTP/1.1 without Host**", ex.status)
				}
				return fmt.Sprintf("%d, not forwarded", ex.status)
			}
			h := rs[0].Host
			for _, b := range f.backends {
				if h == b.addr() {
					return fmt.Sprintf("%d, **the backend's own address**", ex.status)
				}
			}
			switch h {
			case f.addr:
				return fmt.Sprintf("%d, the front's address", ex.status)
			case "":
				return fmt.Sprintf("%d, empty", ex.status)
			}
			return fmt.Sprintf("%d, %q", ex.status, h)
		}},
		{"Accept-Encoding added to a request without one", func(t *testing.T, f *front) string {
			send(t, f.addr, "GET /ae HTTP/1.1\r\nHost: h\r\n\r\n", 5*time.Second)
			rs := find(f.backends, "/ae")
			if len(rs) == 0 {
				return "not forwarded"
			}
			if v := rs[0].Header.Get("Accept-Encoding"); v != "" {
				return "**added: " + v + "**"
			}
			return "none added"
		}},
	}
}

// TestEdgeCompare measures every edge row against lbscale, HAProxy and
// nginx (scripts/exp-edge).
func TestEdgeCompare(t *testing.T) {
	if os.Getenv("EDGE_COMPARE") != "1" {
		t.Skip("the edge comparison runs with EDGE_COMPARE=1 (scripts/exp-edge)")
	}
	for _, bin := range []string{"haproxy", "nginx"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: install it (apt-get install -y haproxy nginx)", bin)
		}
	}
	kinds := []struct {
		name  string
		start startFn
	}{{"lbscale", startLbscale}, {"HAProxy", startHAProxy}, {"nginx", startNginx}}
	fronts := make([]*front, len(kinds))
	for i, k := range kinds {
		f := &front{name: k.name}
		f.backends = []*cmpBackend{newCmpBackend(t), newCmpBackend(t)}
		f.addr = k.start(t, []string{f.backends[0].addr(), f.backends[1].addr()}, true)
		// Without health checks: the hang-up must reach the proxy path.
		f.hangAddr = hangupBackend(t)
		f.hang = k.start(t, []string{f.hangAddr}, false)
		f.downAddr = proctest.Addr(proctest.FreePort(t))
		f.down = k.start(t, []string{f.downAddr}, true)
		fronts[i] = f
	}
	time.Sleep(1500 * time.Millisecond) // health checks find the down backends

	rows := edgeRows()
	cells := make([][]string, len(rows))
	for i, r := range rows {
		cells[i] = make([]string, len(fronts))
		t.Run(r.name, func(t *testing.T) {
			for j, f := range fronts {
				t.Run(f.name, func(t *testing.T) {
					t.Parallel()
					cells[i][j] = r.run(t, f)
				})
			}
		})
	}

	var md strings.Builder
	md.WriteString("| row | lbscale | HAProxy " + version("haproxy") + " | nginx " + version("nginx") + " |\n|---|---|---|---|\n")
	for i, r := range rows {
		fmt.Fprintf(&md, "| %s | %s |\n", r.name, strings.Join(cells[i], " | "))
	}
	t.Log("\n" + md.String())
	if dir := os.Getenv("EDGE_COMPARE_OUT"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "edge.md"), []byte(md.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// hangupBackend accepts, reads the request line and closes: no answer.
func hangupBackend(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_, _ = bufio.NewReader(c).ReadString('\n')
				c.Close()
			}()
		}
	}()
	return l.Addr().String()
}

var versionNum = regexp.MustCompile(`\d+\.\d+\.\d+`)

func version(bin string) string {
	out, _ := exec.Command(bin, "-v").CombinedOutput()
	return versionNum.FindString(string(out))
}
