package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lbscale/internal/testenv/proctest"
	"lbscale/internal/testenv/statetest"
)

func get(t *testing.T, c *http.Client, url string, hdr ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

// TestPoliciesThroughRealBalancer runs every LB_POLICY through a balancer
// process in front of three web server processes.
func TestPoliciesThroughRealBalancer(t *testing.T) {
	addrs := []string{web(t, "p1"), web(t, "p2"), web(t, "p3")}
	weighted := addrs[0] + "=3," + addrs[1] + "," + addrs[2]
	ids := map[string]string{addrs[0]: "p1", addrs[1]: "p2", addrs[2]: "p3"}
	_ = ids
	cases := []struct {
		policy, backends string
		extra            []string
		hdr              func(i int) []string
		jar              bool
		check            func(t *testing.T, got map[string]int)
	}{
		{policy: "round-robin", check: func(t *testing.T, got map[string]int) {
			for _, id := range []string{"p1", "p2", "p3"} {
				if got[id] != 20 {
					t.Errorf("round robin gave %s %d of 60, want 20: %v", id, got[id], got)
				}
			}
		}},
		{policy: "weighted-round-robin", backends: weighted, check: func(t *testing.T, got map[string]int) {
			if got["p1"] != 36 || got["p2"] != 12 || got["p3"] != 12 {
				t.Errorf("weights 3:1:1 over 60 should give 36/12/12, got %v", got)
			}
		}},
		{policy: "random", check: allUsed},
		{policy: "least-connections", check: allUsed},
		{policy: "least-loaded", extra: []string{"LOAD_INTERVAL=50ms"}, check: allUsed},
		{policy: "p2c", check: allUsed},
		{policy: "least-latency", check: allUsed},
		{policy: "consistent-hash", check: func(t *testing.T, got map[string]int) {
			if len(got) != 1 {
				t.Errorf("one client IP should map to one backend, got %v", got)
			}
		}},
		{policy: "consistent-hash", extra: []string{"HASH_KEY=header:X-User"}, hdr: func(i int) []string { return []string{"X-User", fmt.Sprint("user-", i%12)} },
			check: func(t *testing.T, got map[string]int) {
				if len(got) < 2 {
					t.Errorf("12 distinct header keys should spread over backends, got %v", got)
				}
			}},
		{policy: "sticky", jar: true, check: func(t *testing.T, got map[string]int) {
			if len(got) != 1 {
				t.Errorf("a client with the sticky cookie should stay on one backend, got %v", got)
			}
		}},
	}
	for _, tc := range cases {
		name := tc.policy
		if len(tc.extra) > 0 {
			name += "/" + tc.extra[0]
		}
		t.Run(name, func(t *testing.T) {
			backends := tc.backends
			if backends == "" {
				backends = strings.Join(addrs, ",")
			}
			b := balancer(t, append([]string{"BACKENDS=" + backends, "LB_POLICY=" + tc.policy}, tc.extra...)...)
			waitReplicas(t, b.admin, 3)
			c := &http.Client{Timeout: 5 * time.Second}
			if tc.jar {
				c.Jar, _ = cookiejar.New(nil)
			}
			got := map[string]int{}
			for i := range 60 {
				var hdr []string
				if tc.hdr != nil {
					hdr = tc.hdr(i)
				}
				res := get(t, c, b.proxy+"/", hdr...)
				if res.StatusCode != http.StatusOK {
					t.Fatalf("request %d: status %d", i, res.StatusCode)
				}
				got[res.Header.Get("X-Server-Id")]++
			}
			tc.check(t, got)
		})
	}
}

func allUsed(t *testing.T, got map[string]int) {
	t.Helper()
	if len(got) != 3 {
		t.Errorf("every backend should serve some of 60 requests, got %v", got)
	}
}

// TestBadConfigExits2: invalid values stop the balancer at start-up with
// status 2 and a message naming the variable.
func TestBadConfigExits2(t *testing.T) {
	bin := proctest.Build(t, "balancer")
	cases := []struct{ env, name string }{
		{"MAX_INFLIGHT=-1", "MAX_INFLIGHT"},
		{"LB_POLICY=bogus", "LB_POLICY"},
		{"REDIS_URL=http//nope", "REDIS_URL"},
		{"QUEUE_TIMEOUT=soon", "QUEUE_TIMEOUT"},
		{"SYNC_INTERVAL=0s", "SYNC_INTERVAL"},
		{"BACKENDS=no-port", "BACKENDS"},
		{"SHARE_STATE=maybe", "SHARE_STATE"},
		{"LISTEN_ADDR=nonsense", "LISTEN_ADDR"},
		{"HASH_KEY=header:", "HASH_KEY"},
		{"OUTLIER_CONSECUTIVE_5XX=-2", "OUTLIER_CONSECUTIVE_5XX"},
		{"OUTLIER_BASE_EJECTION=30", "OUTLIER_BASE_EJECTION"},
		{"OUTLIER_MAX_EJECTION=1ms", "OUTLIER_MAX_EJECTION"},
		{"OUTLIER_MAX_EJECTION_PERCENT=101", "OUTLIER_MAX_EJECTION_PERCENT"},
		{"RETRY_BUDGET_PERCENT=-1", "RETRY_BUDGET_PERCENT"},
		{"RETRY_MIN_CONCURRENCY=x", "RETRY_MIN_CONCURRENCY"},
		{"RETRY_ON=404", "RETRY_ON"},
		{"RETRY_ON=5xx", "RETRY_ON"},
		{"LATENCY_DECAY=never", "LATENCY_DECAY"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := []string{"BACKENDS=127.0.0.1:1", tc.env}
			if strings.HasPrefix(tc.env, "BACKENDS=") {
				env = []string{tc.env}
			}
			exitsNaming(t, bin, env, tc.name)
		})
	}
}

// exitsNaming runs the balancer binary with env alone, requires exit
// status 2, and returns its output once it names name.
func exitsNaming(t *testing.T, bin string, env []string, name string) string {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("want exit 2, got %v: %s", err, out)
	}
	if !strings.Contains(string(out), name) {
		t.Fatalf("message does not name %s: %s", name, out)
	}
	return string(out)
}

// TestUnplaceableRequestGets503: with the only backend busy, a request waits
// QUEUE_TIMEOUT then gets 503 + Retry-After; with QUEUE_MAX=0 at once.
func TestUnplaceableRequestGets503(t *testing.T) {
	addr := web(t, "slow", "SLEEP_MS=3000")
	for _, tc := range []struct {
		name        string
		env         []string
		least, most time.Duration
	}{
		{"queue timeout", []string{"QUEUE_TIMEOUT=400ms"}, 350 * time.Millisecond, 2500 * time.Millisecond},
		{"queue full", []string{"QUEUE_MAX=0"}, 0, 1000 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := balancer(t, append([]string{"BACKENDS=" + addr, "MAX_INFLIGHT=1"}, tc.env...)...)
			go func() {
				res, err := http.Get(b.proxy + "/")
				if err == nil {
					res.Body.Close()
				}
			}()
			deadline := time.Now().Add(5 * time.Second)
			for status(t, b.admin).Backends[0].InflightLocal != 1 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			start := time.Now()
			res := get(t, &http.Client{Timeout: 10 * time.Second}, b.proxy+"/")
			took := time.Since(start)
			if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
				t.Fatalf("want 503 with Retry-After, got %d %q", res.StatusCode, res.Header.Get("Retry-After"))
			}
			if took < tc.least || took > tc.most {
				t.Fatalf("503 after %v, want between %v and %v", took, tc.least, tc.most)
			}
		})
	}
}

// TestMalformedRequestGets4xx sends a request the HTTP grammar rejects.
func TestMalformedRequestGets4xx(t *testing.T) {
	b := balancer(t, "BACKENDS="+web(t, "m1"))
	for _, raw := range []string{
		"GET / HTTP/1.1\r\n\r\n",                          // HTTP/1.1 without Host
		"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", // header without colon
		"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
	} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(b.proxy, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = conn.Write([]byte(raw))
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatalf("%q: %v", raw[:20], err)
		}
		if res.StatusCode < 400 || res.StatusCode > 499 {
			t.Errorf("%q: status %d, want 4xx", raw[:30], res.StatusCode)
		}
	}
}

// TestRedisStoppedMidRun: two balancers keep serving without an error
// while Redis is down, and resync when it returns.
func TestRedisStoppedMidRun(t *testing.T) {
	srv := statetest.StartRedis(t)
	addrs := []string{web(t, "r1", "SLEEP_MS=5"), web(t, "r2", "SLEEP_MS=5")}
	env := []string{"BACKENDS=" + strings.Join(addrs, ","), "REDIS_URL=" + srv.URL(), "POOL=redisdown", "MAX_INFLIGHT=4"}
	a, b := balancer(t, append(env, "BALANCER_ID=a")...), balancer(t, append(env, "BALANCER_ID=b")...)
	waitReplicas(t, a.admin, 2)
	waitReplicas(t, b.admin, 2)
	var r result
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	closedLoop(ctx, &wg, &r, a.proxy+"/", 6)
	closedLoop(ctx, &wg, &r, b.proxy+"/", 2)
	time.Sleep(time.Second)
	for _, addr := range addrs {
		resetLoad(t, addr)
	}
	srv.Stop()
	okAtStop := r.ok.Load()
	time.Sleep(3 * time.Second) // longer than the slot TTL: the degraded path runs
	if st := status(t, a.admin); st.StoreUp {
		t.Errorf("balancer a claims the store is up while Redis is stopped")
	}
	okDuringOutage := r.ok.Load() - okAtStop
	srv.Start()
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()
	if r.failed.Load() != 0 {
		codes := map[string]int64{}
		r.codes.Range(func(k, v any) bool { codes[k.(string)] = v.(*atomic.Int64).Load(); return true })
		t.Fatalf("%d requests failed around the Redis outage: %v", r.failed.Load(), codes)
	}
	if okDuringOutage < 100 {
		t.Fatalf("only %d requests served during the 3 s outage", okDuringOutage)
	}
	if st := status(t, a.admin); !st.StoreUp {
		t.Errorf("balancer a did not resync after Redis returned")
	}
	// Through the outage (fallback shares) and the return of a Redis that
	// lost every grant (it restarts empty: no persistence), the cluster-wide
	// limit held on each web server.
	for _, addr := range addrs {
		if p := load(t, addr).PeakInflight; p > 4+1 {
			t.Errorf("web server %s peaked at %d in flight around the outage, limit 4 (+1 tolerated)", addr, p)
		} else {
			t.Logf("web server %s peak in flight around the outage: %d (limit 4)", addr, p)
		}
	}
	t.Logf("served %d requests during the outage, %d in all, none failed", okDuringOutage, r.ok.Load())
}

// TestBalancerKilledItsSlotsReturn: a balancer that dies (SIGKILL: no
// goodbye to Redis) holds slots in the store until its TTL passes; then the
// survivor may use the whole limit again, and nothing it serves fails.
func TestBalancerKilledItsSlotsReturn(t *testing.T) {
	srv := statetest.StartRedis(t)
	w := web(t, "k1", "SLEEP_MS=100", "CAPACITY=4")
	env := []string{"BACKENDS=" + w, "REDIS_URL=" + srv.URL(), "POOL=killed", "MAX_INFLIGHT=4", "SLOW_START=0"}
	a, b := balancer(t, append(env, "BALANCER_ID=a")...), balancer(t, append(env, "BALANCER_ID=b")...)
	waitReplicas(t, a.admin, 1)
	waitReplicas(t, b.admin, 1)
	var ra, rb result
	var wg, wgb sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bctx, bcancel := context.WithCancel(ctx)
	closedLoop(ctx, &wg, &ra, a.proxy+"/", 4)
	closedLoop(bctx, &wgb, &rb, b.proxy+"/", 4)
	time.Sleep(2 * time.Second)
	if g := grantOf(t, a.admin); g >= 4 {
		t.Fatalf("with b busy too, a holds %d of the 4 slots", g)
	}
	b.proc.Kill()
	bcancel()
	wgb.Wait()
	killed := time.Now()
	for grantOf(t, a.admin) != 4 {
		if time.Since(killed) > 5*time.Second {
			t.Fatalf("a's grant is %d 5 s after b died, want the whole limit 4 (b's TTL is 1 s)", grantOf(t, a.admin))
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(killed)
	resetLoad(t, w)
	time.Sleep(time.Second)
	cancel()
	wg.Wait()
	if ra.failed.Load() != 0 {
		t.Fatalf("%d requests through the survivor failed", ra.failed.Load())
	}
	if p := load(t, w).PeakInflight; p != 4 {
		t.Errorf("after b's slots came back a kept the server at %d in flight, want the limit 4", p)
	}
	t.Logf("b killed: a held all 4 slots %v later; no request through a failed", took.Round(10*time.Millisecond))
}

func grantOf(t *testing.T, admin string) int64 {
	t.Helper()
	st := status(t, admin)
	if len(st.Backends) != 1 {
		t.Fatalf("want one backend, got %+v", st.Backends)
	}
	return st.Backends[0].Grant
}

// TestRetryOnConnectFailure: a dead backend in BACKENDS costs no failed GET:
// each request sent to it is retried on another backend, and after
// OUTLIER_CONSECUTIVE_5XX (default 5) connection failures it is ejected.
// Active checks are off (HEALTH_INTERVAL=1h), so the ejection is passive.
func TestRetryOnConnectFailure(t *testing.T) {
	dead := proctest.Addr(proctest.FreePort(t))
	live := web(t, "alive")
	b := balancer(t, "BACKENDS="+dead+","+live, "LB_POLICY=round-robin", "HEALTH_INTERVAL=1h")
	c := &http.Client{Timeout: 5 * time.Second}
	for i := 0; backendStatus(t, b.admin, dead).EjectedUntil == nil; i++ {
		if i == 30 {
			t.Fatalf("dead backend not ejected after 30 GETs: %+v", backendStatus(t, b.admin, dead))
		}
		if res := get(t, c, b.proxy+"/"); res.StatusCode != http.StatusOK {
			t.Fatalf("GET %d: status %d", i, res.StatusCode)
		}
	}
	st := status(t, b.admin)
	if be := backendStatus(t, b.admin, dead); be.Failures != 5 || be.Ejections != 1 || st.Retries != 5 || st.RetriesRefused != 0 {
		t.Errorf("want the dead backend ejected after 5 failures, each retried: %+v, retries %d refused %d", be, st.Retries, st.RetriesRefused)
	}
	// A POST with a body is not idempotent: it is not replayed. With the dead
	// backend ejected it goes to the live one.
	res, err := c.Post(b.proxy+"/", "text/plain", strings.NewReader("x"))
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("POST after ejection: %v %v", res, err)
	}
	res.Body.Close()
}

// TestHeadersAndUpgrade: the forwarding headers, X-Request-Id and the client's Host
// reach the backend; an Upgrade (WebSocket handshake) passes through.
func TestHeadersAndUpgrade(t *testing.T) {
	seen := make(chan http.Header, 1)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Set("Host", r.Host)
		select {
		case seen <- h:
		default:
		}
		_ = json.NewEncoder(w).Encode(h)
	}))
	defer echo.Close()
	b := balancer(t, "BACKENDS="+strings.TrimPrefix(echo.URL, "http://")+","+web(t, "ws"), "LB_POLICY=consistent-hash", "HASH_KEY=header:X-Pick")
	req, _ := http.NewRequest(http.MethodGet, b.proxy+"/x", nil)
	req.Host = "shop.example"
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	// Find a key that maps to the echo server.
	var h http.Header
	for i := 0; i < 50 && h == nil; i++ {
		req.Header.Set("X-Pick", fmt.Sprint(i))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.Header.Get("X-Request-Id") == "" {
			t.Fatal("no X-Request-Id on the response")
		}
		select {
		case h = <-seen:
		default:
		}
	}
	if h == nil {
		t.Fatal("no request reached the echo backend")
	}
	// The client's X-Forwarded-For is not believed without
	// TRUST_FORWARDED_FOR: the backend sees the connection's address only.
	if h.Get("X-Forwarded-For") != "127.0.0.1" || h.Get("X-Forwarded-Proto") != "http" || h.Get("X-Forwarded-Host") != "shop.example" ||
		h.Get("Forwarded") != "for=127.0.0.1;host=shop.example;proto=http" || h.Get("X-Request-Id") == "" || h.Get("Host") != "shop.example" {
		t.Errorf("backend saw headers %v", h)
	}

	// Upgrade through the balancer to the web server's /upgrade echo.
	ok := false
	for i := 0; i < 50 && !ok; i++ {
		conn, err := net.Dial("tcp", strings.TrimPrefix(b.proxy, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET /upgrade HTTP/1.1\r\nHost: x\r\nX-Pick: %d\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", i)
		br := bufio.NewReader(conn)
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			conn.Close()
			t.Fatal(err)
		}
		if res.StatusCode == http.StatusSwitchingProtocols {
			_, _ = conn.Write([]byte("ping over the upgraded connection\n"))
			line, err := br.ReadString('\n')
			if err != nil || line != "ping over the upgraded connection\n" {
				t.Fatalf("echo after upgrade: %q %v", line, err)
			}
			ok = true
		}
		conn.Close()
	}
	if !ok {
		t.Fatal("no upgrade got 101 through the balancer")
	}
}
