package outlier

import (
	"fmt"
	"testing"
	"time"

	"lbscale/balancer/pool"
)

var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func TestDecide(t *testing.T) {
	c := Config{Consecutive: 5, BaseEjection: 30 * time.Second, MaxEjection: 300 * time.Second, MaxPercent: 50}
	two := Census{Members: 2, PickableOthers: 1}
	cases := []struct {
		name   string
		cfg    Config
		n      int
		h      History
		census Census
		want   Verdict
	}{
		{"below threshold", c, 4, History{}, two, Verdict{}},
		{"first ejection: base", c, 5, History{}, two, Verdict{Eject: true, Until: t0.Add(30 * time.Second), Level: 1}},
		{"above threshold (an earlier one overflowed)", c, 9, History{}, two, Verdict{Eject: true, Until: t0.Add(30 * time.Second), Level: 1}},
		{"again 10s after returning: 2x", c, 5, History{LastUntil: t0.Add(-10 * time.Second), Level: 1}, two,
			Verdict{Eject: true, Until: t0.Add(60 * time.Second), Level: 2}},
		{"40s after a 2x: decays one step, then 2x", c, 5, History{LastUntil: t0.Add(-40 * time.Second), Level: 2}, two,
			Verdict{Eject: true, Until: t0.Add(60 * time.Second), Level: 2}},
		{"2 min after a 2x: starts over", c, 5, History{LastUntil: t0.Add(-2 * time.Minute), Level: 2}, two,
			Verdict{Eject: true, Until: t0.Add(30 * time.Second), Level: 1}},
		{"capped at max, level stops at 10", c, 5, History{LastUntil: t0, Level: 10}, two,
			Verdict{Eject: true, Until: t0.Add(300 * time.Second), Level: 10}},
		{"cap not a multiple of base", Config{Consecutive: 1, BaseEjection: 40 * time.Second, MaxEjection: 100 * time.Second, MaxPercent: 100},
			1, History{LastUntil: t0, Level: 2}, two, Verdict{Eject: true, Until: t0.Add(100 * time.Second), Level: 3}},
		{"50% of 2: one already out", c, 5, History{}, Census{Members: 2, Ejected: 1, PickableOthers: 0}, Verdict{Overflow: true}},
		{"50% of 3: one out, no second", c, 5, History{}, Census{Members: 3, Ejected: 1, PickableOthers: 1}, Verdict{Overflow: true}},
		{"50% of 4: a second may go", c, 5, History{}, Census{Members: 4, Ejected: 1, PickableOthers: 2},
			Verdict{Eject: true, Until: t0.Add(30 * time.Second), Level: 1}},
		{"pool of one keeps its backend", Config{Consecutive: 5, BaseEjection: time.Second, MaxPercent: 100}, 5, History{},
			Census{Members: 1}, Verdict{Overflow: true}},
		{"100% still keeps one pickable", Config{Consecutive: 5, BaseEjection: time.Second, MaxPercent: 100}, 5, History{},
			Census{Members: 3, Ejected: 1, PickableOthers: 0}, Verdict{Overflow: true}},
		{"the others are down by active checks", c, 5, History{}, Census{Members: 4, PickableOthers: 0}, Verdict{Overflow: true}},
		{"0% ejects nothing", Config{Consecutive: 5, BaseEjection: time.Second, MaxPercent: 0}, 5, History{}, two, Verdict{Overflow: true}},
		{"consecutive 0 is off", Config{BaseEjection: time.Second, MaxPercent: 100}, 1000, History{}, two, Verdict{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cfg.Decide(t0, tc.n, tc.h, tc.census); got != tc.want {
				t.Errorf("Decide = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestDetector drives pool backends through failures, successes and time
// with a made-up clock.
func TestDetector(t *testing.T) {
	now := t0
	d := &Detector{Config: Config{Consecutive: 3, BaseEjection: 10 * time.Second, MaxEjection: time.Minute, MaxPercent: 50}, Now: func() time.Time { return now }}
	bs := make([]*pool.Backend, 3)
	for i := range bs {
		bs[i] = pool.New(fmt.Sprint("b", i), fmt.Sprintf("10.0.0.%d:80", i+1), 1, 4)
	}
	set := &pool.Set{Backends: bs, Version: 1}
	a, b := bs[0], bs[1]
	fail := func(x *pool.Backend, n int) (v Verdict) {
		for range n {
			v = d.Failure(set, x)
		}
		return v
	}

	// A success breaks the run.
	fail(a, 2)
	d.Success(a)
	if v := fail(a, 2); v.Eject || a.Ejected(now) {
		t.Fatalf("2 + 2 failures around a success ejected: %+v", v)
	}
	if v := fail(a, 1); !v.Eject || !a.Ejected(now) || !a.EjectedUntil().Equal(now.Add(10*time.Second)) || a.Ejections() != 1 {
		t.Fatalf("3rd in a row: %+v, until %v", v, a.EjectedUntil())
	}
	// Requests already in flight to a fail too: no second ejection.
	if v := fail(a, 5); v.Eject || a.Ejections() != 1 {
		t.Fatalf("failures while ejected: %+v, %d ejections", v, a.Ejections())
	}
	// 50% of 3: b may not go while a is out.
	if v := fail(b, 3); v.Eject || !v.Overflow || b.Ejected(now) || d.Overflows() != 1 {
		t.Fatalf("second ejection of 3 at 50%%: %+v", v)
	}
	// a's time is up: it is back, and fails again at once: 2 x base.
	now = now.Add(10 * time.Second)
	if a.Ejected(now) {
		t.Fatal("a still ejected after its 10s")
	}
	if v := fail(a, 3); !v.Eject || v.Level != 2 || !v.Until.Equal(now.Add(20*time.Second)) {
		t.Fatalf("a failing again on its return: %+v, want level 2 for 20s", v)
	}
	// b, over the threshold since its overflow, goes at its first failure
	// once a is back.
	if v := fail(b, 1); !v.Overflow {
		t.Fatalf("b while a is out: %+v", v)
	}
	now = now.Add(20 * time.Second)
	if v := fail(b, 1); !v.Eject || v.Level != 1 {
		t.Fatalf("b after a returned: %+v", v)
	}
	// The threshold restarts after an ejection.
	if v := fail(a, 2); v.Eject {
		t.Fatalf("2 failures after returning ejected again: %+v", v)
	}

	// A draining backend is not a member: of a and c, one may go, and then
	// a (the last pickable) stays.
	c := bs[2]
	b.SetDraining(true)
	if v := fail(c, 3); !v.Eject {
		t.Fatalf("c, 1 of 2 members: %+v", v)
	}
	if v := fail(a, 1); v.Eject || !v.Overflow {
		t.Fatalf("a, the last pickable: %+v", v)
	}
}
