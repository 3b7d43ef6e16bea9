package proxy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"lbscale/balancer/edge"
	"lbscale/balancer/flow"
	"lbscale/balancer/outlier"
	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
	"lbscale/balancer/proxy"
)

// policyHandler is the balancer's whole request path, as handlers builds
// it, with the policy pol.
func policyHandler(pol policy.Policy, with ...func(*proxy.Options)) http.Handler {
	set := &pool.Set{Backends: []*pool.Backend{
		pool.New("a", "10.0.0.1:8080", 1, 1000), pool.New("b", "10.0.0.2:8080", 1, 1000),
	}, Version: 1}
	o := proxy.Options{
		Sets: fixedSet{set}, Policy: pol, Queue: proxy.NewQueue(1024, time.Second, nil),
		UpstreamTimeout: 5 * time.Second, Transport: memTransport{}, Flow: &flow.Counter{},
		Outlier:     &outlier.Detector{Config: outlier.Config{Consecutive: 5, BaseEjection: time.Second, MaxEjection: time.Minute, MaxPercent: 50}},
		RetryBudget: proxy.NewRetryBudget(20, 3), Metrics: proxy.NewMetrics(prometheus.NewRegistry()), BodyBuffer: 64 << 10,
	}
	for _, f := range with {
		f(&o)
	}
	h := proxy.New(o)
	return edge.Guard(h, nil)
}

// TestHandlerAllocsPathKeys: dispatch by path or by path and query costs
// the request path no allocation that least-connections does not make. The
// target is longer than the 32 bytes a string concatenation may keep on the
// stack, so a key built by concatenation would be counted.
func TestHandlerAllocsPathKeys(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts (sync.Pool drops items)")
	}
	const target = "http://example.com/assets/images/2024/banner-large.png?width=1200&format=webp"
	serve := func(h http.Handler, w *sink) {
		clear(w.h)
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.RemoteAddr = "192.0.2.1:40000"
		ctx, cancel := context.WithCancel(context.Background())
		h.ServeHTTP(w, r.WithContext(ctx))
		cancel()
	}
	measure := func(name string, opts policy.Options) float64 {
		opts.Seed = 1
		pol, err := policy.New(name, opts)
		if err != nil {
			t.Fatal(err)
		}
		h := policyHandler(pol)
		w := &sink{h: http.Header{}}
		allocs := testing.AllocsPerRun(200, func() { serve(h, w) })
		if w.code != http.StatusOK {
			t.Fatalf("%s %s: status %d, want 200", name, opts.HashKey, w.code)
		}
		return allocs
	}
	base := measure(policy.NameLeastConnections, policy.Options{})
	for _, key := range []string{"path", "url"} {
		if got := measure(policy.NameConsistentHash, policy.Options{HashKey: key}); got > base {
			t.Errorf("HASH_KEY=%s: %.0f allocations per request, least-connections %.0f; want no more", key, got, base)
		}
	}
}
