package drive

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"
	"time"

	"lbscale/loadtest/measure"
)

// validTraceparent is a version-00, sampled traceparent with lower-case hex ids.
var validTraceparent = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-01$`)

func TestFormatTraceparent(t *testing.T) {
	cases := []struct {
		id     measure.TraceID
		parent uint64
		want   string
	}{
		// The example of the W3C specification, with the sampled flag.
		{
			measure.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
			0x00f067aa0ba902b7,
			"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		},
		{measure.TraceID{15: 1}, 1, "00-00000000000000000000000000000001-0000000000000001-01"},
		{
			measure.TraceID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
			^uint64(0),
			"00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01",
		},
	}
	var buf [traceparentLen]byte
	for _, c := range cases {
		if got := formatTraceparent(&buf, c.id, c.parent); got != c.want {
			t.Errorf("formatTraceparent(%x, %x) = %q, want %q", c.id, c.parent, got, c.want)
		}
	}
}

// Every value is valid, carries the trace id returned beside it, and is
// fresh; the string is the only allocation.
func TestTraceparentsFresh(t *testing.T) {
	tp := newTraceparents()
	traces, parents := map[string]bool{}, map[string]bool{}
	for range 10000 {
		v, id := tp.next()
		m := validTraceparent.FindStringSubmatch(v)
		if m == nil {
			t.Fatalf("invalid traceparent %q", v)
		}
		if m[1] != id.String() || id.IsZero() {
			t.Fatalf("value %q, trace id %s", v, id)
		}
		if traces[m[1]] || parents[m[2]] {
			t.Fatalf("repeated id in %q", v)
		}
		traces[m[1]], parents[m[2]] = true, true
	}
	if allocs := testing.AllocsPerRun(1000, func() { tp.next() }); allocs > 1 {
		t.Errorf("%v allocations per traceparent, want 1", allocs)
	}
}

// A traced requester sends each request with its own traceparent and
// reports its trace id; an untraced one sends none and reports zero.
func TestRequesterTraceparent(t *testing.T) {
	var mu sync.Mutex
	var seen [][]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Values("traceparent"))
		mu.Unlock()
	}))
	defer srv.Close()
	for _, trace := range []bool{true, false} {
		seen = nil
		h := NewHTTP(HTTPConfig{Targets: []string{srv.URL, srv.URL + "/b"}, Timeout: 5 * time.Second, KeepAlive: true, Conns: 1, Trace: trace})
		do := h.Requester()
		var outs []measure.Outcome
		for i := range 6 {
			outs = append(outs, do(i%2))
		}
		h.Close()
		for i, vals := range seen {
			switch {
			case !trace && (len(vals) != 0 || !outs[i].Trace.IsZero()):
				t.Errorf("untraced request %d: header %q, trace %s", i, vals, outs[i].Trace)
			case trace && (len(vals) != 1 || !validTraceparent.MatchString(vals[0])):
				t.Errorf("traced request %d: header %q", i, vals)
			case trace && vals[0][3:35] != outs[i].Trace.String():
				t.Errorf("request %d sent %q, reported %s", i, vals[0], outs[i].Trace)
			case trace && i > 0 && vals[0] == seen[i-1][0]:
				t.Errorf("request %d repeated %q", i, vals[0])
			}
		}
		if len(seen) != 6 {
			t.Fatalf("server saw %d requests", len(seen))
		}
	}
}
