package decide

import (
	"math"
	"time"
)

// Windows keeps the leader's recent samples, for the panic and stable
// windows. It is pure bookkeeping: the time comes with each sample.
type Windows struct {
	// Stable and Panic are STABLE_WINDOW and PANIC_WINDOW.
	Stable, Panic time.Duration
	// Every is the least spacing of recorded samples (half a poll): readings
	// taken more often (on demand signals, which come with every balancer
	// sync while requests queue) are not recorded. The means weigh each
	// sample by the time it stands for (see weight), so the busy moments
	// the demand signals sample more densely do not weigh more than quiet
	// ones.
	Every time.Duration
	// Gap is the longest time between two samples that still counts as a
	// continuous record (0: the panic window, and at least four Every). After a longer gap (the load
	// could not be read, say, while the lease held) the record restarts:
	// Full waits for a whole stable window again, since what happened in
	// the gap is unknown and a scale-down must not act on it.
	Gap time.Duration

	samples []Sample // oldest first, none older than the longer window
	first   time.Time
	// service is the latest measured service time. A sample without one
	// (the balancers restarted, or no request finished in their last
	// second) is read with it, rather than as if its arrivals cost nothing.
	service time.Duration
}

// Add records s unless it comes within Every of the previous one; samples
// must come in time order. Its service time, if measured, is remembered
// either way.
func (w *Windows) Add(s Sample) {
	if s.Service > 0 {
		w.service = s.Service
	}
	n := len(w.samples)
	if w.first.IsZero() || n > 0 && s.At.Sub(w.samples[n-1].At) > w.gap() {
		w.first = s.At
	}
	if n > 0 && s.At.Sub(w.samples[n-1].At) < w.Every {
		return
	}
	w.samples = append(w.samples, s)
	keep := s.At.Add(-max(w.Stable, w.Panic))
	i := 0
	for i < len(w.samples)-1 && w.samples[i].At.Before(keep) {
		i++
	}
	if i > 0 {
		w.samples = append(w.samples[:0], w.samples[i:]...)
	}
}

func (w *Windows) gap() time.Duration {
	if w.Gap > 0 {
		return w.Gap
	}
	return max(w.Panic, 4*w.Every)
}

// Reset forgets every sample and the service time: a new leader has no
// history of its own.
func (w *Windows) Reset() {
	w.samples, w.first, w.service = w.samples[:0], time.Time{}, 0
}

// Full reports whether the samples cover a whole stable window up to now
// without a gap; until they do, a scale-down would act on a part of the
// window (a leader that just took over, or one that could not read the
// load for a while, knows nothing of the minute before).
func (w *Windows) Full(now time.Time) bool {
	if w.first.IsZero() || now.Sub(w.first) < w.Stable {
		return false
	}
	n := len(w.samples)
	return n > 0 && now.Sub(w.samples[n-1].At) <= w.gap()
}

// Service is cur's service time, or the latest measured one when cur has
// none (0: never measured).
func (w *Windows) Service(cur Sample) time.Duration {
	if cur.Service > 0 {
		return cur.Service
	}
	return w.service
}

// steady is s.Steady with the latest measured service time when s has
// none: arrivals the balancers counted while no request finished still
// cost what requests cost.
func (w *Windows) steady(s Sample) float64 {
	if s.Service <= 0 && w.service > 0 {
		s.Service = w.service
	}
	return s.Steady()
}

// weight is the time sample i stands for: the time since the sample
// before it, at most two Every (a poll); the first one weighs a poll.
// Equal weights when Every is 0.
func (w *Windows) weight(i int) float64 {
	if w.Every <= 0 {
		return 1
	}
	poll := 2 * w.Every
	if i == 0 {
		return poll.Seconds()
	}
	return min(w.samples[i].At.Sub(w.samples[i-1].At), poll).Seconds()
}

// PanicMean is the time-weighted mean steady concurrency over the panic
// window up to now (0 with no sample in it).
func (w *Windows) PanicMean(now time.Time) float64 {
	return w.panicMean(now, w.steady, nil)
}

// PanicQueued is the time-weighted mean queue length over the panic window
// up to now.
func (w *Windows) PanicQueued(now time.Time) float64 {
	return w.panicMean(now, queued, nil)
}

func queued(s Sample) float64 { return float64(max(s.Queued, 0)) }

// panicMean is f's time-weighted mean over the panic window up to now;
// extra, if not nil, is a reading not recorded (within Every of the last)
// that counts too, for the time since the last recorded one.
func (w *Windows) panicMean(now time.Time, f func(Sample) float64, extra *Sample) float64 {
	var sum, total float64
	for i, s := range w.samples {
		if now.Sub(s.At) < w.Panic && !s.At.After(now) {
			wt := w.weight(i)
			sum += wt * f(s)
			total += wt
		}
	}
	if extra != nil {
		wt := 1.0
		if n := len(w.samples); w.Every > 0 && n > 0 {
			wt = max(extra.At.Sub(w.samples[n-1].At), time.Millisecond).Seconds()
		}
		sum += wt * f(*extra)
		total += wt
	}
	if total == 0 {
		return 0
	}
	return sum / total
}

// recorded reports whether s is the latest sample recorded.
func (w *Windows) recorded(s Sample) bool {
	return len(w.samples) > 0 && w.samples[len(w.samples)-1] == s
}

// StableMax is the highest steady concurrency over the stable window up to
// now (0 with no sample in it). Samples taken without a service time are
// read with the latest one measured, so the in-flight counts of a pool
// working off a queue before any request finished do not stand as demand.
//
// Why the maximum rather than a mean with headroom: a mean lets the pool
// shrink inside a minute that held a burst, so the next burst of the same
// shape starts containers again (a flap, and its cold starts sit in the
// latency); the maximum shrinks only to what every moment of the last
// window needed, so a pool shrunk by it fits every second of the window.
// The cost is the window itself: after a step down the surplus runs for
// STABLE_WINDOW more (the price Knative and the HPA's 300 s stabilisation
// pay too), and under Poisson arrivals the maximum sits a little above the
// mean (about two standard deviations of a one-second count). Read as the
// panic window's means instead, the maximum sits closer to the rate, but
// a scale-up while requests queue reads the latest second, so the pool
// shrinks below what the next such second asks: measured in simulation,
// 10 times the flaps.
func (w *Windows) StableMax(now time.Time) float64 {
	var m float64
	for _, s := range w.samples {
		if now.Sub(s.At) < w.Stable && !s.At.After(now) {
			m = max(m, w.steady(s))
		}
	}
	return m
}

// Rising reports whether the steady demand has been rising through the
// stable window: the panic window's mean now, half a window back and a
// window back each above the next by more than two standard deviations
// of the difference of two such means under Poisson arrivals. While it
// rises, no surplus is drained: a rise keeps setting new maxima, so what a
// scale-up started above the window's maximum (its backlog, a step read at
// once) is needed again before the window is out, and draining it is a
// flap (measured: 10 an hour at 1,000 containers on a compressed day). A
// step is no rise by this test (one of the two halves is flat), so the
// backlog a step started still goes as soon as the queue is worked off.
//
// E.g. a 60 s window with a 6 s panic window at 200 ms: means of 10,000,
// 10,210 and 10,420 req/s, 27 s apart, each 210 above the one before with
// a noise of 2√(2 × 10,420 / 6) = 118: rising. 10,000, 10,000, 10,420
// (a step in the last half): not.
func (w *Windows) Rising(now time.Time) bool {
	if w.Panic <= 0 || w.service <= 0 || w.Stable <= w.Panic || len(w.samples) == 0 {
		return false
	}
	back := w.Stable - w.Panic
	if now.Sub(w.samples[0].At) < back {
		return false
	}
	m0 := w.panicMean(now, w.steady, nil)
	m1 := w.panicMean(now.Add(-back/2), w.steady, nil)
	m2 := w.panicMean(now.Add(-back), w.steady, nil)
	s := w.service.Seconds()
	noise := 2 * math.Sqrt(2*max(m0, m1, m2)/s/w.Panic.Seconds()) * s
	return m0-m1 > noise && m1-m2 > noise
}

// StableMaxConns is the highest connection count over the stable window up
// to now (0 with no sample in it). The maximum, as for StableMax: a pool
// shrunk by it carries every moment of the window, and connections that
// come back after a dip (clients reconnecting after a network blip) find
// their containers still there.
func (w *Windows) StableMaxConns(now time.Time) int64 {
	var m int64
	for _, s := range w.samples {
		if now.Sub(s.At) < w.Stable && !s.At.After(now) {
			m = max(m, s.Conns)
		}
	}
	return m
}
