package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"lbscale/loadtest/measure"
)

// traceparentRE is a valid version-00 traceparent with the sampled flag.
var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-01$`)

// seenRequest is what a tracing server saw of one request.
type seenRequest struct {
	traceparents []string // every traceparent header line
	server       string   // the X-Server-Id that answered
	slow         bool
}

// traceServers are web servers that record the traceparent of each request
// they receive and answer every slowEvery-th (counted across all of them)
// after slowFor instead of at once.
type traceServers struct {
	mu   sync.Mutex
	seen []seenRequest
}

func (ts *traceServers) start(t *testing.T, id string, slowEvery int, slowFor time.Duration) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.mu.Lock()
		n := len(ts.seen) + 1
		slow := n%slowEvery == slowEvery/2
		ts.seen = append(ts.seen, seenRequest{traceparents: r.Header.Values("Traceparent"), server: id, slow: slow})
		ts.mu.Unlock()
		if slow {
			time.Sleep(slowFor)
		}
		w.Header().Set("X-Server-Id", id)
		fmt.Fprintf(w, "Hello from %s\n", id)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func (ts *traceServers) requests() []seenRequest {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]seenRequest(nil), ts.seen...)
}

// A traced run sends every request with its own valid traceparent, and the
// summary's slowest lists name exactly the requests the servers held back,
// by the trace ids the servers received.
func TestTraceListsTheSlowestRequests(t *testing.T) {
	const (
		requests  = 100
		slowEvery = 10 // 10 slow requests: exactly the overall list's length
		slowFor   = 400 * time.Millisecond
	)
	var ts traceServers
	a := ts.start(t, "web-a", slowEvery, slowFor)
	b := ts.start(t, "web-b", slowEvery, slowFor)
	urlOf := map[string]string{"web-a": a.URL, "web-b": b.URL}
	dir := t.TempDir()
	code, stdout, stderr := runCmd(t, "run", "--target", a.URL, "--target", b.URL,
		"--rate", "200", "--requests", fmt.Sprint(requests), "--trace", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}

	// Every request carried one valid traceparent, none repeated an id.
	byTrace := map[string]seenRequest{}
	parents := map[string]bool{}
	seen := ts.requests()
	if len(seen) != requests {
		t.Fatalf("servers saw %d requests, want %d", len(seen), requests)
	}
	for i, r := range seen {
		if len(r.traceparents) != 1 {
			t.Fatalf("request %d carried traceparent %q, want one", i, r.traceparents)
		}
		m := traceparentRE.FindStringSubmatch(r.traceparents[0])
		if m == nil || m[1] == strings.Repeat("0", 32) || m[2] == strings.Repeat("0", 16) {
			t.Fatalf("request %d: invalid traceparent %q", i, r.traceparents[0])
		}
		if _, dup := byTrace[m[1]]; dup || parents[m[2]] {
			t.Fatalf("request %d: traceparent %q repeats an id", i, r.traceparents[0])
		}
		byTrace[m[1]], parents[m[2]] = r, true
	}

	s := readSummary(t, dir)
	if !s.Settings.Trace {
		t.Error("settings do not record --trace")
	}
	// checkEntry holds one listed request to what its server saw.
	checkEntry := func(list string, e measure.SlowRequest) seenRequest {
		t.Helper()
		r, ok := byTrace[e.TraceID]
		if !ok {
			t.Fatalf("%s: trace id %s was never received", list, e.TraceID)
		}
		end := s.Start.Add(time.Duration(s.ElapsedS * float64(time.Second)))
		if e.Status != 200 || e.Outcome != "ok" || e.Backend != r.server || e.Target != urlOf[r.server] ||
			e.At.Before(s.Start) || e.At.After(end) {
			t.Errorf("%s: %+v, but %s answered it (run %v to %v)", list, e, r.server, s.Start, end)
		}
		if r.slow && e.LatencyMS < float64(slowFor/time.Millisecond) {
			t.Errorf("%s: slow request %s listed at %.1f ms", list, e.TraceID, e.LatencyMS)
		}
		return r
	}

	if len(s.Slowest) != measure.SlowestKept {
		t.Fatalf("%d slowest, want %d", len(s.Slowest), measure.SlowestKept)
	}
	for i, e := range s.Slowest {
		if r := checkEntry("slowest", e); !r.slow {
			t.Errorf("slowest[%d] = %s (%.1f ms) was not held back", i, e.TraceID, e.LatencyMS)
		}
		if i > 0 && e.LatencyMS > s.Slowest[i-1].LatencyMS {
			t.Errorf("slowest not in order: %v after %v", e.LatencyMS, s.Slowest[i-1].LatencyMS)
		}
	}

	// Per target: that target's slow requests first, then its fastest
	// others fill the list.
	for _, tg := range s.Targets {
		var sent, slow int
		for _, r := range seen {
			if urlOf[r.server] == tg.URL {
				sent++
				if r.slow {
					slow++
				}
			}
		}
		if len(tg.Slowest) != min(sent, measure.SlowestKept) {
			t.Fatalf("target %s: %d slowest of %d requests", tg.URL, len(tg.Slowest), sent)
		}
		for i, e := range tg.Slowest {
			r := checkEntry("target "+tg.URL, e)
			if e.Target != tg.URL || r.slow != (i < slow) {
				t.Errorf("target %s slowest[%d] = %+v (slow %v); the target had %d slow requests", tg.URL, i, e, r.slow, slow)
			}
		}
	}
	if !strings.Contains(stdout, "Slowest requests") || !strings.Contains(stdout, s.Slowest[0].TraceID) {
		t.Errorf("summary text lacks the slowest requests:\n%s", stdout)
	}
}

// Without --trace no traceparent is sent and summary.json has no slowest
// list (no key at all); in closed loop --trace works as in open loop.
func TestTraceOnlyWhenAsked(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		trace bool
	}{
		{"open loop", []string{"--rate", "100", "--requests", "20"}, false},
		{"closed loop", []string{"--users", "2", "--requests", "20"}, false},
		{"closed loop traced", []string{"--users", "2", "--requests", "20", "--trace"}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var ts traceServers
			srv := ts.start(t, "web-1", 1000, 0)
			dir := t.TempDir()
			code, stdout, stderr := runCmd(t, append([]string{"run", "--target", srv.URL, "--out", dir}, c.args...)...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			seen := ts.requests()
			if len(seen) != 20 {
				t.Fatalf("servers saw %d requests", len(seen))
			}
			for i, r := range seen {
				if c.trace != (len(r.traceparents) == 1) {
					t.Fatalf("request %d: traceparent %q (--trace %v)", i, r.traceparents, c.trace)
				}
			}
			raw, err := os.ReadFile(filepath.Join(dir, "summary.json"))
			if err != nil {
				t.Fatal(err)
			}
			hasKey := strings.Contains(string(raw), `"slowest"`)
			if hasKey != c.trace || strings.Contains(stdout, "Slowest") != c.trace {
				t.Fatalf("--trace %v, but slowest in summary.json %v:\n%s\n%s", c.trace, hasKey, raw, stdout)
			}
			if s := readSummary(t, dir); c.trace && len(s.Slowest) != measure.SlowestKept {
				t.Fatalf("%d slowest", len(s.Slowest))
			}
		})
	}
}
