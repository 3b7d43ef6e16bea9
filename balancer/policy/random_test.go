package policy_test

import (
	"testing"

	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
)

func TestRandom(t *testing.T) {
	t.Run("uniform over the available ones", func(t *testing.T) {
		bs := newBackends(8, 10)
		bs[2].SetHealthy(false)
		bs[5].SetDraining(true)
		const picks = 60000
		got := tally(policy.NewRandom(seeded(7)), setOf(1, bs...), picks, clientN)
		if got[bs[2].ID]+got[bs[5].ID]+got[""] != 0 {
			t.Fatalf("picked unavailable or nil: %v", got)
		}
		// 6 available: 10000 each expected, sd ~91; 5% is over 5 sd.
		for _, b := range bs {
			if b == bs[2] || b == bs[5] {
				continue
			}
			if n := got[b.ID]; n < 9500 || n > 10500 {
				t.Errorf("%s picked %d times of %d, want 10000 +- 5%%", b.ID, n, picks)
			}
		}
	})
	// Pick first draws over the whole pool and rejects unavailable backends,
	// then falls back to counting; in a nearly full pool it takes the
	// fallback most of the time, and the mixture must stay uniform.
	t.Run("uniform when nearly all are full", func(t *testing.T) {
		bs := newBackends(40, 1)
		for i, b := range bs {
			if i != 3 && i != 31 {
				fill(t, b, 1)
			}
		}
		got := tally(policy.NewRandom(seeded(9)), setOf(1, bs...), 20000, clientN)
		if got[bs[3].ID]+got[bs[31].ID] != 20000 {
			t.Fatalf("picked a full backend: %v", got)
		}
		// 10000 each expected, sd ~71; 3% is over 4 sd.
		if n := got[bs[3].ID]; n < 9700 || n > 10300 {
			t.Fatalf("%s picked %d of 20000, want 10000 +- 3%%", bs[3].ID, n)
		}
	})
	t.Run("same seed, same picks", func(t *testing.T) {
		set := setOf(1, newBackends(8, 10)...)
		a, b := policy.NewRandom(seeded(3)), policy.NewRandom(seeded(3))
		if sa, sb := sequence(a, set, 50), sequence(b, set, 50); sa != sb {
			t.Fatalf("seed 3 gave %q then %q", sa, sb)
		}
		if sa, sc := sequence(a, set, 50), sequence(policy.NewRandom(seeded(4)), set, 50); sa == sc {
			t.Fatalf("seeds 3 and 4 gave the same 50 picks %q", sa)
		}
	})
}

func TestP2C(t *testing.T) {
	t.Run("of two, never the strictly busier", func(t *testing.T) {
		cases := []struct {
			name       string
			local      [4]int
			remote     [4]int64
			down       [4]bool
			want, busy string
		}{
			{"local counts", [4]int{3, 1, 0, 0}, [4]int64{}, [4]bool{false, false, true, true}, "b01", "b00"},
			{"remote counts", [4]int{}, [4]int64{0, 0, 2, 5}, [4]bool{true, true, false, false}, "b02", "b03"},
			{"local plus remote", [4]int{2, 0, 0, 0}, [4]int64{0, 3, 0, 0}, [4]bool{false, false, true, true}, "b00", "b01"},
			{"apart", [4]int{0, 0, 0, 1}, [4]int64{}, [4]bool{false, true, true, false}, "b00", "b03"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				bs := newBackends(4, 10)
				for i, b := range bs {
					fill(t, b, tc.local[i])
					b.SetRemote(tc.remote[i])
					b.SetHealthy(!tc.down[i])
				}
				got := tally(policy.NewP2C(seeded(1)), setOf(1, bs...), 1000, clientN)
				if got[tc.want] != 1000 {
					t.Fatalf("picks %v, want all on %s over %s", got, tc.want, tc.busy)
				}
			})
		}
	})
	t.Run("never the busiest, the idlest most", func(t *testing.T) {
		bs := newBackends(8, 100)
		for i, b := range bs {
			b.SetRemote(int64(i)) // b07 strictly busiest
		}
		got := tally(policy.NewP2C(seeded(2)), setOf(1, bs...), 8000, clientN)
		if got["b07"] != 0 {
			t.Fatalf("busiest picked %d times: %v", got["b07"], got)
		}
		// b00 wins every pair it is in (7 of 28), b06 only the pair with b07 (1 of 28).
		if got["b00"] < 1600 || got["b06"] > 600 || got["b00"] <= got["b03"] {
			t.Fatalf("p2c does not favour the idle: %v", got)
		}
	})
	t.Run("ties spread", func(t *testing.T) {
		bs := newBackends(4, 100)
		got := tally(policy.NewP2C(seeded(3)), setOf(1, bs...), 4000, clientN)
		for _, b := range bs {
			if got[b.ID] < 800 {
				t.Fatalf("idle backends not shared evenly: %v", got)
			}
		}
	})
	t.Run("single available", func(t *testing.T) {
		bs := newBackends(3, 1)
		fill(t, bs[0], 1)
		bs[2].SetDraining(true)
		if got := tally(policy.NewP2C(seeded(4)), setOf(1, bs...), 50, clientN); got["b01"] != 50 {
			t.Fatalf("picks %v, want all on b01", got)
		}
	})
}

func TestLeastConnections(t *testing.T) {
	cases := []struct {
		name   string
		local  []int
		remote []int64
		setup  func(bs []*pool.Backend)
		want   []string // the picks allowed; with several, each must get a fair share
	}{
		{"lowest local", []int{3, 1, 2}, nil, nil, []string{"b01"}},
		{"cluster-wide, not local", []int{0, 1, 2}, []int64{4, 0, 0}, nil, []string{"b01"}},
		{"unavailable minimum skipped", []int{0, 1, 2}, nil, func(bs []*pool.Backend) { bs[0].SetDraining(true) }, []string{"b01"}},
		{"full minimum skipped", []int{0, 2, 1}, nil, func(bs []*pool.Backend) { bs[0].SetGrant(0, 0) }, []string{"b02"}},
		{"ties spread", []int{1, 0, 0, 0}, []int64{0, 0, 3, 0}, nil, []string{"b01", "b03"}},
		{"all idle spread", []int{0, 0, 0, 0}, nil, nil, []string{"b00", "b01", "b02", "b03"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bs := newBackends(len(tc.local), 10)
			for i, b := range bs {
				fill(t, b, tc.local[i])
				if tc.remote != nil {
					b.SetRemote(tc.remote[i])
				}
			}
			if tc.setup != nil {
				tc.setup(bs)
			}
			const picks = 3000
			got := tally(policy.NewLeastConnections(seeded(5)), setOf(1, bs...), picks, clientN)
			checkShares(t, got, tc.want, picks)
		})
	}
}

func TestLeastLoaded(t *testing.T) {
	cases := []struct {
		name  string
		load  []float64 // 0: never polled
		local []int
		setup func(bs []*pool.Backend)
		want  []string
	}{
		{"lowest reported load", []float64{0.9, 0.2, 0.5}, []int{0, 5, 0}, nil, []string{"b01"}},
		{"unavailable skipped", []float64{0.9, 0.2, 0.5}, nil, func(bs []*pool.Backend) { bs[1].SetHealthy(false) }, []string{"b02"}},
		{"ties spread", []float64{0.3, 0.1, 0.1, 0.1}, nil, nil, []string{"b01", "b02", "b03"}},
		// Never polled: Load is in-flight over limit (10), so 1/10 < 3/10.
		{"unpolled falls back to in-flight ratio", nil, []int{3, 1, 4}, nil, []string{"b01"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := max(len(tc.load), len(tc.local))
			bs := newBackends(n, 10)
			for i, b := range bs {
				if tc.load != nil {
					b.SetLoad(tc.load[i])
				}
				if tc.local != nil {
					fill(t, b, tc.local[i])
				}
			}
			if tc.setup != nil {
				tc.setup(bs)
			}
			const picks = 3000
			got := tally(policy.NewLeastLoaded(seeded(6)), setOf(1, bs...), picks, clientN)
			checkShares(t, got, tc.want, picks)
		})
	}
}

// checkShares fails unless every pick is in want and, when want has several
// backends (a tie), each got at least 2/3 of an even share.
func checkShares(t *testing.T, got map[string]int, want []string, picks int) {
	t.Helper()
	sum := 0
	for _, id := range want {
		sum += got[id]
		if got[id] < picks/len(want)*2/3 {
			t.Errorf("%s picked %d of %d times; the tie among %v is not spread: %v", id, got[id], picks, want, got)
		}
	}
	if sum != picks {
		t.Errorf("picks %v, want only %v", got, want)
	}
}
