package policy_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
)

// sequence picks n times, one client each, and joins the IDs with spaces;
// "-" stands for nil.
func sequence(p policy.Policy, set *pool.Set, n int) string {
	out := make([]string, n)
	for i := range out {
		b := p.Pick(set, httptest.NewRecorder(), clientN(i))
		if b == nil {
			out[i] = "-"
			continue
		}
		out[i] = b.ID
	}
	return strings.Join(out, " ")
}

func lettered(weights ...int) []*pool.Backend {
	bs := make([]*pool.Backend, len(weights))
	for i, w := range weights {
		bs[i] = pool.New(string(rune('a'+i)), "127.0.0.1:1", w, 100)
	}
	return bs
}

func TestRoundRobin(t *testing.T) {
	cases := []struct {
		name  string
		setup func(bs []*pool.Backend)
		picks int
		want  string
	}{
		{"rotates", func([]*pool.Backend) {}, 7, "a b c d a b c"},
		{"skips unhealthy without doubling the next", func(bs []*pool.Backend) { bs[1].SetHealthy(false) }, 6, "a c d a c d"},
		{"skips draining and full", func(bs []*pool.Backend) { bs[0].SetDraining(true); bs[2].SetGrant(0, 0) }, 4, "b d b d"},
		{"one left", func(bs []*pool.Backend) { bs[0].SetHealthy(false); bs[1].SetHealthy(false); bs[3].SetDraining(true) }, 3, "c c c"},
		{"none left", func(bs []*pool.Backend) {
			for _, b := range bs {
				b.SetHealthy(false)
			}
		}, 2, "- -"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bs := lettered(1, 1, 1, 1)
			tc.setup(bs)
			if got := sequence(policy.NewRoundRobin(), setOf(1, bs...), tc.picks); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("recovered backend rejoins the rotation", func(t *testing.T) {
		bs := lettered(1, 1, 1)
		p := policy.NewRoundRobin()
		set := setOf(1, bs...)
		bs[1].SetHealthy(false)
		if got := sequence(p, set, 2); got != "a c" {
			t.Fatalf("with b down: %q", got)
		}
		bs[1].SetHealthy(true)
		if got := sequence(p, set, 3); got != "a b c" {
			t.Fatalf("after b recovered: %q", got)
		}
	})
}

func TestWeightedRoundRobin(t *testing.T) {
	cases := []struct {
		name    string
		weights []int
		setup   func(bs []*pool.Backend)
		want    string
	}{
		// nginx's documented sequence for weights 5, 1, 1.
		{"smooth 5 1 1", []int{5, 1, 1}, nil, "a a b a c a a a a b a c a a"},
		{"equal weights rotate", []int{2, 2, 2}, nil, "a b c a b c"},
		{"3 2", []int{3, 2}, nil, "a b a b a a b a b a"},
		{"unavailable skipped", []int{5, 1, 1}, func(bs []*pool.Backend) { bs[0].SetDraining(true) }, "b c b c"},
		{"nothing available", []int{1, 1}, func(bs []*pool.Backend) { bs[0].SetHealthy(false); bs[1].SetGrant(0, 0) }, "- -"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bs := lettered(tc.weights...)
			if tc.setup != nil {
				tc.setup(bs)
			}
			want := strings.Fields(tc.want)
			if got := sequence(policy.NewWeightedRoundRobin(), setOf(1, bs...), len(want)); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("proportions", func(t *testing.T) {
		bs := lettered(5, 1, 1, 3)
		got := tally(policy.NewWeightedRoundRobin(), setOf(1, bs...), 1000, clientN)
		// Smooth WRR is exact over every whole cycle of 10 picks.
		want := map[string]int{"a": 500, "b": 100, "c": 100, "d": 300}
		for id, n := range want {
			if got[id] != n {
				t.Fatalf("%s picked %d times, want %d (all: %v)", id, got[id], n, got)
			}
		}
	})
	t.Run("new set restarts the cycle", func(t *testing.T) {
		bs := lettered(5, 1, 1)
		p := policy.NewWeightedRoundRobin()
		if got := sequence(p, setOf(1, bs...), 3); got != "a a b" {
			t.Fatalf("first set: %q", got)
		}
		d := pool.New("d", "127.0.0.1:1", 2, 100)
		if got := sequence(p, setOf(2, append(bs, d)...), 9); got != "a d a b a c a d a" {
			t.Fatalf("second set: %q", got)
		}
	})
}
