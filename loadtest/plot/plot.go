// Package plot draws a run's PNG charts: replicas.png (offered and achieved
// rate above the replica count, so scale-ups line up with the load that
// caused them), latency.png (percentiles over time) and backends.png (each
// backend's share of the answers, to check the balance).
//
// Missing data is drawn as a break in the line, never as zero: a failed
// /status sample or a second with no successful response is a gap.
package plot

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Series is the per-second data, one element per second of the run. NaN
// marks a gap.
type Series struct {
	// T is the x position of each second: its middle (i + 0.5), since each
	// value covers the whole second.
	T        []float64
	Offered  []float64 // req/s due
	Achieved []float64 // ok responses/s
	Errors   []float64 // failed + dropped /s
	Replicas []float64
	Inflight []float64 // cluster-wide in flight (from /status)
	P50      []float64 // ms
	P90      []float64
	P99      []float64
	P999     []float64
	// WindowEnd is when the load stopped (seconds); completions after it
	// are the drain of requests still in flight. 0: not marked.
	WindowEnd float64
}

// Share is one backend's part of the answers.
type Share struct {
	ID    string
	Share float64 // 0..1
}

// Files are the names All writes.
var Files = []string{"replicas.png", "latency.png", "backends.png"}

// All writes the three charts into dir.
func All(dir string, s Series, shares []Share) error {
	if err := Replicas(filepath.Join(dir, "replicas.png"), s); err != nil {
		return err
	}
	if err := Latency(filepath.Join(dir, "latency.png"), s); err != nil {
		return err
	}
	return Backends(filepath.Join(dir, "backends.png"), shares)
}

var (
	blue   = color.RGBA{R: 31, G: 119, B: 180, A: 255}
	orange = color.RGBA{R: 255, G: 127, B: 14, A: 255}
	green  = color.RGBA{R: 44, G: 160, B: 44, A: 255}
	red    = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	purple = color.RGBA{R: 148, G: 103, B: 189, A: 255}
	grey   = color.RGBA{R: 90, G: 90, B: 90, A: 255}
)

// segments splits (x, y) at NaN values of y into separately drawn runs.
func segments(x, y []float64) []plotter.XYs {
	var out []plotter.XYs
	var cur plotter.XYs
	for i := range min(len(x), len(y)) {
		if math.IsNaN(y[i]) || math.IsInf(y[i], 0) {
			if len(cur) > 0 {
				out = append(out, cur)
				cur = nil
			}
			continue
		}
		cur = append(cur, plotter.XY{X: x[i], Y: y[i]})
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// addLine draws y over x in colour c, broken at gaps, with one legend entry.
// With PostStep each value is drawn as a flat step across its second;
// otherwise points are joined, and a lone point gets a dot so an isolated
// sample stays visible.
func addLine(p *plot.Plot, name string, x, y []float64, c color.Color, dashed bool, step plotter.StepKind) (bool, error) {
	drawn := false
	for _, seg := range segments(x, y) {
		if step == plotter.PostStep {
			// Each value covers its whole second: draw it from the
			// second's start to its end.
			for i := range seg {
				seg[i].X -= 0.5
			}
			seg = append(seg, plotter.XY{X: seg[len(seg)-1].X + 1, Y: seg[len(seg)-1].Y})
		}
		l, err := plotter.NewLine(seg)
		if err != nil {
			return false, fmt.Errorf("plot %s: %w", name, err)
		}
		l.Color = c
		l.Width = vg.Points(1.5)
		l.StepStyle = step
		if dashed {
			l.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		p.Add(l)
		if len(seg) == 1 && step != plotter.PostStep {
			sc, err := plotter.NewScatter(seg)
			if err != nil {
				return false, fmt.Errorf("plot %s: %w", name, err)
			}
			sc.Color = c
			sc.Radius = vg.Points(2)
			sc.Shape = draw.CircleGlyph{}
			p.Add(sc)
		}
		if !drawn {
			p.Legend.Add(name, l)
			drawn = true
		}
	}
	return drawn, nil
}

func newPlot(title, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds since start"
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

// fixRange starts the axes at 0, keeps them sane when there is no data or
// only zeros, and leaves a quarter of the height free for the legend.
func fixRange(p *plot.Plot, s Series, drawn bool) {
	if len(s.T) > 0 {
		p.X.Min, p.X.Max = 0, math.Max(math.Ceil(s.T[len(s.T)-1]), 1)
	}
	if !drawn {
		p.Y.Min, p.Y.Max = 0, 1
	}
	p.Y.Min = math.Min(p.Y.Min, 0)
	if p.Y.Max <= p.Y.Min {
		p.Y.Max = p.Y.Min + 1
	}
	p.Y.Max += (p.Y.Max - p.Y.Min) / 3
}

// logTicks labels 1, 2 and 5 times each power of ten, so a log axis spanning
// less than a decade still has readable labels (gonum's LogTicks labels only
// powers of ten).
type logTicks struct{}

func (logTicks) Ticks(lo, hi float64) []plot.Tick {
	if lo <= 0 || hi <= lo {
		return nil
	}
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); math.Pow(10, e) <= hi; e++ {
		base := math.Pow(10, e)
		for m := 1; m < 10; m++ {
			v := base * float64(m)
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'g', -1, 64)
			}
			ticks = append(ticks, t)
		}
	}
	return ticks
}

// Replicas draws the load (offered, achieved, errors per second) in the top
// panel, the replica count below it and, when /status reported any, the
// cluster's in-flight requests at the bottom, on a shared time axis.
func Replicas(path string, s Series) error {
	load := newPlot("Load", "requests / s")
	drawn := false
	for _, l := range []struct {
		name   string
		y      []float64
		c      color.Color
		dashed bool
	}{
		{"achieved (ok/s)", s.Achieved, blue, false},
		{"errors + dropped /s", s.Errors, red, false},
		{"offered", s.Offered, grey, true}, // last, so its dashes show on top
	} {
		ok, err := addLine(load, l.name, s.T, l.y, l.c, l.dashed, plotter.PostStep)
		if err != nil {
			return err
		}
		drawn = drawn || ok
	}
	fixRange(load, s, drawn)
	if s.WindowEnd > 0 {
		if err := markEnd(load, s.WindowEnd); err != nil {
			return err
		}
	}

	reps := newPlot("Replicas (ready backends, from /status)", "replicas")
	ok, err := addLine(reps, "replicas", s.T, s.Replicas, green, false, plotter.PostStep)
	if err != nil {
		return err
	}
	if !ok {
		reps.Title.Text = "Replicas: no /status samples (use --status URL)"
	}
	fixRange(reps, s, ok)
	reps.Y.Max = math.Max(math.Ceil(reps.Y.Max)+0.5, 2)

	panels := [][]*plot.Plot{{load}, {reps}}
	if hasData(s.Inflight) {
		inf := newPlot("In flight (cluster-wide, from /status)", "requests")
		ok, err := addLine(inf, "in flight", s.T, s.Inflight, purple, false, plotter.PostStep)
		if err != nil {
			return err
		}
		fixRange(inf, s, ok)
		panels = append(panels, []*plot.Plot{inf})
	}
	return savePanels(path, panels, 10*vg.Inch, vg.Length(len(panels))*3*vg.Inch)
}

// markEnd draws a vertical line where the load stopped, so the fall of the
// achieved rate in the drain that follows is not read as a collapse.
func markEnd(p *plot.Plot, x float64) error {
	l, err := plotter.NewLine(plotter.XYs{{X: x, Y: p.Y.Min}, {X: x, Y: p.Y.Max}})
	if err != nil {
		return fmt.Errorf("plot load end: %w", err)
	}
	l.Color = grey
	l.Width = vg.Points(0.75)
	l.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
	p.Add(l)
	p.Legend.Add("load stops", l)
	return nil
}

func hasData(y []float64) bool {
	for _, v := range y {
		if !math.IsNaN(v) {
			return true
		}
	}
	return false
}

// Latency draws the latency percentiles of successful responses per second.
// The y axis is logarithmic when the values span more than a factor of 20,
// so p50 stays readable under a p99.9 spike.
func Latency(path string, s Series) error {
	p := newPlot("Latency of ok responses (from intended send time)", "milliseconds")
	lo, hi := math.Inf(1), 0.0
	for _, y := range [][]float64{s.P50, s.P90, s.P99, s.P999} {
		for _, v := range y {
			if !math.IsNaN(v) && v > 0 {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	logScale := hi > 0 && hi/lo > 20
	drawn := false
	for _, l := range []struct {
		name string
		y    []float64
		c    color.Color
	}{
		{"p50", s.P50, blue}, {"p90", s.P90, green}, {"p99", s.P99, orange}, {"p99.9", s.P999, red},
	} {
		y := l.y
		if logScale {
			y = positive(y)
		}
		ok, err := addLine(p, l.name, s.T, y, l.c, false, plotter.NoStep)
		if err != nil {
			return err
		}
		drawn = drawn || ok
	}
	if !drawn {
		p.Title.Text = "Latency: no successful responses"
	}
	if logScale {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = logTicks{}
		p.Y.Label.Text = "milliseconds (log scale)"
		// Room above the highest line for the legend.
		p.Y.Min, p.Y.Max = lo/1.2, hi*4
		if len(s.T) > 0 {
			p.X.Min, p.X.Max = 0, math.Max(math.Ceil(s.T[len(s.T)-1]), 1)
		}
	} else {
		fixRange(p, s, drawn)
	}
	return p.Save(10*vg.Inch, 5*vg.Inch, path)
}

func positive(y []float64) []float64 {
	out := make([]float64, len(y))
	for i, v := range y {
		out[i] = v
		if v <= 0 {
			out[i] = math.NaN()
		}
	}
	return out
}

// Backends draws each backend's share of the answers as a bar chart, with
// the equal share (1/n) as a dashed reference line.
func Backends(path string, shares []Share) error {
	p := plot.New()
	p.Title.Text = "Share of responses per backend (X-Server-Id)"
	p.Y.Label.Text = "% of responses"
	p.Y.Min = 0
	if len(shares) == 0 {
		p.Title.Text = "No responses carried X-Server-Id"
		p.Y.Max = 100
		p.X.Min, p.X.Max = 0, 1
		return p.Save(8*vg.Inch, 5*vg.Inch, path)
	}
	vals := make(plotter.Values, len(shares))
	names := make([]string, len(shares))
	for i, s := range shares {
		vals[i] = 100 * s.Share
		names[i] = s.ID
	}
	width := vg.Points(math.Max(8, math.Min(40, 400/float64(len(shares)))))
	bars, err := plotter.NewBarChart(vals, width)
	if err != nil {
		return fmt.Errorf("plot backends: %w", err)
	}
	bars.Color = blue
	bars.LineStyle.Width = 0
	p.Add(bars)
	if len(shares) <= 30 {
		xy := plotter.XYLabels{XYs: make(plotter.XYs, len(shares)), Labels: make([]string, len(shares))}
		for i, v := range vals {
			xy.XYs[i] = plotter.XY{X: float64(i), Y: v}
			xy.Labels[i] = fmt.Sprintf("%.1f%%", v)
		}
		labels, err := plotter.NewLabels(xy)
		if err != nil {
			return fmt.Errorf("plot backends: %w", err)
		}
		for i := range labels.TextStyle {
			labels.TextStyle[i].XAlign = draw.XCenter
		}
		labels.Offset = vg.Point{Y: vg.Points(3)}
		p.Add(labels)
	}
	even := 100 / float64(len(shares))
	ref, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: even}, {X: float64(len(shares)) - 0.5, Y: even}})
	if err != nil {
		return fmt.Errorf("plot backends: %w", err)
	}
	ref.Color = grey
	ref.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
	p.Add(ref)
	p.Legend.Add(fmt.Sprintf("even share (%.1f%%)", even), ref)
	p.Legend.Top = true
	p.NominalX(names...)
	if len(shares) > 8 {
		p.X.Tick.Label.Rotation = math.Pi / 4
		p.X.Tick.Label.XAlign = draw.XRight
		p.X.Tick.Label.YAlign = draw.YTop
	}
	p.Y.Max = math.Max(p.Y.Max*1.15, even*1.3)
	w := vg.Length(math.Max(8, math.Min(20, 2+0.5*float64(len(shares))))) * vg.Inch
	return p.Save(w, 5*vg.Inch, path)
}

func savePanels(path string, panels [][]*plot.Plot, w, h vg.Length) error {
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{
		Rows: len(panels), Cols: 1,
		PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter,
		PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter,
	}
	canvases := plot.Align(panels, tiles, dc)
	for i := range panels {
		panels[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
