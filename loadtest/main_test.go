package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"lbscale/loadtest/report"
	"lbscale/loadtest/saturate"
)

// webServer answers like lbscale's web server: a greeting and X-Server-Id.
func webServer(t *testing.T, id string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("X-Server-Id", id)
		fmt.Fprintf(w, "Hello from %s\n", id)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// closedURL is an address nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestBadInputExits2(t *testing.T) {
	srv, hits := webServer(t, "web-1")
	u := srv.URL
	dir := t.TempDir()
	malformed := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(malformed, []byte("0,10\nsoon,20\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{nil, "usage"},
		{[]string{"bogus"}, "unknown command"},
		{[]string{"run", "--nope"}, "flag provided but not defined"},
		{[]string{"run", "--rate", "10"}, "missing --target"},
		{[]string{"run", "--target", "not-a-url", "--rate", "10"}, "scheme must be http"},
		{[]string{"run", "--target", "ftp://h/", "--rate", "10"}, "scheme must be http"},
		{[]string{"run", "--target", "http://", "--rate", "10"}, "no host"},
		{[]string{"run", "--target", u + "=0", "--rate", "10"}, "positive integer"},
		{[]string{"run", "--target", u + "=-2", "--rate", "10"}, "positive integer"},
		{[]string{"run", "--target", u, "--rate", "0"}, "--rate must be > 0"},
		{[]string{"run", "--target", u, "--rate", "-5"}, "--rate must be > 0"},
		{[]string{"run", "--target", u, "--rate", "NaN"}, "--rate must be > 0"},
		{[]string{"run", "--target", u, "--rate", "fast"}, "invalid value"},
		{[]string{"run", "--target", u}, "missing --rate"},
		{[]string{"run", "--target", u, "--profile-file", filepath.Join(dir, "missing.csv")}, "profile file"},
		{[]string{"run", "--target", u, "--profile-file", malformed}, "line 2"},
		{[]string{"run", "--target", u, "--rate", "10", "--users", "3"}, "excludes"},
		{[]string{"run", "--target", u, "--users", "-1"}, "--users must be > 0"},
		{[]string{"run", "--target", u, "--rate", "10", "--duration", "-1s"}, "--duration must be > 0"},
		{[]string{"run", "--target", u, "--rate", "10", "--duration", "soon"}, "invalid value"},
		{[]string{"run", "--target", u, "--rate", "10", "--requests", "0"}, "--requests must be > 0"},
		{[]string{"run", "--target", u, "--rate", "10", "--profile", "zigzag", "--duration", "1s"}, "want constant, step"},
		{[]string{"run", "--target", u, "--rate", "10", "--profile", "ramp", "--duration", "1s"}, "--rate-to"},
		{[]string{"run", "--target", u, "--rate", "10", "--profile", "spike"}, "needs --duration"},
		{[]string{"run", "--target", u, "--rate", "10", "--timeout", "0s"}, "--timeout must be > 0"},
		{[]string{"run", "--target", u, "--rate", "10", "--concurrency", "0"}, "--concurrency must be > 0"},
		{[]string{"run", "--target", u, "--rate", "10", "--status", "nope"}, "status"},
		{[]string{"run", "--target", u, "--rate", "10", "--header", "novalue"}, "Name: value"},
		{[]string{"run", "--target", u, "--rate", "10", "--method", "BAD METHOD"}, "invalid method"},
		{[]string{"run", "--target", u, "--rate", "10", "extra"}, "unexpected argument"},
		{[]string{"run", "--target", u, "--rate", "10", "--think", "1s"}, "--users"},
		{[]string{"run", "--target", u, "--rate", "10", "--rate-to", "50"}, "--profile ramp only"},
		{[]string{"run", "--target", u, "--rate", "10", "--profile", "ramp", "--rate-to", "5", "--duration", "1s", "--spike-at", "1s"}, "--profile spike only"},
		{[]string{"run", "--target", u, "--rate", "10", "--duration", "3s", "--profile", "spike", "--spike-at", "10s"}, "not within"},
		{[]string{"run", "--target", u, "--rate", "10", "--profile-file", malformed}, "exclude each other"},
		{[]string{"run", "--target", u, "--users", "2", "--concurrency", "5"}, "excludes --concurrency"},
		{[]string{"run", "--target", u, "--rate", "10", "--trace", "--header", "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}, "--trace excludes --header traceparent"},
		{[]string{"run", "--target", u, "--rate", "10", "--out", filepath.Join(malformed, "sub")}, "--out"},
		{[]string{"saturate", "--target", u, "--slo", "100ms", "--out", filepath.Join(malformed, "sub")}, "--out"},
		{[]string{"run", "--target", u, "--rate", "1e9", "--duration", "1s"}, "above"},
		{[]string{"run", "--target", u, "--rate", "10", "--profile", "ramp", "--rate-to", "5e6", "--duration", "1s"}, "above"},
		{[]string{"saturate", "--target", u, "--slo", "100ms", "--max-rate", "1e7"}, "--max-rate"},
		{[]string{"saturate", "--target", u}, "missing --slo"},
		{[]string{"saturate", "--slo", "100ms"}, "missing --target"},
		{[]string{"saturate", "--target", u, "--slo", "100ms", "--max-errors", "2"}, "--max-errors"},
		{[]string{"saturate", "--target", u, "--slo", "100ms", "--step-factor", "1"}, "--step-factor"},
		{[]string{"saturate", "--target", u, "--slo", "100ms", "--start", "0"}, "--start"},
	}
	for _, c := range cases {
		code, _, stderr := runCmd(t, c.args...)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %q)", c.args, code, stderr)
			continue
		}
		if !strings.Contains(stderr, c.want) {
			t.Errorf("%q: stderr %q does not mention %q", c.args, stderr, c.want)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("bad input still sent %d requests", n)
	}
	for _, help := range [][]string{{"help"}, {"run", "-h"}, {"saturate", "--help"}} {
		if code, _, _ := runCmd(t, help...); code != 0 {
			t.Errorf("%q: exit %d, want 0", help, code)
		}
	}
}

// The real process: exit status 2 and a message, as scripts see it.
func TestBinaryExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "loadtest")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "run", "--target", "http://127.0.0.1:1=0", "--rate", "5")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("exit: %v, want status 2", err)
	}
	if !strings.Contains(stderr.String(), "weight") {
		t.Fatalf("stderr %q", stderr.String())
	}

	srv, hits := webServer(t, "web-1")
	out, err := exec.Command(bin, "run", "--target", srv.URL, "--rate", "50", "--requests", "20").Output()
	if err != nil {
		t.Fatalf("good run: %v", err)
	}
	if hits.Load() != 20 || !strings.Contains(string(out), "ok 20 (100.00%)") {
		t.Fatalf("hits %d, stdout:\n%s", hits.Load(), out)
	}
}

// statusServer serves /status with one more replica every few polls.
func statusServer(t *testing.T) *httptest.Server {
	t.Helper()
	var polls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := polls.Add(1)
		replicas := 1 + n/4
		var backends []string
		for i := int64(1); i <= replicas; i++ {
			backends = append(backends, fmt.Sprintf(`{"id":"web-%d","addr":"10.0.0.%d:8080","state":"ready","inflight_local":%d,"inflight_cluster":%d,"last_seen":null}`, i, i, i, 2*i))
		}
		fmt.Fprintf(w, `{"replicas":%d,"backends":[%s]}`, replicas, strings.Join(backends, ","))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A run with --status prints the live dashboard's URL when the status
// document names one.
func TestRunPrintsDashboard(t *testing.T) {
	a, _ := webServer(t, "web-a")
	st := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"replicas":1,"backends":[],"dashboard":"/"}`)
	}))
	t.Cleanup(st.Close)
	code, _, stderr := runCmd(t, "run", "--target", a.URL, "--rate", "10", "--requests", "3", "--status", st.URL+"/status")
	if want := "live dashboard at " + st.URL + "/\n"; code != 0 || !strings.Contains(stderr, want) {
		t.Fatalf("exit %d, stderr %q: want %q", code, stderr, want)
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rows
}

func readSummary(t *testing.T, dir string) report.Summary {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s report.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("summary.json: %v", err)
	}
	return s
}

// A small real run with two weighted targets and two /status sources (one
// down) writes every output file with sensible content.
func TestRunWritesOutputs(t *testing.T) {
	a, aHits := webServer(t, "web-a")
	b, bHits := webServer(t, "web-b")
	st := statusServer(t)
	dead := closedURL(t)
	dir := filepath.Join(t.TempDir(), "out")
	code, stdout, stderr := runCmd(t, "run",
		"--target", a.URL+"=3", "--target", b.URL+"=1",
		"--rate", "100", "--duration", "2s",
		"--status", st.URL+"/status", "--status", dead+"/status", "--status-interval", "200ms",
		"--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stderr != "" {
		t.Errorf("stderr not quiet off a terminal: %q", stderr)
	}
	for _, want := range []string{"Latency", "Backends (X-Server-Id)", "web-a", "Replicas", "Targets"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout)
		}
	}
	if aHits.Load() != 150 || bHits.Load() != 50 {
		t.Errorf("hits a=%d b=%d, want 150/50", aHits.Load(), bHits.Load())
	}

	s := readSummary(t, dir)
	if s.Totals.Offered != 200 || s.Totals.OK != 200 || s.Totals.Dropped != 0 {
		t.Errorf("totals %+v", s.Totals)
	}
	if s.OfferedRPS < 99 || s.OfferedRPS > 101 {
		t.Errorf("offered rate %.2f, want 100", s.OfferedRPS)
	}
	if len(s.Targets) != 2 || s.Targets[0].Weight != 3 || s.Targets[0].OK != 150 || s.Targets[1].Backends["web-b"] != 50 {
		t.Errorf("targets %+v", s.Targets)
	}
	if s.Status == nil || s.Status.Gaps == 0 || s.Status.Samples <= s.Status.Gaps || s.Status.MaxReplicas == nil || *s.Status.MaxReplicas < 2 {
		t.Errorf("status %+v: want samples, gaps from the dead source, and a scale-up", s.Status)
	}
	if s.Latency.Count != 200 || s.Latency.P50 <= 0 || s.Latency.Max < s.Latency.P99 {
		t.Errorf("latency %+v", s.Latency)
	}

	ts := readCSV(t, filepath.Join(dir, "timeseries.csv"))
	if strings.Join(ts[0], ",") != strings.Join(report.TimeseriesHeader, ",") {
		t.Fatalf("header %v", ts[0])
	}
	col := map[string]int{}
	for i, name := range ts[0] {
		col[name] = i
	}
	var offered, ok int
	withReplicas := 0
	for _, row := range ts[1:] {
		o, _ := strconv.Atoi(row[col["offered"]])
		k, _ := strconv.Atoi(row[col["achieved"]])
		offered, ok = offered+o, ok+k
		if row[col["replicas"]] != "" {
			withReplicas++
		}
	}
	if len(ts) < 3 || offered != 200 || ok != 200 || withReplicas < 2 {
		t.Errorf("timeseries: %d rows, offered %d, achieved %d, %d rows with replicas", len(ts)-1, offered, ok, withReplicas)
	}

	bk := readCSV(t, filepath.Join(dir, "backends.csv"))
	if len(bk) != 3 || bk[1][0] != "web-a" || bk[1][1] != "150" || bk[2][2] != "0.2500" {
		t.Errorf("backends.csv %v", bk)
	}
	sc := readCSV(t, filepath.Join(dir, "status.csv"))
	gaps, backendRows := 0, 0
	for _, row := range sc[1:] {
		if row[2] == "false" {
			gaps++
		} else if row[5] != "" {
			backendRows++
		}
	}
	if gaps == 0 || backendRows == 0 {
		t.Errorf("status.csv: %d gap rows, %d backend rows", gaps, backendRows)
	}

	for _, name := range []string{"replicas.png", "latency.png", "backends.png"} {
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() < 5000 {
			t.Errorf("%s: only %d bytes", name, fi.Size())
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Errorf("%s: not a PNG: %v", name, err)
		} else if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 300 {
			t.Errorf("%s: %v", name, b)
		}
	}
}

// An unreachable target is a result, not bad input: exit 0, every request
// refused (nothing listens).
func TestUnreachableTargetCountsConnectionErrors(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := runCmd(t, "run", "--target", closedURL(t), "--rate", "50", "--requests", "25", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	s := readSummary(t, dir)
	if s.Totals.Offered != 25 || s.Errors["refused"] != 25 || s.Totals.OK != 0 || s.ErrorRatio != 1 {
		t.Fatalf("summary %+v errors %v", s.Totals, s.Errors)
	}
	if !strings.Contains(stdout, "refused 25") {
		t.Errorf("summary text lacks the errors:\n%s", stdout)
	}
}

func TestClosedLoopRun(t *testing.T) {
	srv, hits := webServer(t, "web-1")
	dir := t.TempDir()
	code, stdout, stderr := runCmd(t, "run", "--target", srv.URL, "--users", "3", "--requests", "30", "--keepalive=false", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	s := readSummary(t, dir)
	if hits.Load() != 30 || s.Totals.Sent != 30 || s.Settings.Mode != "closed" || s.Settings.Users != 3 || s.Settings.KeepAlive {
		t.Fatalf("hits %d, summary %+v %+v", hits.Load(), s.Totals, s.Settings)
	}
	if !strings.Contains(stdout, "closed loop, 3 users") {
		t.Errorf("stdout:\n%s", stdout)
	}
}

func TestProfileFileRun(t *testing.T) {
	srv, hits := webServer(t, "web-1")
	dir := t.TempDir()
	prof := filepath.Join(dir, "profile.csv")
	// 40 req/s for 0.5 s, then an instant step to 120 req/s for 0.5 s:
	// 20 + 60 requests.
	if err := os.WriteFile(prof, []byte("time,rate\n0s,40\n500ms,40\n500ms,120\n1s,120\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCmd(t, "run", "--target", srv.URL, "--profile-file", prof, "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if s := readSummary(t, dir); s.Totals.Offered != 80 || hits.Load() != 80 {
		t.Fatalf("offered %d, hits %d, want 80", s.Totals.Offered, hits.Load())
	}
}

// saturate against a server that serves 4 requests at a time in 20 ms each
// (200 req/s at most) finds a knee: some rate passes, a higher one fails.
func TestSaturateFindsTheKnee(t *testing.T) {
	slots := make(chan struct{}, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slots <- struct{}{}
		time.Sleep(20 * time.Millisecond)
		<-slots
		w.Header().Set("X-Server-Id", "web-1")
	}))
	defer srv.Close()
	dir := t.TempDir()
	code, stdout, stderr := runCmd(t, "saturate", "--target", srv.URL, "--slo", "250ms",
		"--start", "50", "--step-factor", "2", "--step-duration", "1s", "--refine", "0", "--timeout", "5s", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	b, err := os.ReadFile(filepath.Join(dir, "saturate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Result saturate.Result `json:"result"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	r := doc.Result
	if r.Sustainable < 50 || r.Sustainable >= 400 || r.Breaking <= r.Sustainable || r.Breaking > 800 {
		t.Fatalf("result %+v; stdout:\n%s", r, stdout)
	}
	if !strings.Contains(stdout, "highest sustainable rate") {
		t.Errorf("stdout:\n%s", stdout)
	}
}

func TestProgressOnlyOnTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if newProgress(f) != nil {
		t.Error("progress on a regular file")
	}
	if newProgress(&bytes.Buffer{}) != nil {
		t.Error("progress on a buffer")
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	if newProgress(devnull) != nil {
		t.Error("progress on /dev/null (a character device, not a terminal)")
	}
}

// The admin token comes from the environment but is never echoed in usage
// or error messages.
func TestAdminTokenNotPrinted(t *testing.T) {
	t.Setenv("ADMIN_TOKEN", "s3cr3t-token")
	for _, args := range [][]string{{"run", "--nope"}, {"run", "-h"}, {"saturate", "--bogus"}} {
		_, stdout, stderr := runCmd(t, args...)
		if strings.Contains(stdout+stderr, "s3cr3t") {
			t.Fatalf("%q printed the token: %q", args, stdout+stderr)
		}
	}
}

func TestFitWidth(t *testing.T) {
	cases := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 80, "short"},
		{"0123456789", 4, "0123"},
		{"p99 12µs in flight", 8, "p99 12µs"},
	}
	for _, c := range cases {
		if got := fitWidth(c.in, c.n); got != c.want {
			t.Errorf("fitWidth(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}
