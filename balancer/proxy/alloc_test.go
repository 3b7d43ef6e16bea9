package proxy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"

	"lbscale/balancer/policy"
)

// memTransport answers every request at once, in memory, so that a
// benchmark of the handler measures the proxy's own work and not the
// network's.
type memTransport struct{}

func (memTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: http.NoBody, Request: r,
	}, nil
}

// sink is a ResponseWriter that keeps nothing but is reused, so that it
// adds no allocation of its own.
type sink struct {
	h    http.Header
	code int
}

func (s *sink) Header() http.Header         { return s.h }
func (s *sink) WriteHeader(code int)        { s.code = code }
func (s *sink) Write(p []byte) (int, error) { return len(p), nil }

// benchBuffers recycles the bare ReverseProxy's copy buffers as the
// balancer does, so the comparison is of code, not of a setting.
type benchBuffers struct{}

var benchPool = sync.Pool{New: func() any { return make([]byte, 32<<10) }}

func (benchBuffers) Get() []byte  { return benchPool.Get().([]byte) }
func (benchBuffers) Put(b []byte) { benchPool.Put(b) } //nolint:staticcheck // a slice header per Put is fine in a test

// handlers returns the two handlers compared: a bare httputil.ReverseProxy
// (what net/http costs) and lbscale's whole request path as the balancer
// builds it (edge guard, placement, metrics, flow counts, outlier and
// retry accounting), both over memTransport.
func handlers() (bare, lbscale http.Handler) {
	u := &url.URL{Scheme: "http", Host: "10.0.0.1:8080"}
	bare = &httputil.ReverseProxy{Transport: memTransport{}, BufferPool: benchBuffers{}, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		pr.Out.Host = pr.In.Host
		pr.SetXForwarded()
	}}
	pol, _ := policy.New("least-connections", policy.Options{Seed: 1})
	return bare, policyHandler(pol)
}

// serveOne sends one GET through h as net/http's server would hand it
// over: a fresh request with a cancelable context.
func serveOne(h http.Handler, w *sink) {
	clear(w.h)
	r := httptest.NewRequest(http.MethodGet, "http://example.com/path?q=1", nil)
	r.RemoteAddr = "192.0.2.1:40000"
	r.Header.Set("User-Agent", "bench")
	ctx, cancel := context.WithCancel(context.Background())
	h.ServeHTTP(w, r.WithContext(ctx))
	cancel()
}

// BenchmarkHandler compares the whole request path with a bare
// ReverseProxy over the same in-memory backend: the difference in ns/op
// and allocs/op is lbscale's own code (scripts/bench prints it).
func BenchmarkHandler(b *testing.B) {
	bare, lb := handlers()
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"reverseproxy", bare}, {"lbscale", lb}} {
		b.Run(tc.name, func(b *testing.B) {
			w := &sink{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				serveOne(tc.h, w)
			}
		})
	}
}

// TestHandlerAllocs holds lbscale's own code to at most 2 allocations per
// proxied request beyond what net/http's ReverseProxy makes itself. An
// allocation count is a property of the code, not of the machine's speed,
// so unlike a timing it can be asserted.
func TestHandlerAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts (sync.Pool drops items)")
	}
	bare, lb := handlers()
	w := &sink{h: http.Header{}}
	base := testing.AllocsPerRun(200, func() { serveOne(bare, w) })
	ours := testing.AllocsPerRun(200, func() { serveOne(lb, w) })
	if w.code != http.StatusOK {
		t.Fatalf("status %d through the balancer, want 200", w.code)
	}
	t.Logf("allocations per request: bare ReverseProxy %.0f, lbscale %.0f (+%.0f)", base, ours, ours-base)
	if ours-base > 2 {
		t.Errorf("lbscale allocates %.0f objects per request beyond ReverseProxy's %.0f; want at most 2", ours-base, base)
	}
}
