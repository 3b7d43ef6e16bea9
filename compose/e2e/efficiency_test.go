package e2e

import (
	"encoding/json"
	"fmt"
	"image/color"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"lbscale/internal/testenv"
)

// efficiencyTraces are the benchmark's offered loads (10 req/s per
// container): a step up and down; a day compressed into 4 minutes that
// never reaches zero; bursts on a low base.
var efficiencyTraces = []shape{
	{name: "step", dur: 240 * time.Second, rate: func(s float64) float64 {
		if s >= 40 && s < 140 {
			return 35
		}
		return 5
	}},
	{name: "sine", dur: 360 * time.Second, rate: func(s float64) float64 {
		return 22 - 18*math.Cos(2*math.Pi*s/240)
	}},
	{name: "bursts", dur: 300 * time.Second, rate: func(s float64) float64 {
		if m := math.Mod(s, 100); m >= 40 && m < 60 {
			return 30
		}
		return 4
	}},
}

// efficiencyResult is one trace under one scale-down rule.
type efficiencyResult struct {
	Trace      string  `json:"trace"`
	Rule       string  `json:"rule"`
	ContainerS float64 `json:"container_seconds"`
	IdealS     float64 `json:"ideal_container_seconds"`
	Ratio      float64 `json:"ratio"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	SteadyP99  float64 `json:"steady_p99_ms"`
	Requests   int     `json:"requests"`
	Failed     int     `json:"failed"`
	Ups        int     `json:"scale_up_containers"`
	Downs      int     `json:"scale_down_containers"`
	Flaps      int     `json:"flaps"`
	Peak       int     `json:"peak_containers"`
}

// TestEfficiency is the autoscaling benchmark against the ideal pool
// (scripts/exp-efficiency runs it; it takes about 35 minutes, so it runs
// only when EFFICIENCY_OUT names a directory for its results). For each
// trace and each SCALE_DOWN rule it brings up a fresh cluster, offers the
// trace, samples the pool's containers (starting, ready and draining: all
// cost) every half second, and compares their integral with the ideal
// container-seconds, the sum over seconds of ceil(rate × service / target).
func TestEfficiency(t *testing.T) {
	out := os.Getenv("EFFICIENCY_OUT")
	if out == "" {
		t.Skip("EFFICIENCY_OUT unset: the efficiency benchmark runs from scripts/exp-efficiency")
	}
	needDocker(t)
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	const (
		target  = webCapacity
		minRepl = 1
		stable  = 20 * time.Second
	)
	var results []efficiencyResult
	for _, sh := range efficiencyTraces {
		runs := map[string][]poolSample{}
		ideal := idealReplicas(sh, target, minRepl)
		for _, rule := range []string{"idle", "demand"} {
			t.Run(sh.name+"/"+rule, func(t *testing.T) {
				up(t, "MIN_REPLICAS=1", "MAX_REPLICAS=8",
					fmt.Sprintf("WEB_ENV=CAPACITY=%d,SLEEP_MS=%d", webCapacity, webService.Milliseconds()),
					fmt.Sprintf("MAX_INFLIGHT=%d", target), "SCALE_DOWN="+rule, "STABLE_WINDOW="+stable.String(),
					"PANIC_WINDOW=3s", "IDLE_TIMEOUT=10s", "SCALE_DOWN_INTERVAL=2s", "DRAIN_SETTLE=1s", "QUEUE_TIMEOUT=60s")
				testenv.Eventually(t, 60*time.Second, "pool settles at 1 replica", func() bool { return getStatus(t, adminA).Replicas == 1 })
				time.Sleep(stable) // a full stable window of history before the trace
				smp := startSampler(t, 500*time.Millisecond)
				res := drive(t, sh)
				samples := smp.end()
				sc := getScaler(t)
				r := summarise(sh, rule, res, samples, ideal, sc)
				t.Logf("%+v", r)
				results = append(results, r)
				runs[rule] = samples
			})
		}
		if err := plotEfficiency(filepath.Join(out, "efficiency-"+sh.name+".png"), sh, ideal, runs); err != nil {
			t.Error(err)
		}
	}
	b, _ := json.MarshalIndent(results, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "efficiency.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "efficiency.md"), []byte(efficiencyTable(results)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + efficiencyTable(results))
}

// steadyAfter is how long after the offered rate moved by more than 10%
// the latency does not count as "at steady load".
const steadyAfter = 10 * time.Second

func summarise(sh shape, rule string, res []outcome, samples []poolSample, ideal []int, sc scalerStatus) efficiencyResult {
	r := efficiencyResult{Trace: sh.name, Rule: rule, Requests: len(res), Flaps: sc.Flaps}
	var all, steady []float64
	for _, o := range res {
		if o.code != http.StatusOK {
			r.Failed++
			continue
		}
		ms := float64(o.latency.Microseconds()) / 1000
		all = append(all, ms)
		if isSteady(sh, o.at) {
			steady = append(steady, ms)
		}
	}
	r.P50ms, r.P99ms, r.SteadyP99 = quantile(all, 0.5), quantile(all, 0.99), quantile(steady, 0.99)
	// Container-seconds over the trace: each sample holds until the next.
	end := sh.dur.Seconds()
	for i, s := range samples {
		if s.at >= end {
			break
		}
		next := end
		if i+1 < len(samples) {
			next = min(samples[i+1].at, end)
		}
		r.ContainerS += float64(s.containers) * (next - s.at)
		r.Peak = max(r.Peak, s.containers)
	}
	for _, n := range ideal {
		r.IdealS += float64(n)
	}
	r.Ratio = r.ContainerS / r.IdealS
	for _, e := range sc.Events {
		switch {
		case e.Direction == "up" && (e.Reason == "demand" || e.Reason == "reclaim" || e.Reason == "from_zero"):
			r.Ups += e.Count
		case e.Direction == "down" && (e.Reason == "surplus" || e.Reason == "idle"):
			r.Downs += e.Count
		}
	}
	return r
}

// isSteady: the offered rate over the steadyAfter before s stayed within
// 10% of the rate at s.
func isSteady(sh shape, s float64) bool {
	now := sh.rate(s)
	for x := math.Max(0, s-steadyAfter.Seconds()); x <= s; x += 0.1 {
		if math.Abs(sh.rate(x)-now) > 0.1*now {
			return false
		}
	}
	return s >= steadyAfter.Seconds()
}

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	v = slices.Clone(v)
	slices.Sort(v)
	return v[min(len(v)-1, int(math.Ceil(q*float64(len(v))))-1)]
}

func efficiencyTable(rs []efficiencyResult) string {
	var b strings.Builder
	b.WriteString("| trace | SCALE_DOWN | container-s | ideal | used ÷ ideal | p50 | p99 | p99 steady | failed | scale-ups | scale-downs | flaps | peak |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f | **%.2f** | %.0f ms | %.0f ms | %.0f ms | %d of %d | %d | %d | %d | %d |\n",
			r.Trace, r.Rule, r.ContainerS, r.IdealS, r.Ratio, r.P50ms, r.P99ms, r.SteadyP99, r.Failed, r.Requests, r.Ups, r.Downs, r.Flaps, r.Peak)
	}
	return b.String()
}

// plotEfficiency draws the ideal pool and each rule's containers over the
// trace, with the offered rate in a panel above.
func plotEfficiency(path string, sh shape, ideal []int, runs map[string][]poolSample) error {
	p := plot.New()
	p.Title.Text = "Containers vs the ideal pool: " + sh.name
	p.X.Label.Text = "seconds"
	p.Y.Label.Text = "containers"
	p.Legend.Top = true
	idealXY := make(plotter.XYs, 0, len(ideal)+1)
	for i, n := range ideal {
		idealXY = append(idealXY, plotter.XY{X: float64(i), Y: float64(n)})
	}
	if len(ideal) > 0 {
		idealXY = append(idealXY, plotter.XY{X: float64(len(ideal)), Y: float64(ideal[len(ideal)-1])})
	}
	colours := map[string]color.Color{
		"ideal":  color.RGBA{R: 90, G: 90, B: 90, A: 255},
		"idle":   color.RGBA{R: 255, G: 127, B: 14, A: 255},
		"demand": color.RGBA{R: 31, G: 119, B: 180, A: 255},
	}
	add := func(name string, xy plotter.XYs, dashed bool) error {
		l, err := plotter.NewLine(xy)
		if err != nil {
			return err
		}
		l.StepStyle = plotter.PostStep
		l.Color = colours[name]
		l.Width = vg.Points(1.5)
		if dashed {
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(l)
		label := name
		if name != "ideal" {
			label = "SCALE_DOWN=" + name
		}
		p.Legend.Add(label, l)
		return nil
	}
	for _, rule := range []string{"idle", "demand"} {
		var xy plotter.XYs
		for _, s := range runs[rule] {
			if s.at <= sh.dur.Seconds() {
				xy = append(xy, plotter.XY{X: s.at, Y: float64(s.containers)})
			}
		}
		if len(xy) == 0 {
			continue
		}
		if err := add(rule, xy, false); err != nil {
			return err
		}
	}
	if err := add("ideal", idealXY, true); err != nil {
		return err
	}
	p.Y.Min = 0
	return p.Save(10*vg.Inch, 4*vg.Inch, path)
}
