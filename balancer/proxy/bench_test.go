package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
	"lbscale/balancer/proxy"
)

type fixedSet struct{ s *pool.Set }

func (f fixedSet) Set() *pool.Set { return f.s }

// BenchmarkProxy measures requests through the balancer's handler over real
// loopback HTTP to a trivial backend, side by side with the same client
// hitting the backend directly, so the ratio shows the proxy's cost on this
// machine whatever its speed.
func BenchmarkProxy(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("hello\n"))
	}))
	defer backend.Close()
	set := &pool.Set{Backends: []*pool.Backend{pool.New("b", strings.TrimPrefix(backend.URL, "http://"), 1, 1024)}, Version: 1}
	pol, _ := policy.New("least-connections", policy.Options{Seed: 1})
	h := proxy.New(proxy.Options{Sets: fixedSet{set}, Policy: pol, Queue: proxy.NewQueue(1024, time.Second, nil), UpstreamTimeout: 5 * time.Second, MaxIdlePerHost: 256})
	front := httptest.NewServer(h)
	defer front.Close()

	for _, tc := range []struct{ name, url string }{{"direct", backend.URL}, {"balancer", front.URL}} {
		b.Run(tc.name, func(b *testing.B) {
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := c.Get(tc.url)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}
