package plot

import (
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func checkPNG(t *testing.T, path string, minBytes int64) image.Image {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < minBytes {
		t.Fatalf("%s is %d bytes, want >= %d", path, fi.Size(), minBytes)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// distinctColours counts colours in the image, a cheap check that lines
// were drawn and not just an empty frame.
func distinctColours(img image.Image) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r >> 8, g >> 8, bl >> 8, a >> 8}] = true
		}
	}
	return len(seen)
}

func TestChartsWithGaps(t *testing.T) {
	nan := math.NaN()
	n := 30
	s := Series{}
	for i := range n {
		x := float64(i)
		s.T = append(s.T, x)
		s.Offered = append(s.Offered, 100+10*x)
		s.Achieved = append(s.Achieved, math.Min(100+10*x, 300))
		s.Errors = append(s.Errors, math.Max(0, 10*x-200))
		rep, inf := math.Floor(1+x/8), 5*x
		if i >= 10 && i < 13 { // a /status outage
			rep, inf = nan, nan
		}
		s.Replicas = append(s.Replicas, rep)
		s.Inflight = append(s.Inflight, inf)
		p := 1 + x/10
		if i == 20 { // a second with no successful response
			p = nan
		}
		s.P50 = append(s.P50, p)
		s.P90 = append(s.P90, 2*p)
		s.P99 = append(s.P99, 10*p)
		s.P999 = append(s.P999, 100*p)
	}
	shares := []Share{{"web-1", 0.5}, {"web-2", 0.3}, {"web-3", 0.2}}
	dir := t.TempDir()
	if err := All(dir, s, shares); err != nil {
		t.Fatal(err)
	}
	for _, name := range Files {
		img := checkPNG(t, filepath.Join(dir, name), 10_000)
		if c := distinctColours(img); c < 20 {
			t.Errorf("%s has only %d colours: nothing drawn?", name, c)
		}
	}
	// Three stacked panels (load, replicas, in flight) are taller than the
	// single latency panel.
	stacked := checkPNG(t, filepath.Join(dir, "replicas.png"), 0).Bounds()
	single := checkPNG(t, filepath.Join(dir, "latency.png"), 0).Bounds()
	if stacked.Dy() < 3*single.Dy()/2 {
		t.Errorf("replicas.png is %v, latency.png %v: want the panels stacked", stacked, single)
	}
}

// No /status, no successful response, no X-Server-Id: the charts still
// render, saying what is missing, instead of failing the run.
func TestChartsWithoutData(t *testing.T) {
	nan := math.NaN()
	s := Series{T: []float64{0, 1, 2}, Offered: []float64{10, 10, 10}, Achieved: []float64{0, 0, 0},
		Errors: []float64{10, 10, 10}, Replicas: []float64{nan, nan, nan}, Inflight: []float64{nan, nan, nan},
		P50: []float64{nan, nan, nan}, P90: []float64{nan, nan, nan}, P99: []float64{nan, nan, nan}, P999: []float64{nan, nan, nan}}
	dir := t.TempDir()
	if err := All(dir, s, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range Files {
		checkPNG(t, filepath.Join(dir, name), 5_000)
	}
	if err := All(dir, Series{}, nil); err != nil {
		t.Fatalf("empty series: %v", err)
	}
}

func TestSegments(t *testing.T) {
	nan := math.NaN()
	got := segments([]float64{0, 1, 2, 3, 4, 5}, []float64{1, 2, nan, nan, 5, nan})
	if len(got) != 2 || len(got[0]) != 2 || len(got[1]) != 1 || got[1][0].X != 4 {
		t.Fatalf("segments %v", got)
	}
}
