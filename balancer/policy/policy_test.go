package policy_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
)

// TestOnlyAvailable drives every policy over sets in which backends are
// unavailable for each reason there is: a pick is nil exactly when nothing is
// available, and otherwise an available member of the set.
func TestOnlyAvailable(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, bs []*pool.Backend) // on 6 backends with limit 2
		want  int                                    // backends left available
	}{
		{"all available", func(*testing.T, []*pool.Backend) {}, 6},
		{"some unhealthy", func(_ *testing.T, bs []*pool.Backend) { bs[0].SetHealthy(false); bs[3].SetHealthy(false) }, 4},
		{"some draining", func(_ *testing.T, bs []*pool.Backend) { bs[1].SetDraining(true); bs[5].SetDraining(true) }, 4},
		{"some full", func(t *testing.T, bs []*pool.Backend) { fill(t, bs[2], 2); fill(t, bs[4], 2) }, 4},
		{"grant withdrawn", func(_ *testing.T, bs []*pool.Backend) { bs[0].SetGrant(0, 0); bs[1].SetGrant(0, 0) }, 4},
		{"some ejected", func(_ *testing.T, bs []*pool.Backend) {
			bs[2].Eject(time.Now().Add(time.Hour), 1)
			bs[5].Eject(time.Now().Add(time.Hour), 1)
		}, 4},
		{"only the last left", func(t *testing.T, bs []*pool.Backend) {
			bs[0].SetHealthy(false)
			bs[1].SetDraining(true)
			fill(t, bs[2], 2)
			bs[3].SetGrant(0, 0)
			bs[4].SetHealthy(false)
		}, 1},
		{"all unhealthy", func(_ *testing.T, bs []*pool.Backend) {
			for _, b := range bs {
				b.SetHealthy(false)
			}
		}, 0},
		{"all full", func(t *testing.T, bs []*pool.Backend) {
			for _, b := range bs {
				fill(t, b, 2)
			}
		}, 0},
		{"mixed, none left", func(t *testing.T, bs []*pool.Backend) {
			for i, b := range bs {
				switch i % 3 {
				case 0:
					b.SetHealthy(false)
				case 1:
					b.SetDraining(true)
				default:
					fill(t, b, 2)
				}
			}
		}, 0},
	}
	for _, name := range policy.Names() {
		for _, tc := range cases {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				bs := newBackends(6, 2)
				tc.setup(t, bs)
				set := setOf(1, bs...)
				p := newPolicy(t, name, policy.Options{HashKey: "cookie:session"})
				seen := map[*pool.Backend]bool{}
				for i := range 300 {
					r := clientN(i)
					if i%2 == 0 {
						r.Header.Set("Cookie", "session=s"+string(rune('a'+i%26)))
					}
					if i%3 == 0 { // a sticky cookie naming each backend in turn
						r.AddCookie(&http.Cookie{Name: policy.DefaultStickyCookie, Value: stickyValue(t, bs[i%len(bs)])})
					}
					b := p.Pick(set, httptest.NewRecorder(), r)
					if tc.want == 0 {
						if b != nil {
							t.Fatalf("pick %d: %s with nothing available", i, b.ID)
						}
						continue
					}
					if b == nil {
						t.Fatalf("pick %d: nil with %d available", i, tc.want)
					}
					if !slices.Contains(bs, b) || !b.Available() {
						t.Fatalf("pick %d: %s is not an available member (healthy %v draining %v local %d grant %d)",
							i, b.ID, b.Healthy(), b.Draining(), b.Local(), b.Grant())
					}
					seen[b] = true
				}
				if tc.want == 1 && len(seen) != 1 {
					t.Fatalf("picked %d backends with one available", len(seen))
				}
			})
		}
		t.Run(name+"/empty set", func(t *testing.T) {
			if b := newPolicy(t, name, policy.Options{}).Pick(setOf(1), httptest.NewRecorder(), clientN(1)); b != nil {
				t.Fatalf("picked %s from an empty set", b.ID)
			}
		})
	}
}

// stickyValue is the cookie the sticky policy sets for b, learnt by making
// it pick b as the only available backend.
func stickyValue(t testing.TB, b *pool.Backend) string {
	t.Helper()
	solo := pool.New(b.ID, b.Addr, b.Weight, 1)
	p, err := policy.NewSticky("", seeded(1))
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	if got := p.Pick(setOf(1, solo), w, request("192.0.2.1:1")); got != solo {
		t.Fatalf("sticky did not pick the only backend")
	}
	for _, c := range (&http.Response{Header: w.Header()}).Cookies() {
		if c.Name == policy.DefaultStickyCookie {
			return c.Value
		}
	}
	t.Fatalf("no sticky cookie in %q", w.Header())
	return ""
}

// TestPickAllocatesNothing holds every policy to the hot-path rule: after
// the first pick on a set (which may build a ring or weight table), a pick
// allocates nothing. Sticky is measured on a request that carries its
// cookie; setting a new cookie is the one allowed allocation.
func TestPickAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	for _, name := range policy.Names() {
		for _, n := range []int{8, 64} {
			bs := newBackends(n, 100)
			for i, b := range bs {
				b.SetRemote(int64(i % 4))
				b.SetLoad(float64(i%5) / 10)
			}
			bs[n/2].SetHealthy(false)
			set := setOf(7, bs...)
			p := newPolicy(t, name, policy.Options{})
			observeAll(p, bs)
			w := httptest.NewRecorder()
			r := request("203.0.113.9:5555")
			first := p.Pick(set, w, r)
			if first == nil {
				t.Fatalf("%s: no pick", name)
			}
			if name == policy.NameSticky {
				r.AddCookie(&http.Cookie{Name: policy.DefaultStickyCookie, Value: stickyValue(t, first)})
			}
			allocs := testing.AllocsPerRun(200, func() {
				if p.Pick(set, w, r) == nil {
					panic("no pick")
				}
			})
			if allocs != 0 {
				t.Errorf("%s over %d backends: %v allocations per pick, want 0", name, n, allocs)
			}
		}
	}
}

// TestConcurrentPicks runs every policy from several goroutines that take
// and release slots while the set is replaced under them: run with -race it
// checks the policies' own state; without, that picks stay members of the
// set they were given.
func TestConcurrentPicks(t *testing.T) {
	for _, name := range policy.Names() {
		t.Run(name, func(t *testing.T) {
			p := newPolicy(t, name, policy.Options{})
			bs := newBackends(10, 1000)
			sets := []*pool.Set{setOf(1, bs[:6]...), setOf(2, bs[2:]...), setOf(3, bs...)}
			var wg sync.WaitGroup
			errs := make(chan string, 4)
			for g := range 4 {
				wg.Go(func() {
					for i := range 2000 {
						set := sets[(i/100+g)%len(sets)]
						b := p.Pick(set, httptest.NewRecorder(), clientN(i))
						if b == nil || !slices.Contains(set.Backends, b) {
							errs <- "pick outside the set"
							return
						}
						if b.TryAcquire() {
							if o, ok := p.(policy.Observer); ok {
								o.Observe(b, time.Duration(i%7+1)*time.Millisecond)
							}
							b.Release()
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Fatal(e)
			}
		})
	}
}
