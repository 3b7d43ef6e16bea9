package sim

import (
	"testing"
	"time"

	"lbscale/scaler/forecast"
)

// repeat is tr's first period over and over for d: the same day, again.
func repeat(tr Trace, period, d time.Duration) Trace {
	return Trace{Name: tr.Name + "×", Duration: d, Rate: func(t time.Duration) float64 { return tr.Rate(t % period) }}
}

// TestForecastMeetsTheRise runs the steps trace twice (a day compressed
// into an hour, steps up at 10, 30 and 40 minutes, at 100 containers,
// Poisson, a 5 s cold start) with the learned floor off and on (one-minute
// buckets, one past period). Off, every step up of the second day is met
// after it came, as on the first: a cold start of queue, a p99 near a
// second. On, the floor learned on the first day starts the containers a
// cold start and up to a bucket ahead: the run's p99 (both days) falls
// from about a second to that of steady load, since half its step-ups are
// no longer met late. What still starts at a step of the second day is a
// container or two for the one-second fluctuation above the floor (sized
// for the mean rate, as the reactive rule sizes), counted as panic
// scale-ups: the floor is not 0 of them, only fewer.
func TestForecastMeetsTheRise(t *testing.T) {
	if testing.Short() {
		t.Skip("two simulated days")
	}
	cfg := Default()
	cfg.ColdStart = 5 * time.Second
	cfg.Max = MaxFor(100)
	const day = time.Hour
	tr := repeat(Steps(PeakRate(100, cfg.Target, cfg.Service), day), day, 2*day)
	b := forecast.Bucketing{Bucket: time.Minute, Period: day, Days: 1}
	panics := func(r Result) (first, second int) {
		for _, at := range r.PanicStartsAt {
			if at < day {
				first++
			} else {
				second++
			}
		}
		return first, second
	}
	off := Run(cfg, NewOurs(cfg.Scaler, "demand"), tr)
	on := Run(cfg, NewOurs(cfg.Scaler, "demand").WithForecast(b, cfg.Min), tr)
	off1, off2 := panics(off)
	on1, on2 := panics(on)
	t.Logf("panic scale-ups day 1 / day 2: off %d / %d, on %d / %d; p99 off %v, on %v; peak queue off %d, on %d; container-s off %.0f, on %.0f (%.3f and %.3f × ideal)",
		off1, off2, on1, on2, off.P99, on.P99, off.PeakQueued, on.PeakQueued, off.ContainerSeconds, on.ContainerSeconds, off.Ratio, on.Ratio)
	if limit := 2 * cfg.Service; off.P99 <= limit || on.P99 > limit {
		t.Errorf("p99 off %v, on %v: want the forecast to bring the run's p99 within 2 × S (%v) where reactive scaling alone misses it", off.P99, on.P99, limit)
	}
}
