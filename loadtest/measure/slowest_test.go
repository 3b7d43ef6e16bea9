package measure

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func traceID(b byte) TraceID { return TraceID{15: b} }

func TestSlowestKeepsTheNSlowest(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		name string
		n    int
		in   []time.Duration // offered in order; request i has trace id i+1
		want []byte          // trace ids kept, slowest first
	}{
		{"empty", 3, nil, nil},
		{"fewer than n, sorted", 3, []time.Duration{5 * ms, 9 * ms}, []byte{2, 1}},
		{"more than n", 3, []time.Duration{5 * ms, 1 * ms, 9 * ms, 7 * ms, 2 * ms, 8 * ms}, []byte{3, 6, 4}},
		{"ascending input", 2, []time.Duration{1 * ms, 2 * ms, 3 * ms, 4 * ms}, []byte{4, 3}},
		{"descending input", 2, []time.Duration{4 * ms, 3 * ms, 2 * ms, 1 * ms}, []byte{1, 2}},
		// Of equal latencies the first offered stays ahead and a later
		// equal one does not push it out.
		{"ties keep the first", 2, []time.Duration{5 * ms, 5 * ms, 5 * ms}, []byte{1, 2}},
		{"a tie enters behind", 3, []time.Duration{5 * ms, 9 * ms, 5 * ms}, []byte{2, 1, 3}},
		{"n zero keeps nothing", 0, []time.Duration{5 * ms}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSlowest(c.n)
			for i, d := range c.in {
				s.offer(slowReq{trace: traceID(byte(i + 1)), latency: d})
			}
			var got []byte
			for _, r := range s.reqs {
				got = append(got, r.trace[15])
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("kept %v, want %v", got, c.want)
			}
			if cap(s.reqs) != max(c.n, 0) {
				t.Errorf("capacity %d grew past %d", cap(s.reqs), c.n)
			}
		})
	}
}

// Once full, offering a request allocates nothing, slow or fast.
func TestSlowestOfferDoesNotAllocate(t *testing.T) {
	s := newSlowest(SlowestKept)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		s.offer(slowReq{trace: traceID(byte(i)), latency: time.Duration(i%37) * time.Millisecond})
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per offer", allocs)
	}
}

// The recorder keeps traced requests of every outcome but the run's own
// cancellations, overall and per target; untraced requests never appear.
func TestRecorderSlowestTraced(t *testing.T) {
	ms := time.Millisecond
	r := New(Config{Start: t0, Targets: []string{"http://a", "http://b"}})
	done := func(target int, due, latency time.Duration, o Outcome) {
		r.Dispatched(at(due), 0, target, false)
		r.Done(target, at(due), at(due+latency), o)
	}
	// Fast traced requests on both targets fill the lists.
	for i := range 2 * SlowestKept {
		done(i%2, time.Duration(i)*ms, 2*ms, Outcome{Kind: OK, Status: 200, Backend: "web-1", Trace: traceID(byte(100 + i))})
	}
	done(0, 30*ms, 500*ms, Outcome{Kind: OK, Status: 200, Backend: "web-1", Trace: traceID(1)})
	done(1, 40*ms, 700*ms, Outcome{Kind: Status, Status: 503, Trace: traceID(2)})
	done(1, 50*ms, 900*ms, Outcome{Kind: Timeout, Trace: traceID(3)})
	// Slower still, but not candidates: untraced, or canceled by the stop.
	done(0, 60*ms, 5*time.Second, Outcome{Kind: OK, Status: 200})
	done(0, 70*ms, 6*time.Second, Outcome{Kind: Canceled, Trace: traceID(4)})

	rep := r.Report()
	if len(rep.Slowest) != SlowestKept {
		t.Fatalf("%d slowest, want %d", len(rep.Slowest), SlowestKept)
	}
	want := []SlowRequest{
		{TraceID: traceID(3).String(), LatencyMS: 900, Status: 0, Outcome: "timeout", Target: "http://b", At: at(50 * ms)},
		{TraceID: traceID(2).String(), LatencyMS: 700, Status: 503, Outcome: "status_503", Target: "http://b", At: at(40 * ms)},
		{TraceID: traceID(1).String(), LatencyMS: 500, Status: 200, Outcome: "ok", Target: "http://a", Backend: "web-1", At: at(30 * ms)},
	}
	if !reflect.DeepEqual(rep.Slowest[:3], want) {
		t.Errorf("slowest\n got %+v\nwant %+v", rep.Slowest[:3], want)
	}
	for _, s := range rep.Slowest[3:] {
		if s.LatencyMS != 2 {
			t.Errorf("filler %+v, want a 2 ms request", s)
		}
	}
	if a := rep.Targets[0].Slowest; len(a) != SlowestKept || a[0].TraceID != traceID(1).String() || a[1].LatencyMS != 2 {
		t.Errorf("target a slowest %+v", a)
	}
	if b := rep.Targets[1].Slowest; len(b) != SlowestKept || b[0].TraceID != traceID(3).String() || b[1].TraceID != traceID(2).String() {
		t.Errorf("target b slowest %+v", b)
	}
	if id := traceID(0xab).String(); id != "000000000000000000000000000000ab" {
		t.Errorf("trace id string %q", id)
	}
}

// Without tracing there is no slowest list: no key in the JSON at all.
func TestRecorderUntracedHasNoSlowest(t *testing.T) {
	r := New(Config{Start: t0, Targets: []string{"http://a"}})
	r.Dispatched(at(0), 0, 0, false)
	r.Done(0, at(0), at(time.Second), Outcome{Kind: OK, Status: 200})
	rep := r.Report()
	if rep.Slowest != nil || rep.Targets[0].Slowest != nil {
		t.Fatalf("slowest %v / %v without tracing", rep.Slowest, rep.Targets[0].Slowest)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "slowest") {
		t.Fatalf("untraced report mentions slowest: %s", b)
	}
}
