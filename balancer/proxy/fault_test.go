package proxy_test

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"lbscale/balancer/outlier"
	"lbscale/balancer/pool"
	"lbscale/balancer/proxy"
)

// Pipe backend statuses that are not statuses: hang reads the request and
// never answers; cut sends 200 headers and half the body, then hangs up.
const (
	hang = 0
	cut  = -1
)

// pipeBackends are backends inside the test process, on net.Pipe
// connections, so that a test runs in a synctest bubble with fake time: the
// transport's per-try timeout fires when every goroutine waits, not after
// real seconds. Each address answers every request with its status.
type pipeBackends struct {
	status map[string]int
	mu     sync.Mutex
	hits   map[string]int
}

func (p *pipeBackends) dial(_ context.Context, _, addr string) (net.Conn, error) {
	srv, cli := net.Pipe()
	go p.serve(srv, addr)
	return cli, nil
}

func (p *pipeBackends) serve(c net.Conn, addr string) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		p.mu.Lock()
		p.hits[addr]++
		p.mu.Unlock()
		code := p.status[addr]
		switch code {
		case hang:
			_, _ = io.Copy(io.Discard, br) // until the proxy gives up and closes
			return
		case cut:
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nhalf")
			return
		}
		body := addr + "\n"
		res := &http.Response{StatusCode: code, ProtoMajor: 1, ProtoMinor: 1, Request: req, Header: http.Header{"X-Backend": {addr}},
			ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body))}
		if res.Write(c) != nil {
			return
		}
	}
}

func (p *pipeBackends) hit(addr string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[addr]
}

// firstAvailable picks the first available backend in the set's order, so
// a test knows where a request's first attempt goes.
type firstAvailable struct{}

func (firstAvailable) Pick(set *pool.Set, _ http.ResponseWriter, _ *http.Request) *pool.Backend {
	for _, b := range set.Backends {
		if b.Available() {
			return b
		}
	}
	return nil
}

// faultFront is a handler over backends a and b (a is tried first) behind
// pipe transport with the given per-try timeout.
type faultFront struct {
	h      *proxy.Handler
	a, b   *pool.Backend
	pipes  *pipeBackends
	budget *proxy.RetryBudget
	tr     *proxy.Transport
}

type frontOptions struct {
	statusA, statusB int
	limitB           int64
	retryOn          []int
	budget           *proxy.RetryBudget
	outlier          *outlier.Detector
	tryTimeout       time.Duration
}

func newFaultFront(o frontOptions) *faultFront {
	if o.limitB == 0 {
		o.limitB = 4
	}
	if o.budget == nil {
		o.budget = proxy.NewRetryBudget(20, 3)
	}
	if o.tryTimeout == 0 {
		o.tryTimeout = time.Minute
	}
	f := &faultFront{
		a: pool.New("a", "a:80", 1, 4), b: pool.New("b", "b:80", 1, o.limitB), budget: o.budget,
		pipes: &pipeBackends{status: map[string]int{"a:80": o.statusA, "b:80": o.statusB}, hits: map[string]int{}},
	}
	// What proxy.New builds, with the pipes as the network.
	f.tr = &proxy.Transport{
		Fallback: &http.Transport{DialContext: f.pipes.dial, ResponseHeaderTimeout: o.tryTimeout, DisableCompression: true},
		Dial:     f.pipes.dial, ResponseHeaderTimeout: o.tryTimeout, MaxIdlePerHost: 16, IdleTimeout: time.Minute,
	}
	f.h = proxy.New(proxy.Options{
		Sets: fixedSet{&pool.Set{Backends: []*pool.Backend{f.a, f.b}, Version: 1}}, Policy: firstAvailable{},
		Queue: proxy.NewQueue(16, time.Second, nil), UpstreamTimeout: o.tryTimeout, RetryOn: o.retryOn,
		RetryBudget: o.budget, Outlier: o.outlier, Transport: f.tr, Log: slog.New(slog.DiscardHandler),
	})
	return f
}

// do serves one request and returns the response and how long it took on
// the bubble's clock.
func (f *faultFront) do(method, body string) (*httptest.ResponseRecorder, time.Duration) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	rec := httptest.NewRecorder()
	start := time.Now()
	f.h.ServeHTTP(rec, httptest.NewRequest(method, "http://shop.example/", rd))
	return rec, time.Since(start)
}

var defaultRetryOn = []int{500, 502, 503, 504}

// TestRetryOnStatus: an idempotent request whose first backend answers a
// status in RETRY_ON is answered by the other backend, but only when the
// retry is certain (budget and a free slot); otherwise, and for other
// requests and statuses, the answer passes through as it is. Either way the
// 5xx counts as a failure of the backend, and no slot stays taken.
func TestRetryOnStatus(t *testing.T) {
	for _, tc := range []struct {
		name       string
		o          frontOptions
		method     string
		body       string
		holdB      bool // b's only slot is taken when the 5xx comes
		wantCode   int
		wantFrom   string
		wantStatus uint64 // retries for a status
		refused    uint64
	}{
		{name: "GET 500 retried", o: frontOptions{statusA: 500, statusB: 200, retryOn: defaultRetryOn}, method: "GET",
			wantCode: 200, wantFrom: "b:80", wantStatus: 1},
		{name: "HEAD 503 retried", o: frontOptions{statusA: 503, statusB: 200, retryOn: defaultRetryOn}, method: "HEAD",
			wantCode: 200, wantFrom: "b:80", wantStatus: 1},
		{name: "DELETE 504 retried", o: frontOptions{statusA: 504, statusB: 200, retryOn: defaultRetryOn}, method: "DELETE",
			wantCode: 200, wantFrom: "b:80", wantStatus: 1},
		{name: "501 not in RETRY_ON", o: frontOptions{statusA: 501, statusB: 200, retryOn: defaultRetryOn}, method: "GET",
			wantCode: 501, wantFrom: "a:80"},
		{name: "RETRY_ON=none", o: frontOptions{statusA: 500, statusB: 200, retryOn: []int{}}, method: "GET",
			wantCode: 500, wantFrom: "a:80"},
		{name: "POST with a body not replayed", o: frontOptions{statusA: 500, statusB: 200, retryOn: defaultRetryOn}, method: "POST", body: "x",
			wantCode: 500, wantFrom: "a:80"},
		{name: "POST without a body not idempotent", o: frontOptions{statusA: 500, statusB: 200, retryOn: defaultRetryOn}, method: "POST",
			wantCode: 500, wantFrom: "a:80"},
		{name: "GET with a body not replayed", o: frontOptions{statusA: 500, statusB: 200, retryOn: defaultRetryOn}, method: "GET", body: "x",
			wantCode: 500, wantFrom: "a:80"},
		{name: "no free slot elsewhere", o: frontOptions{statusA: 500, statusB: 200, limitB: 1, retryOn: defaultRetryOn}, method: "GET", holdB: true,
			wantCode: 500, wantFrom: "a:80"},
		{name: "budget spent", o: frontOptions{statusA: 500, statusB: 200, retryOn: defaultRetryOn, budget: proxy.NewRetryBudget(0, 0)}, method: "GET",
			wantCode: 500, wantFrom: "a:80", refused: 1},
		{name: "only one retry", o: frontOptions{statusA: 500, statusB: 502, retryOn: defaultRetryOn}, method: "GET",
			wantCode: 502, wantFrom: "b:80", wantStatus: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFaultFront(tc.o)
				defer f.tr.CloseIdleConnections()
				if tc.holdB && !f.b.TryAcquire() {
					t.Fatal("could not take b's slot")
				}
				rec, _ := f.do(tc.method, tc.body)
				if tc.holdB {
					f.b.Release()
				}
				if rec.Code != tc.wantCode || rec.Header().Get("X-Backend") != tc.wantFrom {
					t.Fatalf("got %d from %q, want %d from %s", rec.Code, rec.Header().Get("X-Backend"), tc.wantCode, tc.wantFrom)
				}
				if tc.method != "HEAD" && rec.Body.String() != tc.wantFrom+"\n" {
					t.Errorf("body %q: not the answering backend's own", rec.Body.String())
				}
				byReason, refused := f.budget.Counts()
				if byReason["status"] != tc.wantStatus || refused != tc.refused || byReason["connect"]+byReason["timeout"]+byReason["reset"] != 0 {
					t.Errorf("retries %v, refused %d; want %d for a status, %d refused", byReason, refused, tc.wantStatus, tc.refused)
				}
				wantA := uint64(0)
				if tc.o.statusA >= 500 {
					wantA = 1
				}
				if f.a.Failures() != wantA {
					t.Errorf("a's failures %d, want %d: a 5xx counts, retried or not", f.a.Failures(), wantA)
				}
				wantB := uint64(0)
				if tc.o.statusB >= 500 && tc.wantFrom == "b:80" {
					wantB = 1
				}
				if f.b.Failures() != wantB {
					t.Errorf("b's failures %d, want %d", f.b.Failures(), wantB)
				}
				if hitsB := f.pipes.hit("b:80"); (tc.wantFrom == "b:80") != (hitsB == 1) || hitsB > 1 {
					t.Errorf("b got %d requests", hitsB)
				}
				if f.a.Local() != 0 || f.b.Local() != 0 {
					t.Errorf("slots still held: a %d, b %d", f.a.Local(), f.b.Local())
				}
			})
		})
	}
}

// TestPerTryTimeout: UPSTREAM_TIMEOUT bounds each attempt. A GET to a
// backend that accepts and never answers is answered by the other backend
// one timeout later; the hang counts as a failure, its slot comes back at
// the timeout, and after OUTLIER_CONSECUTIVE_5XX of them the backend is
// ejected, so later requests do not wait at all. A POST is not retried
// (504 after one timeout); with both backends hung a GET gets 504 after
// two.
func TestPerTryTimeout(t *testing.T) {
	const try = 2 * time.Second
	synctest.Test(t, func(t *testing.T) {
		det := &outlier.Detector{Config: outlier.Config{Consecutive: 3, BaseEjection: time.Minute, MaxEjection: time.Hour, MaxPercent: 50}}
		f := newFaultFront(frontOptions{statusA: hang, statusB: 200, retryOn: defaultRetryOn, tryTimeout: try, outlier: det})
		defer f.tr.CloseIdleConnections()

		rec, took := f.do("POST", "order")
		if rec.Code != http.StatusGatewayTimeout || took != try {
			t.Fatalf("POST to the hung backend: %d after %v, want 504 after %v", rec.Code, took, try)
		}
		for i := range 2 {
			rec, took := f.do("GET", "")
			if rec.Code != 200 || rec.Header().Get("X-Backend") != "b:80" || took != try {
				t.Fatalf("GET %d: %d from %q after %v, want 200 from b after %v", i, rec.Code, rec.Header().Get("X-Backend"), took, try)
			}
			if f.a.Local() != 0 {
				t.Fatalf("the hung attempt's slot is still held after the request")
			}
		}
		if f.a.Failures() != 3 || f.a.Ejections() != 1 || !f.a.Ejected(time.Now()) {
			t.Fatalf("after 3 hangs: a failures %d, ejections %d; want ejected", f.a.Failures(), f.a.Ejections())
		}
		rec, took = f.do("GET", "")
		if rec.Code != 200 || rec.Header().Get("X-Backend") != "b:80" || took != 0 {
			t.Fatalf("GET with a ejected: %d from %q after %v, want 200 from b at once", rec.Code, rec.Header().Get("X-Backend"), took)
		}
		byReason, _ := f.budget.Counts()
		if byReason["timeout"] != 2 || byReason["status"] != 0 {
			t.Errorf("retries %v, want 2 for a timeout", byReason)
		}
		synctest.Wait()
		if n := f.pipes.hit("a:80"); n != 3 {
			t.Errorf("a got %d requests, want 3", n)
		}
	})

	synctest.Test(t, func(t *testing.T) {
		f := newFaultFront(frontOptions{statusA: hang, statusB: hang, retryOn: defaultRetryOn, tryTimeout: try})
		defer f.tr.CloseIdleConnections()
		rec, took := f.do("GET", "")
		if rec.Code != http.StatusGatewayTimeout || took != 2*try {
			t.Fatalf("GET with both hung: %d after %v, want 504 after 2 x %v", rec.Code, took, try)
		}
		if f.a.Local() != 0 || f.b.Local() != 0 || f.a.Failures() != 1 || f.b.Failures() != 1 {
			t.Errorf("slots a %d b %d, failures a %d b %d", f.a.Local(), f.b.Local(), f.a.Failures(), f.b.Failures())
		}
	})
}

// TestRetryCutOffGivesBudgetBack: a retry whose answer is cut off mid-body
// (ReverseProxy then panics with http.ErrAbortHandler) still gives its
// retry back to the budget: with room for one retry at a time, the next
// request is retried too.
func TestRetryCutOffGivesBudgetBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFaultFront(frontOptions{statusA: 500, statusB: cut, retryOn: defaultRetryOn, budget: proxy.NewRetryBudget(0, 1)})
		defer f.tr.CloseIdleConnections()
		for i := range 2 {
			func() {
				defer func() {
					if p := recover(); p != http.ErrAbortHandler {
						t.Errorf("request %d: panic %v, want http.ErrAbortHandler", i, p)
					}
				}()
				// ReverseProxy panics on a cut body only under an http.Server.
				req := httptest.NewRequest("GET", "http://shop.example/", nil)
				req = req.WithContext(context.WithValue(req.Context(), http.ServerContextKey, &http.Server{}))
				f.h.ServeHTTP(httptest.NewRecorder(), req)
			}()
		}
		if byReason, refused := f.budget.Counts(); byReason["status"] != 2 || refused != 0 {
			t.Errorf("retries %v, refused %d; want both requests retried", byReason, refused)
		}
		if f.a.Local() != 0 || f.b.Local() != 0 {
			t.Errorf("slots still held: a %d, b %d", f.a.Local(), f.b.Local())
		}
	})
}
