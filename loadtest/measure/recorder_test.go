package measure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"syscall"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestRecorderAttributesBySecond(t *testing.T) {
	r := New(Config{Start: t0, Targets: []string{"a", "b"}})
	ms := time.Millisecond
	// Due in second 0, answered in second 2: offered/sent count in 0,
	// ok and latency in 2.
	r.Dispatched(at(100*ms), 0, 0, false)
	r.Done(0, at(100*ms), at(2100*ms), Outcome{Kind: OK, Status: 200, Backend: "web-1"})
	// Due in second 1, left 50 ms late, answered 503 in second 1.
	r.Dispatched(at(1000*ms), 50*ms, 1, false)
	r.Done(1, at(1000*ms), at(1001*ms), Outcome{Kind: Status, Status: 503})
	// Due in second 1, dropped at the cap.
	r.Dispatched(at(1500*ms), 0, 1, true)
	// Ten fast answers in second 2 from web-2.
	for i := range 10 {
		due := at(2000*ms + time.Duration(i)*ms)
		r.Dispatched(due, 0, 0, false)
		r.Done(0, due, due.Add(5*ms), Outcome{Kind: OK, Status: 200, Backend: "web-2"})
	}
	r.Dispatched(at(2500*ms), 0, 1, false)
	r.Done(1, at(2500*ms), at(2600*ms), Outcome{Kind: Connection})
	r.Tick(at(3500 * ms))
	secs := r.Closed(at(3500 * ms))
	if len(secs) != 3 {
		t.Fatalf("%d closed seconds, want 3", len(secs))
	}
	want := []Second{
		{Offered: 1, Sent: 1},
		{Offered: 2, Sent: 1, Dropped: 1, Late: 1, Failed: 1, ErrStatus: 1, ByStatus: map[int]int64{503: 1}},
		{Offered: 11, Sent: 11, OK: 11, Failed: 1, ErrConnection: 1},
	}
	for i, w := range want {
		g := secs[i]
		g.P50, g.P90, g.P99, g.P999, g.Max = 0, 0, 0, 0, 0
		if !reflect.DeepEqual(g, w) {
			t.Errorf("second %d: got %+v, want %+v", i, g, w)
		}
	}
	if secs[0].P99 != 0 || secs[1].P99 != 0 {
		t.Errorf("latency in seconds with no success: %+v %+v", secs[0], secs[1])
	}
	if p50, max := secs[2].P50, secs[2].Max; p50 < 4990*time.Microsecond || p50 > 5010*time.Microsecond || max < 1990*ms || max > 2010*ms {
		t.Errorf("second 2 latency: p50 %v max %v, want ~5ms and ~2s", p50, max)
	}

	rep := r.Report()
	tot := rep.Totals
	if tot.Offered != 14 || tot.Sent != 13 || tot.Dropped != 1 || tot.Late != 1 || tot.OK != 11 || tot.Failed != 2 {
		t.Errorf("totals %+v", tot)
	}
	if rep.Errors["status_503"] != 1 || rep.Errors["connection"] != 1 || len(rep.Errors) != 2 {
		t.Errorf("errors %v", rep.Errors)
	}
	if rep.Targets[0].URL != "a" || rep.Targets[0].OK != 11 || rep.Targets[1].Dropped != 1 || rep.Targets[1].Failed != 2 {
		t.Errorf("targets %+v", rep.Targets)
	}
	// Backends: "" (the 503 without X-Server-Id), web-1, web-2; the share
	// is among responses that named a backend.
	if len(rep.Backends) != 3 {
		t.Fatalf("backends %+v", rep.Backends)
	}
	b := map[string]BackendSummary{}
	for _, x := range rep.Backends {
		b[x.ID] = x
	}
	if b["web-2"].Requests != 10 || b["web-1"].Requests != 1 || b[""].Failed != 1 {
		t.Errorf("backends %+v", rep.Backends)
	}
	if s := b["web-2"].Share; s < 0.909 || s > 0.910 {
		t.Errorf("web-2 share %v, want 10/11", s)
	}
}

func TestRecorderLatencyIsHonestAndClamped(t *testing.T) {
	r := New(Config{Start: t0, Targets: []string{"a"}, MaxLatency: 10 * time.Second})
	for i := range 1000 {
		due := at(time.Duration(i) * time.Millisecond)
		r.Dispatched(due, 0, 0, false)
		d := time.Millisecond
		if i >= 990 { // the slowest 1%
			d = 500 * time.Millisecond
		}
		if i == 999 {
			d = time.Minute // beyond MaxLatency: clamped, not lost
		}
		r.Done(0, due, due.Add(d), Outcome{Kind: OK, Backend: "x"})
	}
	l := r.Report().Latency
	if l.Count != 1000 {
		t.Fatalf("count %d", l.Count)
	}
	if l.P50 < 0.99 || l.P50 > 1.01 {
		t.Errorf("p50 %v ms, want 1", l.P50)
	}
	if l.P999 < 499 || l.P999 > 501 {
		t.Errorf("p99.9 %v ms, want 500", l.P999)
	}
	if l.Max < 9990 || l.Max > 10010 {
		t.Errorf("max %v ms, want the 10 s clamp", l.Max)
	}
}

func TestRecorderSecondsWithoutTrafficGetRows(t *testing.T) {
	r := New(Config{Start: t0, Targets: []string{"a"}})
	r.Tick(at(5 * time.Second))
	if got := len(r.Closed(at(5 * time.Second))); got != 5 {
		t.Fatalf("%d rows, want 5", got)
	}
	if got := len(r.Finish()); got != 5 {
		t.Fatalf("Finish: %d rows, want 5", got)
	}
}

// Completions arriving long after their second closed still count, they just
// stay out of that second's percentiles.
func TestRecorderStaleCompletion(t *testing.T) {
	r := New(Config{Start: t0, Targets: []string{"a"}})
	r.Dispatched(at(0), 0, 0, false)
	r.Done(0, at(0), at(9*time.Second), Outcome{Kind: OK})
	r.Dispatched(at(0), 0, 0, false)
	r.Done(0, at(0), at(time.Second), Outcome{Kind: OK}) // slot of second 1 is now second 9's
	secs := r.Finish()
	if secs[1].OK != 1 || secs[9].OK != 1 || secs[9].P50 < 8*time.Second {
		t.Fatalf("rows %+v / %+v", secs[1], secs[9])
	}
	if r.Report().Latency.Count != 2 {
		t.Fatal("stale completion missing from the overall histogram")
	}
}

// A completion stamped in a second that Tick has already closed must not
// replace that second's percentiles with its own value.
func TestRecorderLateCompletionKeepsClosedSecond(t *testing.T) {
	r := New(Config{Start: t0, Targets: []string{"a"}})
	for range 99 {
		r.Dispatched(at(0), 0, 0, false)
		r.Done(0, at(0), at(5*time.Millisecond), Outcome{Kind: OK})
	}
	r.Tick(at(time.Second))
	r.Dispatched(at(0), 0, 0, false)
	r.Done(0, at(0), at(900*time.Millisecond), Outcome{Kind: OK}) // stamped before the Tick
	r.Tick(at(2 * time.Second))
	secs := r.Finish()
	if secs[0].OK != 100 || secs[0].P50 > 10*time.Millisecond || secs[0].P99 > 10*time.Millisecond {
		t.Fatalf("second 0: ok %d p50 %v p99 %v; want 100 ok and the 99 fast ones' percentiles", secs[0].OK, secs[0].P50, secs[0].P99)
	}
	if r.Report().Latency.Count != 100 {
		t.Fatal("late completion missing from the overall histogram")
	}
}

func TestClassify(t *testing.T) {
	// A real refused connection: listen, take the port, close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, refused := http.Get("http://" + addr)

	cases := []struct {
		status int
		err    error
		want   Kind
	}{
		{200, nil, OK},
		{301, nil, OK},
		{404, nil, Status},
		{503, nil, Status},
		{0, refused, Refused},
		{0, &url.Error{Op: "Get", URL: "x", Err: io.EOF}, Connection},
		{0, fmt.Errorf("read: %w", syscall.ECONNRESET), Connection},
		// net/http's own words for a fresh connection closed by the peer
		// before the request went out (its error value is unexported).
		{0, &url.Error{Op: "Get", URL: "x", Err: errors.New("http: server closed idle connection")}, Connection},
		{0, context.DeadlineExceeded, Timeout},
		{0, &url.Error{Op: "Get", URL: "x", Err: timeoutErr{}}, Timeout},
		{0, context.Canceled, Canceled},
		{0, errors.New("mystery"), Other},
	}
	for _, c := range cases {
		if got := Classify(c.status, c.err); got != c.want {
			t.Errorf("Classify(%d, %v) = %v, want %v", c.status, c.err, got, c.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }
