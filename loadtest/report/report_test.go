package report

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"lbscale/loadtest/measure"
	"lbscale/loadtest/status"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func sampleRun() *Run {
	rec := measure.New(measure.Config{Start: t0, Targets: []string{"http://a", "http://b"}})
	for i := range 100 {
		due := t0.Add(time.Duration(i) * 20 * time.Millisecond) // 2 s at 50/s
		target := i % 2
		rec.Dispatched(due, 0, target, i == 99)
		if i == 99 {
			continue
		}
		out := measure.Outcome{Kind: measure.OK, Status: 200, Backend: "web-1"}
		if i < 50 {
			out.Backend = "web-2"
		}
		if i%10 == 0 {
			out = measure.Outcome{Kind: measure.Status, Status: 503}
		}
		rec.Done(target, due, due.Add(5*time.Millisecond), out)
	}
	end := t0.Add(3*time.Second + 200*time.Millisecond) // a slow drain: second 2 has no traffic
	rec.Tick(end)
	return &Run{
		Settings: Settings{Mode: "open", Profile: "constant 50 req/s", Targets: []Target{{"http://a", 3}, {"http://b", 1}},
			StatusURLs: []string{"http://lb/status"}},
		Start:   t0,
		Window:  2 * time.Second,
		End:     end,
		Seconds: rec.Finish(),
		Report:  rec.Report(),
		Samples: []status.Sample{
			{At: t0.Add(100 * time.Millisecond), Doc: status.Doc{Replicas: 1, Backends: []status.Backend{{ID: "web-1", InflightCluster: 3}}}},
			{At: t0.Add(1100 * time.Millisecond), Err: "connection refused"},
			{At: t0.Add(2100 * time.Millisecond), Doc: status.Doc{Replicas: 2}},
		},
		Points: []status.Point{{OK: true, Replicas: 1, Inflight: 3}, {}, {OK: true, Replicas: 2}},
	}
}

func TestSummarise(t *testing.T) {
	s := sampleRun().Summarise()
	if s.Totals.Offered != 100 || s.Totals.Dropped != 1 || s.Totals.OK != 89 || s.Totals.Failed != 10 {
		t.Fatalf("totals %+v", s.Totals)
	}
	if s.OfferedRPS != 50 || s.AchievedRPS != 89/3.2 {
		t.Errorf("offered %v achieved %v", s.OfferedRPS, s.AchievedRPS)
	}
	if s.SuccessRatio != 0.89 || s.ErrorRatio != 0.11 {
		t.Errorf("success %v error %v", s.SuccessRatio, s.ErrorRatio)
	}
	if s.Targets[0].Weight != 3 || s.Targets[1].Weight != 1 || s.Targets[0].URL != "http://a" {
		t.Errorf("targets %+v", s.Targets)
	}
	st := s.Status
	if st == nil || st.Samples != 3 || st.Gaps != 1 || st.MinReplicas == nil || *st.MinReplicas != 1 || *st.MaxReplicas != 2 || *st.FinalReplicas != 2 || st.MaxInflight != 3 {
		t.Errorf("status %+v", st)
	}
}

func TestTimeseriesMarksGaps(t *testing.T) {
	r := sampleRun()
	var buf bytes.Buffer
	if err := r.WriteTimeseries(&buf); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1+3 {
		t.Fatalf("%d rows", len(rows))
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	if got := rows[1][col["offered"]]; got != "50" {
		t.Errorf("second 0 offered %s", got)
	}
	if rows[1][col["replicas"]] != "1" || rows[1][col["inflight"]] != "3" {
		t.Errorf("second 0 status columns %v", rows[1])
	}
	if rows[2][col["replicas"]] != "" || rows[2][col["inflight"]] != "" {
		t.Errorf("a failed sample must leave a gap, got %v", rows[2])
	}
	if rows[3][col["p99_ms"]] != "" {
		t.Errorf("second 2 had no ok response, p99 should be empty: %v", rows[3])
	}
	// Error statuses get a column each, matching err_status per second.
	c503, ok := col["status_503"]
	if !ok {
		t.Fatalf("no status_503 column in %v", rows[0])
	}
	for _, row := range rows[1:] {
		if row[c503] != row[col["err_status"]] {
			t.Errorf("status_503 %s != err_status %s in %v", row[c503], row[col["err_status"]], row)
		}
	}
	if rows[1][c503] == "0" {
		t.Errorf("second 0 had 503s: %v", rows[1])
	}
	// HDR keeps three significant digits: 5 ms reads back as 5.00x ms.
	if p50 := rows[1][col["p50_ms"]]; !strings.HasPrefix(p50, "5.00") {
		t.Errorf("second 0 p50 %q, want 5.00x", p50)
	}
}

func TestWriteText(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleRun().WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"open loop, constant 50 req/s", "offered 100", "dropped 1", "ok 89 (89.00%)", "status_503 10",
		"Replicas", "min 1", "max 2", "(3 samples, 1 gaps)", "web-1", "web-2", "(none)", "Targets",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestDur(t *testing.T) {
	for ms, want := range map[float64]string{0: "-", 0.2134: "0.213ms", 12.34: "12.3ms", 250: "250ms", 1520: "1.52s"} {
		if got := Dur(ms); got != want {
			t.Errorf("Dur(%v) = %q, want %q", ms, got, want)
		}
	}
}
