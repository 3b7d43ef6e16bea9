package sim

import (
	"testing"
	"time"
)

func TestTraces(t *testing.T) {
	const peak = 2000.0
	h := time.Hour
	for _, tt := range []struct {
		tr   Trace
		at   time.Duration
		want float64
	}{
		{Steps(peak, h), 0, 400},
		{Steps(peak, h), 10*time.Minute + time.Second, 2000},
		{Steps(peak, h), 25 * time.Minute, 400},
		{Steps(peak, h), 35 * time.Minute, 1200},
		{Steps(peak, h), 45 * time.Minute, 2000},
		{Steps(peak, h), 59 * time.Minute, 800},
		{Daily(peak, h), 0, 400},
		{Daily(peak, h), 30 * time.Minute, 2000},
		{Daily(peak, h), 15 * time.Minute, 1200},
		{Bursts(peak, h), 0, 200},
		{Bursts(peak, h), 4 * time.Minute, 2000},
		{Bursts(peak, h), 4*time.Minute + 30*time.Second, 200},
		{Bursts(peak, h), 8*time.Minute + 30*time.Second, 2000}, // the 60 s one
		{Bursts(peak, h), 9*time.Minute + 30*time.Second, 200},
		{Bursts(peak, h), 24*time.Minute + 29*time.Second, 2000}, // the 300 s one ends the cycle
		{Bursts(peak, h), 24*time.Minute + 30*time.Second, 200},
		{Bursts(peak, h), 28*time.Minute + 30*time.Second, 2000}, // and it repeats
	} {
		if got := tt.tr.Rate(tt.at); !near(got, tt.want, 1e-9) {
			t.Errorf("%s at %v: %.1f req/s, want %.1f", tt.tr.Name, tt.at, got, tt.want)
		}
	}
	// The daily trace never reaches zero.
	tr := Daily(peak, h)
	for at := time.Duration(0); at < h; at += time.Second {
		if r := tr.Rate(at); r < 0.2*peak-1e-9 || r > peak+1e-9 {
			t.Fatalf("daily at %v: %.1f req/s, outside [20%%, 100%%] of peak", at, r)
		}
	}
}

// PeakRate makes every shape need the same peak pool, at any scale.
func TestPeakRateScales(t *testing.T) {
	cfg := Default()
	for _, n := range []int{10, 100, 1000} {
		peak := PeakRate(n, cfg.Target, cfg.Service)
		for _, tr := range traces {
			s := newSim(cfg, Fixed{}, tr(peak, 30*time.Minute))
			if s.res.Scale != n {
				t.Errorf("%s at %d containers: needs %d at peak", s.tr.Name, n, s.res.Scale)
			}
		}
	}
	if got := PeakRate(100, 4, 200*ms); got != 2000 {
		t.Errorf("PeakRate(100, 4, 200ms) = %v, want 2000", got)
	}
}
