package sim

import (
	"math"
	"time"
)

// Trace is offered load over time: Rate(t) req/s for t in [0, Duration).
// Traces are functions rather than recorded series so that one shape runs
// at any scale and length without storing hours of samples.
type Trace struct {
	Name     string
	Duration time.Duration
	Rate     func(t time.Duration) float64
}

// PeakRate is the rate that keeps containers containers busy at target
// each by Little's law (rate × service = containers × target): the traces
// are given by the peak number of containers they need, so the same shape
// runs at 10, 100 and 1,000 containers.
//
// E.g. 100 containers, target 4, 200 ms: 2,000 req/s.
func PeakRate(containers, target int, service time.Duration) float64 {
	if service <= 0 {
		return 0
	}
	return float64(containers*target) / service.Seconds()
}

// Steps holds a level for a sixth of d each: 20%, 100%, 20%, 60%, 100%,
// 40% of peak. It has steps up from low and from middle loads and steps
// down of 80% and 60%, each long enough (10 minutes in an hour) for the
// stable window to pass and the pool to settle.
func Steps(peak float64, d time.Duration) Trace {
	levels := []float64{0.2, 1, 0.2, 0.6, 1, 0.4}
	return Trace{Name: "steps", Duration: d, Rate: func(t time.Duration) float64 {
		i := int(int64(t) * int64(len(levels)) / int64(max(d, 1)))
		return peak * levels[min(max(i, 0), len(levels)-1)]
	}}
}

// Daily is a day of traffic compressed into d: a cosine from its trough, 20%
// of peak, at 0 and d, to the peak at d/2. It never reaches zero, as a
// service used around the world does not, and it changes slowly enough
// (at most 0.35% of the trough a second in an hour) that it is steady load
// throughout: the test of how closely a policy tracks a smooth change.
func Daily(peak float64, d time.Duration) Trace {
	const low = 0.2
	return Trace{Name: "daily", Duration: d, Rate: func(t time.Duration) float64 {
		x := 2 * math.Pi * float64(t) / float64(max(d, 1))
		return peak * (low + (1-low)*(1-math.Cos(x))/2)
	}}
}

// Bursts is a base of 10% of peak with bursts to the peak, square (the
// rate jumps in one step), lasting 30 s, 60 s, 120 s and 300 s in turn,
// each after 4 minutes of base. The shortest are shorter than the stable
// window, where a scaler that waits a window before shrinking pays most; the
// gaps are longer than the window plus a few scale-down intervals, so a
// scale-up at the next burst is no flap when the scale-down was timely.
// The run begins on the base, so the first burst meets a settled pool.
func Bursts(peak float64, d time.Duration) Trace {
	const (
		base = 0.1
		gap  = 4 * time.Minute
	)
	lengths := []time.Duration{30 * time.Second, 60 * time.Second, 120 * time.Second, 300 * time.Second}
	var cycle time.Duration
	for _, l := range lengths {
		cycle += gap + l
	}
	return Trace{Name: "bursts", Duration: d, Rate: func(t time.Duration) float64 {
		in := t % cycle
		for _, l := range lengths {
			if in < gap {
				return peak * base
			}
			if in < gap+l {
				return peak
			}
			in -= gap + l
		}
		return peak * base
	}}
}

// Constant is r req/s throughout: the model's own tests.
func Constant(r float64, d time.Duration) Trace {
	return Trace{Name: "constant", Duration: d, Rate: func(time.Duration) float64 { return r }}
}
