package schedule

import (
	"math"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func collect(t *testing.T, p Profile, limit int64) []time.Duration {
	t.Helper()
	s := New(p, t0, limit)
	var out []time.Duration
	for {
		at, ok := s.Next()
		if !ok {
			break
		}
		if len(out) > 0 && at.Sub(t0) < out[len(out)-1] {
			t.Fatalf("time went back: %v after %v", at.Sub(t0), out[len(out)-1])
		}
		out = append(out, at.Sub(t0))
		if len(out) > 10_000_000 {
			t.Fatal("runaway schedule")
		}
	}
	if int64(len(out)) != s.Sent() {
		t.Fatalf("Sent() = %d, yielded %d", s.Sent(), len(out))
	}
	return out
}

func TestConstantIsEvenlySpaced(t *testing.T) {
	got := collect(t, Constant(50, time.Second), 0)
	if len(got) != 50 {
		t.Fatalf("got %d requests, want 50", len(got))
	}
	for i, d := range got {
		want := time.Duration(i)*20*time.Millisecond + 10*time.Millisecond
		if diff := d - want; diff < -time.Microsecond || diff > time.Microsecond {
			t.Fatalf("request %d at %v, want %v", i, d, want)
		}
	}
}

func TestLimitStopsEarly(t *testing.T) {
	got := collect(t, Constant(1000, time.Hour), 7)
	if len(got) != 7 {
		t.Fatalf("got %d, want 7", len(got))
	}
}

// Every profile kind must offer, in every second, the number of requests its
// rate integrates to (within one, for the request straddling the boundary).
func TestProfilesOfferTheirIntegralPerSecond(t *testing.T) {
	cases := []struct {
		name  string
		p     Profile
		total int
	}{
		{"constant", Constant(200, 5*time.Second), 1000},
		{"ramp up", Ramp(0, 100, 10*time.Second), 500},
		{"ramp down", Ramp(100, 0, 10*time.Second), 500},
		{"step", Step(10, 20, 2*time.Second, 6*time.Second), 2*10 + 2*30 + 2*50},
		{"spike", Spike(10, 300, 2*time.Second, time.Second, 5*time.Second), 4*10 + 300},
		{"fractional rate", Constant(0.5, 10*time.Second), 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.p.Validate(); err != nil {
				t.Fatal(err)
			}
			got := collect(t, c.p, 0)
			if len(got) != c.total {
				t.Fatalf("total %d, want %d", len(got), c.total)
			}
			perSec := map[int]int{}
			for _, d := range got {
				perSec[int(d/time.Second)]++
			}
			for s := 0; s < int(c.p.Duration()/time.Second); s++ {
				want := c.p.Expected(time.Duration(s)*time.Second, time.Duration(s+1)*time.Second)
				if math.Abs(float64(perSec[s])-want) > 1 {
					t.Errorf("second %d: %d requests, want %.1f", s, perSec[s], want)
				}
			}
		})
	}
}

func TestZeroRateStretchSendsNothing(t *testing.T) {
	p := Profile{
		{Start: 0, End: time.Second, From: 10, To: 10},
		{Start: time.Second, End: 3 * time.Second, From: 0, To: 0},
		{Start: 3 * time.Second, End: 4 * time.Second, From: 10, To: 10},
	}
	for _, d := range collect(t, p, 0) {
		if d >= time.Second && d < 3*time.Second {
			t.Fatalf("request at %v inside the zero-rate stretch", d)
		}
	}
}

func TestRead(t *testing.T) {
	good := `# warm up, then an instant step
time,rate
0s,100
10s,100
10s,500
20,500
`
	p, err := Read(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if p.Duration() != 20*time.Second {
		t.Fatalf("duration %v", p.Duration())
	}
	for _, c := range []struct {
		at   time.Duration
		want float64
	}{{0, 100}, {9 * time.Second, 100}, {10 * time.Second, 500}, {19 * time.Second, 500}, {20 * time.Second, 0}} {
		if got := p.Rate(c.at); got != c.want {
			t.Errorf("Rate(%v) = %v, want %v", c.at, got, c.want)
		}
	}
	ramp, err := Read(strings.NewReader("0,0\n10s,100\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ramp.Rate(5 * time.Second); got != 50 {
		t.Errorf("linear interpolation: Rate(5s) = %v, want 50", got)
	}

	bad := map[string]string{
		"empty":          "",
		"one row":        "0,10\n",
		"three fields":   "0,10,3\n5,10\n",
		"bad rate":       "0,abc\n5,10\n",
		"negative rate":  "0,-1\n5,10\n",
		"bad time":       "0,1\nsoon,10\n",
		"time goes back": "0,1\n5s,10\n4s,10\n",
		"not from zero":  "1s,1\n5s,10\n",
		"all zero":       "0,0\n5s,0\n",
		"time overflows": "0,1\n1e300,10\n",
	}
	for name, text := range bad {
		if _, err := Read(strings.NewReader(text)); err == nil {
			t.Errorf("%s: accepted %q", name, text)
		}
	}
}

func TestExtend(t *testing.T) {
	p := Ramp(0, 100, 10*time.Second)
	short := p.Extend(5 * time.Second)
	if short.Duration() != 5*time.Second || short.Rate(4999*time.Millisecond) > 50 {
		t.Fatalf("cut: %+v", short)
	}
	long := p.Extend(15 * time.Second)
	if long.Duration() != 15*time.Second || long.Rate(12*time.Second) != 100 {
		t.Fatalf("held: %+v", long)
	}
}

func TestValidate(t *testing.T) {
	bad := []Profile{
		nil,
		Constant(0, time.Second),
		Constant(-1, time.Second),
		Constant(math.NaN(), time.Second),
		{{Start: time.Second, End: 2 * time.Second, From: 1, To: 1}},
	}
	for i, p := range bad {
		if p.Validate() == nil {
			t.Errorf("case %d: %+v accepted", i, p)
		}
	}
}

// A run lasts to the profile's end, a quiet tail included, unless the
// --requests limit ended it first.
func TestTail(t *testing.T) {
	start := time.Unix(1000, 0)
	tail := Profile{
		{Start: 0, End: 2 * time.Second, From: 10, To: 10},
		{Start: 2 * time.Second, End: 8 * time.Second, From: 0, To: 0},
	}
	cases := []struct {
		name  string
		p     Profile
		limit int64
		wait  bool
	}{
		{"no limit", tail, 0, true},
		{"limit above what the profile offers", tail, 50, true},
		{"limit reached", tail, 5, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := New(c.p, start, c.limit)
			for {
				if _, ok := s.Next(); !ok {
					break
				}
			}
			end, wait := s.Tail()
			if !end.Equal(start.Add(8*time.Second)) || wait != c.wait {
				t.Fatalf("Tail() = %v, %v; want %v, %v", end.Sub(start), wait, 8*time.Second, c.wait)
			}
		})
	}
}

// TestLongShapes: shapes whose step or spike reaches past the longest
// Duration end at d instead of overflowing into negative times.
func TestLongShapes(t *testing.T) {
	const forever = time.Duration(math.MaxInt64)
	cases := []struct {
		name string
		p    Profile
		segs int
	}{
		{"spike to the end", Spike(1, 5, time.Second, forever, time.Minute), 2},
		{"spike of negative length", Spike(1, 5, time.Second, -time.Second, time.Minute), 2},
		{"step longer than half the run", Step(1, 1, forever/2+1, forever), 2},
		{"step longer than the run", Step(1, 1, forever, time.Minute), 1},
	}
	for _, tc := range cases {
		if err := tc.p.Validate(); err != nil || len(tc.p) != tc.segs || tc.p.Duration() <= 0 {
			t.Errorf("%s: %d segments %+v, %v; want %d", tc.name, len(tc.p), tc.p, err, tc.segs)
		}
	}
}
