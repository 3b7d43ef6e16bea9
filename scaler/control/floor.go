package control

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"lbscale/internal/state"
	"lbscale/scaler/config"
	"lbscale/scaler/decide"
	"lbscale/scaler/forecast"
)

// Reasons for starts that keep a floor above MIN_REPLICAS: they label the
// scale-event metric and the /status events, so that a start the schedule
// or the forecast asked for does not read as a reaction to load.
const (
	// ReasonSchedule: an entry of MIN_SCHEDULE is active.
	ReasonSchedule decide.Reason = "schedule"
	// ReasonForecast: the learned floor expects the load to rise within a
	// cold start (and a bucket).
	ReasonForecast decide.Reason = "forecast"
)

// Floor sources, as /status names them.
const (
	FloorMinReplicas = "min_replicas"
	FloorSchedule    = "schedule"
	FloorForecast    = "forecast"
)

// opForecast names the learned floor's store reads and writes among the
// problems of /status.
const opForecast = "redis forecast"

// forecastRetry spaces the attempts of a new leader to read the history
// while the store fails.
const forecastRetry = 5 * time.Second

// Floor is the pool's minimum for one poll and where it comes from. Its
// Replicas is the autoscaler's Sizing.Min for the poll: decide.Up starts
// containers below it without a cooldown, and Shrink and Idle never drain
// below it.
type Floor struct {
	Replicas int `json:"replicas"`
	// Source is the largest of the three (min_replicas on a tie).
	Source string `json:"source"`
	// Schedule and Forecast are each floor's own count now (0: none).
	Schedule int `json:"schedule"`
	Forecast int `json:"forecast"`
	// Predicted is the arrival rate (req/s) the forecast expects one
	// LeadMs ahead; 0 when FORECAST is off or nothing was recorded.
	Predicted float64 `json:"predicted"`
	LeadMs    float64 `json:"lead_ms"`
}

// chooseFloor is max(MIN_REPLICAS, schedule, forecast), never above
// MAX_REPLICAS. E.g. MIN_REPLICAS 1, schedule 4, forecast 6, MAX_REPLICAS 5:
// 5, from the forecast. MIN_REPLICAS 2, schedule 2: 2, from min_replicas
// (the schedule adds nothing).
func chooseFloor(minReplicas, maxReplicas, sched, fc int) Floor {
	f := Floor{Replicas: minReplicas, Source: FloorMinReplicas, Schedule: sched, Forecast: fc}
	if sched > f.Replicas {
		f.Replicas, f.Source = sched, FloorSchedule
	}
	if fc > f.Replicas {
		f.Replicas, f.Source = fc, FloorForecast
	}
	f.Replicas = min(f.Replicas, maxReplicas)
	return f
}

// reason relabels a start decide.Up made for the floor: a shortfall below
// Replicas but not below MIN_REPLICAS is the schedule's or the forecast's.
// have is the ready and starting count the decision saw.
func (f Floor) reason(r decide.Reason, have, minReplicas int) decide.Reason {
	if r != decide.ReasonMinReplicas || have < minReplicas {
		return r
	}
	switch f.Source {
	case FloorSchedule:
		return ReasonSchedule
	case FloorForecast:
		return ReasonForecast
	}
	return r
}

// floorKeeper works out the pool's floor at each poll: MIN_REPLICAS, the
// schedule (MIN_SCHEDULE) and the learned floor (FORECAST). For the
// learned floor it records the pool's arrival rate bucket by bucket,
// writes each finished bucket to the store and reads the whole history
// when a term starts, so that a new leader predicts from what the old one
// recorded. Its decisions run on the lead goroutine; latest may be read
// from any.
type floorKeeper struct {
	cfg   config.Config
	store state.Forecasts
	log   *slog.Logger
	rep   *reporter
	gauge *prometheus.GaugeVec
	// cold is the latest measured cold start (0: none yet): how far ahead
	// the forecast looks.
	cold func() time.Duration
	// size turns a predicted arrival rate at the given service time into
	// containers (forecast.Containers at TARGET_INFLIGHT).
	size func(rate float64, service time.Duration) int

	// The lead goroutine's own, reset at the end of a term.
	hist     forecast.History
	rec      forecast.Recorder
	loaded   bool      // the history was read from the store this term
	triedAt  time.Time // the latest read attempt
	lastServ time.Duration

	mu  sync.Mutex // protects cur
	cur Floor
}

func newFloorKeeper(cfg config.Config, store state.Forecasts, log *slog.Logger, rep *reporter, reg prometheus.Registerer, cold func() time.Duration) *floorKeeper {
	f := &floorKeeper{cfg: cfg, store: store, log: log, rep: rep, cold: cold,
		hist: forecast.History{}, rec: forecast.Recorder{Bucketing: cfg.Bucketing()},
		size: decide.Sizing{Target: cfg.TargetInflight, WaitTarget: cfg.LatencyTarget}.ForRate,
		gauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name:        "lbscale_scaler_floor_replicas",
			Help:        "The pool's minimum this poll (floor) and its parts: MIN_REPLICAS, the active MIN_SCHEDULE entry, the learned floor (forecast).",
			ConstLabels: prometheus.Labels{"pool": cfg.Pool},
		}, []string{"of"}),
	}
	reg.MustRegister(f.gauge)
	f.cur = chooseFloor(cfg.MinReplicas, cfg.MaxReplicas, 0, 0)
	return f
}

// poll records cur's arrival rate for the learned floor and returns the
// floor at cur.At.
func (f *floorKeeper) poll(ctx context.Context, cur decide.Sample) Floor {
	if f.cfg.Forecast {
		f.load(ctx, cur.At)
		if start, mean, done := f.rec.Add(cur.At, cur.Arrivals); done {
			f.hist[start] = mean
			f.hist.Trim(f.cfg.Bucketing(), cur.At)
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			err := f.store.PutBucketRate(wctx, state.BucketRate{Start: start, Rate: mean}, f.cfg.Bucketing().Oldest(cur.At))
			cancel()
			if err != nil {
				// This leader predicts from its own copy; the bucket is
				// lost to the next leader only.
				f.rep.fail(opForecast, err)
			} else {
				f.rep.recover(opForecast)
			}
		}
	}
	return f.at(cur)
}

// load reads the history once per term (retrying while the store fails),
// keeping any bucket this term closed meanwhile.
func (f *floorKeeper) load(ctx context.Context, now time.Time) {
	if f.loaded || (!f.triedAt.IsZero() && now.Sub(f.triedAt) < forecastRetry) {
		return
	}
	f.triedAt = now
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	rs, err := f.store.BucketRates(rctx)
	cancel()
	if err != nil {
		f.rep.fail(opForecast, err)
		return
	}
	f.rep.recover(opForecast)
	h := make(forecast.History, len(rs)+len(f.hist))
	for _, r := range rs {
		h[r.Start] = r.Rate
	}
	for at, r := range f.hist {
		h[at] = r
	}
	h.Trim(f.cfg.Bucketing(), now)
	f.hist, f.loaded = h, true
	f.log.Info("forecast history read", "buckets", len(h))
}

// at is the floor at cur.At from what is recorded, without recording cur.
// The service time is cur's, or the latest one measured this term when
// cur has none (a pool at zero serves nothing).
func (f *floorKeeper) at(cur decide.Sample) Floor {
	sched := f.cfg.MinSchedule.Floor(cur.At)
	var fc int
	var rate float64
	var lead time.Duration
	if f.cfg.Forecast {
		if cur.Service > 0 {
			f.lastServ = cur.Service
		}
		lead = f.cold()
		rate = f.hist.Predict(f.cfg.Bucketing(), cur.At, lead)
		fc = f.size(rate, f.lastServ)
	}
	fl := chooseFloor(f.cfg.MinReplicas, f.cfg.MaxReplicas, sched, fc)
	fl.Predicted, fl.LeadMs = rate, float64(lead)/float64(time.Millisecond)
	f.mu.Lock()
	prev := f.cur
	f.cur = fl
	f.mu.Unlock()
	if prev.Replicas != fl.Replicas || prev.Source != fl.Source {
		f.log.Info("floor", "replicas", fl.Replicas, "source", fl.Source, "schedule", sched, "forecast", fc,
			"predicted_rps", rate, "lead", lead.String())
	}
	f.gauge.WithLabelValues("floor").Set(float64(fl.Replicas))
	f.gauge.WithLabelValues(FloorMinReplicas).Set(float64(f.cfg.MinReplicas))
	f.gauge.WithLabelValues(FloorSchedule).Set(float64(sched))
	f.gauge.WithLabelValues(FloorForecast).Set(float64(fc))
	return fl
}

// latest is the floor of the latest poll.
func (f *floorKeeper) latest() Floor {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur
}

// endTerm forgets the term's history and open bucket: the next term reads
// the store afresh, and the next leader writes the bucket this one left
// open. Called once the lead goroutine has stopped.
func (f *floorKeeper) endTerm() {
	f.hist, f.loaded, f.triedAt, f.lastServ = forecast.History{}, false, time.Time{}, 0
	f.rec.Reset()
	f.mu.Lock()
	f.cur = chooseFloor(f.cfg.MinReplicas, f.cfg.MaxReplicas, 0, 0)
	f.mu.Unlock()
}
