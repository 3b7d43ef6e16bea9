package sim

import "time"

// Model is the modelled pool and traffic (see the package doc).
type Model struct {
	// Step is the time step (dt).
	Step time.Duration
	// Seed seeds the Poisson arrivals and the service jitter.
	Seed uint64
	// Poisson arrivals rather than deterministically spaced ones.
	Poisson bool
	// ColdStart is the time from a start decision to a ready container.
	ColdStart time.Duration
	// Capacity is the requests a container serves at once (MAX_INFLIGHT);
	// 0: the scaler's Target, as the scaler's config defaults it.
	Capacity int
	// Service is the mean service time S; Jitter spreads it uniformly over
	// S × [1-Jitter, 1+Jitter] (0: deterministic).
	Service time.Duration
	Jitter  float64
	// QueueTimeout is QUEUE_TIMEOUT; QueueMax is QUEUE_MAX, each
	// balancer's queue bound (0: unbounded).
	QueueTimeout time.Duration
	QueueMax     int
	// Split is the balancers' shares of the traffic, one per balancer
	// (e.g. {9, 1}: two balancers, 90% and 10%, as the compose
	// experiments' load generators split it). Each has its own FIFO queue
	// and its own grants of each container's slots (see the package doc).
	// Empty: one balancer, which holds every slot.
	Split []float64
	// Sync is the balancers' SYNC_INTERVAL: how often the slot division
	// follows their demands. It is rounded to whole steps, at least one.
	Sync time.Duration
	// SlowStart is the balancers' SLOW_START ramp (0: none).
	SlowStart time.Duration
	// DrainSettle is DRAIN_SETTLE; StopDelay is how long the engine takes
	// to stop a drained container (it still costs meanwhile).
	DrainSettle, StopDelay time.Duration
	// Transient is how long after a change of load requests are left out
	// of the p99 at steady load.
	Transient time.Duration
	// Initial is the number of ready containers at 0; negative: what the
	// trace's first second needs (a warm pool, so that a run measures the
	// policy rather than a boot from nothing).
	Initial int
}

// Scaler is the scaler's configuration as the policies read it (the
// environment variables of scaler/config).
type Scaler struct {
	// Target is TARGET_INFLIGHT; Min and Max are MIN_REPLICAS and
	// MAX_REPLICAS.
	Target, Min, Max int
	// Poll is POLL_INTERVAL; ScaleDownEvery the SCALE_DOWN_INTERVAL.
	Poll, ScaleDownEvery time.Duration
	// Stable and Panic are STABLE_WINDOW and PANIC_WINDOW.
	Stable, Panic time.Duration
	// BacklogDrain is BACKLOG_DRAIN; Rate is MAX_SCALE_DOWN_RATE.
	BacklogDrain time.Duration
	Rate         float64
	// LatencyTarget is LATENCY_TARGET (0: no staffing headroom).
	LatencyTarget time.Duration
	// IdleTimeout is IDLE_TIMEOUT; Cooldown is SCALE_UP_COOLDOWN.
	IdleTimeout, Cooldown time.Duration
}

// Config is one run's setting.
type Config struct {
	Model
	Scaler
}

// Default is the setting: S = 200 ms, target = capacity = 4,
// cold start 1 s, POLL_INTERVAL 250 ms, SCALE_DOWN_INTERVAL 10 s,
// STABLE_WINDOW 60 s, PANIC_WINDOW 6 s, MAX_SCALE_DOWN_RATE 2,
// BACKLOG_DRAIN 2 s, IDLE_TIMEOUT 60 s, and the scaler's and balancer's
// defaults for the rest (SCALE_UP_COOLDOWN 1 s, DRAIN_SETTLE 1 s,
// QUEUE_TIMEOUT 30 s, SYNC_INTERVAL 25 ms), with Poisson arrivals and two
// balancers taking 90% and 10% of the traffic. Max is left to the caller
// (MaxFor), since it depends on the scale.
func Default() Config {
	return Config{
		Model: Model{
			Step:         50 * time.Millisecond,
			Seed:         1,
			Poisson:      true,
			ColdStart:    time.Second,
			Service:      200 * time.Millisecond,
			QueueTimeout: 30 * time.Second,
			Split:        []float64{9, 1},
			Sync:         25 * time.Millisecond,
			DrainSettle:  time.Second,
			Transient:    10 * time.Second,
			Initial:      -1,
		},
		Scaler: Scaler{
			Target:         4,
			Min:            1,
			Max:            1000,
			Poll:           250 * time.Millisecond,
			ScaleDownEvery: 10 * time.Second,
			Stable:         60 * time.Second,
			Panic:          6 * time.Second,
			BacklogDrain:   2 * time.Second,
			LatencyTarget:  200 * time.Millisecond,
			Rate:           2,
			IdleTimeout:    60 * time.Second,
			Cooldown:       time.Second,
		},
	}
}

// MaxFor is a MAX_REPLICAS with room for ten times a trace's peak, for
// both policies: far enough above what either asks for that the bound
// does not decide a comparison. KPA reads the queue of a cold start as
// standing concurrency and overshoots at a step up; a tighter bound would
// hide that overshoot's cost (and its latency benefit).
//
// E.g. a trace peaking at 100 containers: MAX_REPLICAS 1,010.
func MaxFor(peak int) int { return 10*peak + 10 }

// capacity is Model.Capacity or its default, the target.
func (c Config) capacity() int {
	if c.Capacity > 0 {
		return c.Capacity
	}
	return max(c.Target, 1)
}

// split is the balancers' traffic shares, normalised to sum to 1 (one
// balancer when Split is empty or sums to nothing).
func (c Config) split() []float64 {
	var sum float64
	for _, w := range c.Split {
		sum += max(w, 0)
	}
	if sum <= 0 {
		return []float64{1}
	}
	out := make([]float64, len(c.Split))
	for i, w := range c.Split {
		out[i] = max(w, 0) / sum
	}
	return out
}

// steps is d in whole steps, at least 1 (rounded to the nearest).
func (c Config) steps(d time.Duration) int64 {
	return max(int64((d+c.Step/2)/c.Step), 1)
}
