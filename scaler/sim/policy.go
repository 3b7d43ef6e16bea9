package sim

import (
	"time"

	"lbscale/scaler/decide"
	"lbscale/scaler/forecast"
)

// Policy is a scaling policy as the simulation loop drives it: the
// project's (Ours) and Knative's (KPA) behind one interface, so that one
// loop runs both and they differ only in their decisions. A Policy holds
// state across calls (windows, panic mode): use a fresh one per run.
type Policy interface {
	// Name labels the policy in results.
	Name() string
	// Poll is called every POLL_INTERVAL.
	Poll(v View) Action
	// ScaleDown is called every SCALE_DOWN_INTERVAL, after that step's
	// Poll.
	ScaleDown(v View) Action
}

// View is what a policy sees of the cluster at a call: what the leader
// gathers before calling decide.
type View struct {
	Sample decide.Sample
	Pool   decide.Pool
	// LastUp is the last start for demand or from zero (zero: never).
	LastUp time.Time
	// ready lists the ready containers as candidates (built on demand:
	// most polls need only the counts).
	ready func() []decide.Candidate
	// pods lists the ready containers' concurrency over the last whole
	// second, as their queue-proxies would report it to Knative's scraper.
	pods func() []float64
}

// Pods is each ready container's concurrency over the last whole second:
// its mean in flight plus its share of the mean queue (see sim.pods).
func (v View) Pods() []float64 {
	if v.pods == nil {
		return nil
	}
	return v.pods()
}

// Ready lists the ready containers as scale-down candidates.
func (v View) Ready() []decide.Candidate {
	if v.ready == nil {
		return nil
	}
	return v.ready()
}

// Action is what a policy asks for: start containers, reclaim draining
// ones (newest first), drain ready ones by id.
type Action struct {
	Start, Reclaim int
	// Reason for Start; starts for demand or from zero set LastUp (the
	// cooldown's reference), as the controller's start does.
	Reason decide.Reason
	Drain  []string
	// Panic: a scale-up read from the latest reading, a step beyond the
	// mean and its noise while requests queued (UpResult.Panic; KPA's
	// panic mode for the baseline).
	Panic bool
}

// Ours drives decide.Autoscaler exactly as scaler/control does: Poll with
// the pool's counts and cold start, the last demand start and no
// back-off; ScaleDown with the ready candidates and the same pool.
type Ours struct {
	A  decide.Autoscaler
	fc *floorForecast // the learned floor (nil: off)
}

// NewOurs is the project's policy with rule (SCALE_DOWN), set up as the
// controller's New sets it up from s.
func NewOurs(s Scaler, rule decide.Rule) *Ours {
	return &Ours{A: decide.Autoscaler{
		Sizing:      decide.Sizing{Target: s.Target, Min: s.Min, Max: s.Max, BacklogDrain: s.BacklogDrain, WaitTarget: s.LatencyTarget},
		Rule:        rule,
		Rate:        s.Rate,
		IdleTimeout: s.IdleTimeout,
		Cooldown:    s.Cooldown,
		Win:         decide.Windows{Stable: s.Stable, Panic: s.Panic, Every: s.Poll / 2},
	}}
}

// WithForecast turns on the learned floor (FORECAST=on) over b, as the
// controller's floor keeper runs it: each poll records the offered rate
// into its bucket, and the minimum of each decision is the containers
// (Sizing.ForRate) the highest recorded rate one cold start ahead needs.
func (o *Ours) WithForecast(b forecast.Bucketing, min0 int) *Ours {
	o.fc = &floorForecast{b: b, rec: forecast.Recorder{Bucketing: b}, hist: forecast.History{}, min: min0}
	return o
}

// floorForecast is the learned floor's state in a run.
type floorForecast struct {
	b       forecast.Bucketing
	rec     forecast.Recorder
	hist    forecast.History
	min     int // MIN_REPLICAS
	service time.Duration
}

// floor records v's rate and sets the autoscaler's minimum for this call.
func (o *Ours) floor(v View) {
	f := o.fc
	if f == nil {
		return
	}
	if start, mean, done := f.rec.Add(v.Sample.At, v.Sample.Arrivals); done {
		f.hist[start] = mean
		f.hist.Trim(f.b, v.Sample.At)
	}
	if v.Sample.Service > 0 {
		f.service = v.Sample.Service
	}
	rate := f.hist.Predict(f.b, v.Sample.At, v.Pool.ColdStart)
	o.A.Sizing.Min = min(max(f.min, o.A.Sizing.ForRate(rate, f.service)), o.A.Sizing.Max)
}

// Name is "ours/" and the rule, "+forecast" with the learned floor.
func (o *Ours) Name() string {
	if o.fc != nil {
		return "ours/" + string(o.A.Rule) + "+forecast"
	}
	return "ours/" + string(o.A.Rule)
}

// Poll is Autoscaler.Poll.
func (o *Ours) Poll(v View) Action {
	o.floor(v)
	res := o.A.Poll(v.Sample, v.Pool, v.LastUp, time.Time{})
	return Action{Start: res.Start, Reclaim: res.Reclaim, Reason: res.Reason, Panic: res.Panic}
}

// ScaleDown is Autoscaler.ScaleDown; the surplus and idle victims are
// drained alike.
func (o *Ours) ScaleDown(v View) Action {
	o.floor(v)
	surplus, idle := o.A.ScaleDown(v.Sample, v.Ready(), v.Pool)
	return Action{Drain: append(surplus, idle...)}
}

// Fixed never scales: the model's own tests run on a pool of a set size.
type Fixed struct{}

// Name is "fixed".
func (Fixed) Name() string { return "fixed" }

// Poll does nothing.
func (Fixed) Poll(View) Action { return Action{} }

// ScaleDown does nothing.
func (Fixed) ScaleDown(View) Action { return Action{} }
