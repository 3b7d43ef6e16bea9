// Package report turns a finished run into the files and text users read:
// timeseries.csv, summary.json, backends.csv, status.csv and the summary
// table printed at the end of a run.
package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"lbscale/loadtest/measure"
	"lbscale/loadtest/status"
)

// Target is a --target as the user gave it.
type Target struct {
	URL    string `json:"url"`
	Weight int    `json:"weight"`
}

// Settings records how the run was driven, for the summary's reader.
type Settings struct {
	Mode        string        `json:"mode"`              // "open" or "closed"
	Profile     string        `json:"profile,omitempty"` // e.g. "constant 500/s"
	Users       int           `json:"users,omitempty"`
	Requests    int64         `json:"requests,omitempty"`
	Duration    time.Duration `json:"-"`
	DurationS   float64       `json:"duration_s,omitempty"`
	Concurrency int           `json:"concurrency,omitempty"`
	Timeout     time.Duration `json:"-"`
	TimeoutS    float64       `json:"timeout_s"`
	KeepAlive   bool          `json:"keep_alive"`
	Targets     []Target      `json:"targets"`
	StatusURLs  []string      `json:"status_urls,omitempty"`
	Trace       bool          `json:"trace,omitempty"` // traceparent sent (--trace)
}

// Run is everything measured in one run.
type Run struct {
	Settings Settings
	Start    time.Time
	// Window is how long requests were being offered: the profile's length,
	// or less if the run was stopped or hit --requests.
	Window time.Duration
	// End is when the last request completed (or Start+Window if later).
	End     time.Time
	Seconds []measure.Second
	Report  measure.Report
	Samples []status.Sample
	Points  []status.Point // one per element of Seconds
}

// Summary is summary.json.
type Summary struct {
	Settings     Settings                 `json:"settings"`
	Start        time.Time                `json:"start"`
	WindowS      float64                  `json:"window_s"`
	ElapsedS     float64                  `json:"elapsed_s"`
	OfferedRPS   float64                  `json:"offered_rps"`
	SentRPS      float64                  `json:"sent_rps"`
	AchievedRPS  float64                  `json:"achieved_rps"`
	SuccessRatio float64                  `json:"success_ratio"` // ok / offered
	ErrorRatio   float64                  `json:"error_ratio"`   // (failed + dropped) / offered
	Totals       measure.Totals           `json:"totals"`
	Latency      measure.Latency          `json:"latency"`
	SendLag      measure.Latency          `json:"send_lag"`
	Errors       map[string]int64         `json:"errors"`
	Targets      []TargetSummary          `json:"targets"`
	Backends     []measure.BackendSummary `json:"backends"`
	Status       *StatusSummary           `json:"status,omitempty"`
	// Slowest are the slowest traced requests, slowest first, each with
	// its trace id to look up; absent without --trace. Each target has
	// its own list too.
	Slowest []measure.SlowRequest `json:"slowest,omitempty"`
}

// TargetSummary is a target's results with its weight.
type TargetSummary struct {
	Weight int `json:"weight"`
	measure.TargetSummary
}

// StatusSummary describes the /status samples.
//
// The replica figures are null when no sample succeeded: 0 would claim an
// empty pool that nobody observed.
type StatusSummary struct {
	Samples       int  `json:"samples"`
	Gaps          int  `json:"gaps"` // failed samples
	MinReplicas   *int `json:"min_replicas"`
	MaxReplicas   *int `json:"max_replicas"`
	FinalReplicas *int `json:"final_replicas"`
	// MaxInflight is the largest cluster in-flight count seen in a second.
	MaxInflight int64 `json:"max_inflight"`
}

// Summarise computes summary.json's content.
func (r *Run) Summarise() Summary {
	rep := r.Report
	elapsed := r.End.Sub(r.Start)
	s := Summary{
		Settings: r.Settings,
		Start:    r.Start,
		WindowS:  r.Window.Seconds(),
		ElapsedS: elapsed.Seconds(),
		Totals:   rep.Totals,
		Latency:  rep.Latency,
		SendLag:  rep.SendLag,
		Errors:   rep.Errors,
		Backends: rep.Backends,
		Slowest:  rep.Slowest,
	}
	s.Settings.DurationS = r.Settings.Duration.Seconds()
	s.Settings.TimeoutS = r.Settings.Timeout.Seconds()
	if w := r.Window.Seconds(); w > 0 {
		s.OfferedRPS = float64(rep.Totals.Offered) / w
		s.SentRPS = float64(rep.Totals.Sent) / w
	}
	if e := elapsed.Seconds(); e > 0 {
		s.AchievedRPS = float64(rep.Totals.OK) / e
	}
	if o := float64(rep.Totals.Offered); o > 0 {
		s.SuccessRatio = float64(rep.Totals.OK) / o
		s.ErrorRatio = float64(rep.Totals.Failed+rep.Totals.Dropped) / o
	}
	for i, t := range rep.Targets {
		w := 1
		if i < len(r.Settings.Targets) {
			w = r.Settings.Targets[i].Weight
		}
		s.Targets = append(s.Targets, TargetSummary{Weight: w, TargetSummary: t})
	}
	if len(r.Settings.StatusURLs) > 0 {
		st := &StatusSummary{}
		for _, smp := range r.Samples {
			st.Samples++
			if !smp.OK() {
				st.Gaps++
				continue
			}
			n := smp.Replicas
			if st.MinReplicas == nil {
				lo, hi := n, n
				st.MinReplicas, st.MaxReplicas = &lo, &hi
			}
			*st.MinReplicas = min(*st.MinReplicas, n)
			*st.MaxReplicas = max(*st.MaxReplicas, n)
			st.FinalReplicas = &n
		}
		for _, p := range r.Points {
			st.MaxInflight = max(st.MaxInflight, p.Inflight)
		}
		s.Status = st
	}
	return s
}

// WriteFiles writes the CSV and JSON files into dir (created if missing).
func (r *Run) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create output dir: %w", err)
	}
	steps := []struct {
		name  string
		write func(io.Writer) error
	}{
		{"timeseries.csv", r.WriteTimeseries},
		{"backends.csv", r.WriteBackends},
		{"summary.json", func(w io.Writer) error { return WriteJSON(w, r.Summarise()) }},
	}
	if len(r.Settings.StatusURLs) > 0 {
		steps = append(steps, struct {
			name  string
			write func(io.Writer) error
		}{"status.csv", r.WriteStatus})
	}
	for _, s := range steps {
		if err := WriteFile(filepath.Join(dir, s.name), s.write); err != nil {
			return err
		}
	}
	return nil
}

// WriteFile creates path and fills it with write.
func WriteFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteJSON writes v indented.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// TimeseriesHeader is the first row of timeseries.csv. Counts are per
// second, so "offered" and "achieved" are rates: offered = requests due in
// the second (the schedule), sent = those actually sent, achieved = ok
// responses completed in the second, errors = failures completed in it.
// Latencies are of successful responses completed in the second; replicas
// and inflight are empty when no /status sample succeeded in the second.
// err_connection counts requests lost on a connection (reset, closed
// early), err_refused those no server accepted (ECONNREFUSED).
// After these fixed columns come one status_NNN column per error status seen
// in the run (err_status split by code), in code order.
var TimeseriesHeader = []string{
	"second", "offered", "sent", "achieved", "errors", "dropped", "late",
	"err_status", "err_timeout", "err_connection", "err_other",
	"p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "replicas", "inflight",
	"err_refused",
}

// WriteTimeseries writes timeseries.csv.
func (r *Run) WriteTimeseries(w io.Writer) error {
	cw := csv.NewWriter(w)
	var codes []int
	for _, s := range r.Seconds {
		for code := range s.ByStatus {
			if !slices.Contains(codes, code) {
				codes = append(codes, code)
			}
		}
	}
	slices.Sort(codes)
	header := slices.Clone(TimeseriesHeader)
	for _, code := range codes {
		header = append(header, "status_"+strconv.Itoa(code))
	}
	_ = cw.Write(header)
	i64 := func(v int64) string { return strconv.FormatInt(v, 10) }
	for i, s := range r.Seconds {
		lat := func(d time.Duration) string {
			if s.OK == 0 {
				return ""
			}
			return msString(d)
		}
		replicas, inflight := "", ""
		if i < len(r.Points) && r.Points[i].OK {
			replicas = strconv.Itoa(r.Points[i].Replicas)
			inflight = i64(r.Points[i].Inflight)
		}
		row := []string{
			strconv.Itoa(i), i64(s.Offered), i64(s.Sent), i64(s.OK), i64(s.Failed), i64(s.Dropped), i64(s.Late),
			i64(s.ErrStatus), i64(s.ErrTimeout), i64(s.ErrConnection), i64(s.ErrOther),
			lat(s.P50), lat(s.P90), lat(s.P99), lat(s.P999), lat(s.Max), replicas, inflight,
			i64(s.ErrRefused),
		}
		for _, code := range codes {
			row = append(row, i64(s.ByStatus[code]))
		}
		_ = cw.Write(row)
	}
	cw.Flush()
	return cw.Error()
}

// WriteBackends writes backends.csv: one row per X-Server-Id seen.
func (r *Run) WriteBackends(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"backend", "requests", "share", "ok", "failed", "p50_ms", "p90_ms", "p99_ms", "max_ms"})
	for _, b := range r.Report.Backends {
		id := b.ID
		if id == "" {
			id = "(none)" // responses without X-Server-Id, e.g. the balancer's own 503s
		}
		_ = cw.Write([]string{
			id, strconv.FormatInt(b.Requests, 10), strconv.FormatFloat(b.Share, 'f', 4, 64),
			strconv.FormatInt(b.OK, 10), strconv.FormatInt(b.Failed, 10),
			fmtMS(b.Latency.P50), fmtMS(b.Latency.P90), fmtMS(b.Latency.P99), fmtMS(b.Latency.Max),
		})
	}
	cw.Flush()
	return cw.Error()
}

// WriteStatus writes status.csv: every /status sample, one row per backend
// (a failed sample is one row with its error), for per-backend in-flight
// over time.
func (r *Run) WriteStatus(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"elapsed_s", "source", "ok", "error", "replicas", "backend", "addr", "state",
		"inflight_local", "inflight_cluster", "last_seen"})
	for _, s := range r.Samples {
		src := strconv.Itoa(s.Source)
		if s.Source < len(r.Settings.StatusURLs) {
			src = r.Settings.StatusURLs[s.Source]
		}
		el := strconv.FormatFloat(s.At.Sub(r.Start).Seconds(), 'f', 3, 64)
		if !s.OK() {
			_ = cw.Write([]string{el, src, "false", s.Err, "", "", "", "", "", "", ""})
			continue
		}
		rep := strconv.Itoa(s.Replicas)
		if len(s.Backends) == 0 {
			_ = cw.Write([]string{el, src, "true", "", rep, "", "", "", "", "", ""})
		}
		for _, b := range s.Backends {
			seen := ""
			if b.LastSeen != nil {
				seen = b.LastSeen.Format(time.RFC3339Nano)
			}
			_ = cw.Write([]string{el, src, "true", "", rep, b.ID, b.Addr, b.State,
				strconv.FormatInt(b.InflightLocal, 10), strconv.FormatInt(b.InflightCluster, 10), seen})
		}
	}
	cw.Flush()
	return cw.Error()
}

func msString(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 3, 64)
}

func fmtMS(ms float64) string { return strconv.FormatFloat(ms, 'f', 3, 64) }

// Dur formats milliseconds for people: 0.213ms, 12.3ms, 1.52s.
func Dur(ms float64) string {
	switch {
	case ms <= 0:
		return "-"
	case ms < 1:
		return fmt.Sprintf("%.3fms", ms)
	case ms < 100:
		return fmt.Sprintf("%.1fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.0fms", ms)
	default:
		return fmt.Sprintf("%.2fs", ms/1000)
	}
}

func pct(a, b int64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", 100*float64(a)/float64(b))
}

// WriteText prints the end-of-run summary table.
func (r *Run) WriteText(w io.Writer) error {
	s := r.Summarise()
	t := s.Totals
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }

	mode := "open loop, " + s.Settings.Profile
	if s.Settings.Mode == "closed" {
		mode = fmt.Sprintf("closed loop, %d users", s.Settings.Users)
	}
	p("Run\t%s; %d target(s); window %.1fs, elapsed %.1fs\n", mode, len(s.Targets), s.WindowS, s.ElapsedS)
	if s.Settings.Mode == "closed" {
		p("Requests\tsent %d\n", t.Sent)
	} else {
		p("Requests\toffered %d\tsent %d\tdropped %d (concurrency cap)\tlate >%s %d\n",
			t.Offered, t.Sent, t.Dropped, Dur(t.LateAfterMS), t.Late)
		p("Send lag\tp50 %s\tp99 %s\tmax %s\t(actual - intended send time)\n",
			Dur(s.SendLag.P50), Dur(s.SendLag.P99), Dur(s.SendLag.Max))
	}
	p("Results\tok %d (%s)\tfailed %d\n", t.OK, pct(t.OK, t.Offered), t.Failed)
	rateLabel := "offered"
	if s.Settings.Mode == "closed" {
		rateLabel = "sent"
	}
	p("Rate\t%s %.1f/s\tachieved %.1f ok/s\n", rateLabel, s.OfferedRPS, s.AchievedRPS)
	l := s.Latency
	p("Latency\tp50 %s\tp90 %s\tp99 %s\tp99.9 %s\tmax %s\t(ok responses, from intended send time)\n",
		Dur(l.P50), Dur(l.P90), Dur(l.P99), Dur(l.P999), Dur(l.Max))
	if len(s.Errors) > 0 {
		p("Errors\t%s\n", joinCounts(s.Errors))
	}
	if s.Status != nil {
		st := s.Status
		if st.MinReplicas == nil {
			p("Replicas\tno successful /status sample\t(%d samples, %d gaps)\n", st.Samples, st.Gaps)
		} else {
			p("Replicas\tmin %d\tmax %d\tlast %d\tmax in-flight %d\t(%d samples, %d gaps)\n",
				*st.MinReplicas, *st.MaxReplicas, *st.FinalReplicas, st.MaxInflight, st.Samples, st.Gaps)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(s.Targets) > 1 || len(s.Targets) == 1 && len(s.Targets[0].Errors) > 0 {
		fmt.Fprintln(w, "\nTargets")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  url\tweight\toffered\tsent\tdropped\tok\tfailed\tp50\tp99\terrors")
		for _, x := range s.Targets {
			fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", x.URL, x.Weight, x.Offered, x.Sent, x.Dropped,
				x.OK, x.Failed, Dur(x.Latency.P50), Dur(x.Latency.P99), joinCounts(x.Errors))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(s.Backends) > 0 {
		fmt.Fprintln(w, "\nBackends (X-Server-Id)")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  id\trequests\tshare\tok\tfailed\tp50\tp99")
		for _, b := range s.Backends {
			id, share := b.ID, fmt.Sprintf("%.1f%%", 100*b.Share)
			if id == "" {
				id, share = "(none)", "-"
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%d\t%d\t%s\t%s\n", id, b.Requests, share, b.OK, b.Failed,
				Dur(b.Latency.P50), Dur(b.Latency.P99))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(s.Slowest) > 0 {
		fmt.Fprintln(w, "\nSlowest requests (trace ids to look up)")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  trace id\tlatency\toutcome\ttarget\tbackend\tdue at")
		for _, x := range s.Slowest {
			backend := x.Backend
			if backend == "" {
				backend = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t+%.3fs\n", x.TraceID, Dur(x.LatencyMS), x.Outcome, x.Target, backend,
				x.At.Sub(r.Start).Seconds())
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func joinCounts(m map[string]int64) string {
	if len(m) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
