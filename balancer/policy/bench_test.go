package policy_test

import (
	"fmt"
	"net/http"
	"testing"

	"lbscale/balancer/policy"
)

// discard is a ResponseWriter whose header map is reused, so a benchmark
// measures the policy, not the recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkPick measures one pick on a busy set (varied in-flight counts
// and loads, one backend down) of 8 and 64 backends, with a different client
// address per pick. sticky carries a valid cookie; sticky-new has none, so
// every pick sets one (the one allowed allocation). least-latency has a
// response time for every backend but one.
func BenchmarkPick(b *testing.B) {
	addrs := make([]*http.Request, 1024)
	for i := range addrs {
		addrs[i] = clientN(i)
	}
	for _, name := range append(policy.Names(), "sticky-new") {
		for _, n := range []int{8, 64} {
			b.Run(fmt.Sprintf("%s/backends=%d", name, n), func(b *testing.B) {
				bs := newBackends(n, 1000)
				for i, bk := range bs {
					bk.SetRemote(int64(i * 7 % 5))
					bk.SetLoad(float64(i*3%7+1) / 10)
				}
				bs[n/3].SetHealthy(false)
				set := setOf(1, bs...)
				pname := name
				if name == "sticky-new" {
					pname = policy.NameSticky
				}
				p := newPolicy(b, pname, policy.Options{})
				observeAll(p, bs)
				w := &discard{h: http.Header{}}
				reqs := addrs
				if name == policy.NameSticky {
					first := p.Pick(set, w, addrs[0])
					pinned := request("192.0.2.1:1")
					pinned.AddCookie(&http.Cookie{Name: policy.DefaultStickyCookie, Value: stickyValue(b, first)})
					reqs = []*http.Request{pinned}
				}
				p.Pick(set, w, reqs[0]) // build per-set state outside the timing
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if name == "sticky-new" {
						clear(w.h)
					}
					if p.Pick(set, w, reqs[i%len(reqs)]) == nil {
						b.Fatal("no pick")
					}
				}
			})
		}
	}
}
