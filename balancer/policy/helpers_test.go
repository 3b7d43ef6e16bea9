package policy_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
)

// newBackends returns n healthy backends "b00", "b01", ... with weight 1 and
// room for limit requests each.
func newBackends(n int, limit int64) []*pool.Backend {
	bs := make([]*pool.Backend, n)
	for i := range bs {
		bs[i] = pool.New(fmt.Sprintf("b%02d", i), fmt.Sprintf("10.0.0.%d:8080", i+1), 1, limit)
	}
	return bs
}

func setOf(version uint64, bs ...*pool.Backend) *pool.Set {
	return &pool.Set{Backends: bs, Version: version}
}

// request from a client address; extra headers as name, value pairs.
func request(remote string, headers ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

func seeded(seed uint64) rand.Source { return rand.NewPCG(seed, seed+1) }

// fill takes n slots on b, failing the test if it cannot.
func fill(t testing.TB, b *pool.Backend, n int) {
	t.Helper()
	for i := range n {
		if !b.TryAcquire() {
			t.Fatalf("%s: acquire %d of %d failed", b.ID, i+1, n)
		}
	}
}

// newPolicy builds a policy by name with a fixed seed.
func newPolicy(t testing.TB, name string, opts policy.Options) policy.Policy {
	t.Helper()
	if opts.Rand == nil && opts.Seed == 0 {
		opts.Seed = 42
	}
	p, err := policy.New(name, opts)
	if err != nil {
		t.Fatalf("New(%q): %v", name, err)
	}
	return p
}

// tally picks n times with a fresh recorder per pick and counts the IDs
// picked ("" for nil).
func tally(p policy.Policy, set *pool.Set, n int, r func(i int) *http.Request) map[string]int {
	got := map[string]int{}
	for i := range n {
		b := p.Pick(set, httptest.NewRecorder(), r(i))
		if b == nil {
			got[""]++
			continue
		}
		got[b.ID]++
	}
	return got
}

func sameRequest(r *http.Request) func(int) *http.Request {
	return func(int) *http.Request { return r }
}

// clientN is a distinct client address per i.
func clientN(i int) *http.Request {
	return request(fmt.Sprintf("198.51.%d.%d:4%04d", i/250%250, i%250, i%10000))
}

// observeAll gives a policy that learns from responses (least-latency) a
// varied response time for every backend but the last, which stays unknown.
func observeAll(p policy.Policy, bs []*pool.Backend) {
	o, ok := p.(policy.Observer)
	if !ok {
		return
	}
	for i, b := range bs[:len(bs)-1] {
		o.Observe(b, time.Duration(i%5+1)*time.Millisecond)
	}
}
