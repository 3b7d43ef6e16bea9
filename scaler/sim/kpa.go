package sim

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"lbscale/scaler/decide"
)

// KPA is the baseline: Knative Serving's pod autoscaler decision
// (pkg/autoscaler/scaling, autoscaler.Scale), written from its published
// formula with its defaults, concurrency metric:
//
//   - observed concurrency is scraped once a Scrape (1 s), as Knative's
//     stats scraper does: from every ready pod when there are at most 3,
//     else from a random sample of ScrapeSample(ready) of them (14 of
//     100, 16 of 1,000), whose mean concurrency times the ready count
//     stands for the whole. A pod's concurrency is what its queue-proxy
//     reports: its mean in flight over the last second plus the requests
//     waiting in it, here an equal share of the balancers' queues (View.Pods).
//     With no pod ready it is the cluster's in flight plus queued (what
//     Knative's activator reports);
//   - the scrapes, one per second, are averaged over the stable window
//     (60 s, 60 buckets of a second) and the panic window (10% of it,
//     6 s); a decision every Tick (2 s, Knative's tick interval);
//   - desiredStable = ceil(stableAvg/target), desiredPanic =
//     ceil(panicAvg/target), each kept within [floor(ready/MaxDownRate),
//     ceil(MaxUpRate·ready)] (rates 2 and 1000), ready counted as at
//     least 1;
//   - panic mode begins, and is extended, whenever desiredPanic/ready ≥
//     PanicThreshold (200%), and ends once a whole stable window has passed
//     since it last held; in panic mode the desired count is the larger
//     of the two and never decreases;
//   - then MIN_REPLICAS and MAX_REPLICAS bound it (Knative's min-scale and
//     max-scale).
//
// Target is TARGET_INFLIGHT at a target utilisation of 1.0 (Knative's
// default is 0.7, which would give it 43% more headroom than our policy
// and make the comparison one of settings rather than of rules): both
// policies aim at the same concurrency per container.
//
// Carrying out the decision is the lbscale controller's, for both policies,
// so that only the rule differs: containers short of desired are reclaimed
// from the draining ones first, then started; containers above desired are
// drained, least busy first (fewest in flight, then newest), and drained
// alike. Starting containers cannot be cancelled, so an excess is taken
// from the ready ones.
type KPA struct {
	Target                      float64
	Min, Max                    int
	Stable, Panic, Tick, Scrape time.Duration
	PanicThreshold              float64
	MaxUpRate, MaxDownRate      float64
	// Rand picks the scraped pods (nil: the first ones, in creation
	// order).
	Rand *rand.Rand

	obs        []observation // oldest first, none older than Stable
	next       time.Time     // the next decision
	nextScrape time.Time     // the next scrape
	panicTime  time.Time     // the last tick over the panic threshold (zero: calm)
	maxPanic   int           // the most desired while panicking
}

type observation struct {
	at   time.Time
	conc float64
}

// NewKPA is Knative's defaults with the scaler's target, bounds and
// stable window; r picks the scraped pods.
func NewKPA(s Scaler, r *rand.Rand) *KPA {
	return &KPA{
		Target: float64(max(s.Target, 1)), Min: s.Min, Max: s.Max,
		Stable: s.Stable, Panic: s.Stable / 10, Tick: 2 * time.Second, Scrape: time.Second,
		PanicThreshold: 2, MaxUpRate: 1000, MaxDownRate: 2, Rand: r,
	}
}

// Name is "kpa".
func (k *KPA) Name() string { return "kpa" }

// Poll scrapes once a Scrape and, once a Tick, decides.
func (k *KPA) Poll(v View) Action {
	now := v.Sample.At
	if k.nextScrape.IsZero() || !now.Before(k.nextScrape) {
		k.nextScrape = now.Add(k.Scrape)
		k.record(now, k.scrape(v))
	}
	if !k.next.IsZero() && now.Before(k.next) {
		return Action{}
	}
	k.next = now.Add(k.Tick)
	return k.act(k.Desired(now, v.Pool.Ready), v)
}

// ScaleDown does nothing: KPA scales both ways at its tick.
func (k *KPA) ScaleDown(View) Action { return Action{} }

// scrape is one reading of the revision's concurrency (see KPA).
//
// E.g. 100 ready pods: 14 sampled, reporting a mean of 3.5, read as 350.
func (k *KPA) scrape(v View) float64 {
	pods := v.Pods()
	if len(pods) == 0 {
		return float64(max(v.Sample.Inflight, 0) + max(v.Sample.Queued, 0))
	}
	n := ScrapeSample(len(pods))
	var sum float64
	for i := range n {
		// A partial Fisher–Yates shuffle: pods[:n] is a uniform sample.
		if k.Rand != nil {
			j := i + k.Rand.IntN(len(pods)-i)
			pods[i], pods[j] = pods[j], pods[i]
		}
		sum += pods[i]
	}
	return sum / float64(n) * float64(len(pods))
}

// ScrapeSample is how many of ready pods Knative's stats scraper reads:
// all of them up to 3, else the sample that estimates the pods' mean
// concurrency within ±5 at 95% confidence if their variance were 100,
// corrected for a finite population: ceil(N·X / (N + X − 1)) with X =
// 1.96² × 100 / 5² ≈ 15.37. It grows to 16 and no further, so at scale
// the reading rests on 16 pods however many there are.
//
// E.g. 10 pods: 7; 100: 14; 1,000: 16.
func ScrapeSample(ready int) int {
	if ready <= 3 {
		return max(ready, 0)
	}
	const x = 1.96 * 1.96 * 100 / (5 * 5)
	n := float64(ready)
	return int(math.Ceil(n * x / (n + x - 1)))
}

func (k *KPA) record(at time.Time, conc float64) {
	k.obs = append(k.obs, observation{at, conc})
	i := 0
	for i < len(k.obs)-1 && at.Sub(k.obs[i].at) >= k.Stable {
		i++
	}
	if i > 0 {
		k.obs = append(k.obs[:0], k.obs[i:]...)
	}
}

// mean is the mean concurrency observed within w up to now.
func (k *KPA) mean(now time.Time, w time.Duration) float64 {
	var sum float64
	n := 0
	for _, o := range k.obs {
		if now.Sub(o.at) < w && !o.at.After(now) {
			sum += o.conc
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// Desired is the KPA's pod count at now with ready pods (see KPA). It
// moves the panic state, so call it once per tick.
//
// E.g. target 4, 10 ready, stable mean 20, panic mean 90: desiredStable 5,
// desiredPanic 23, 23/10 ≥ 2 so panic: 23. Next tick, panic mean 30 (8):
// still 23, it never decreases while panicking.
func (k *KPA) Desired(now time.Time, ready int) int {
	r := math.Max(1, float64(ready))
	up := math.Ceil(k.MaxUpRate * r)
	down := math.Floor(r / k.MaxDownRate)
	// The float means of integers can land a hair above a whole number.
	dspc := math.Ceil(k.mean(now, k.Stable)/k.Target - 1e-9)
	dppc := math.Ceil(k.mean(now, k.Panic)/k.Target - 1e-9)
	stable := int(math.Min(math.Max(dspc, down), up))
	panicking := int(math.Min(math.Max(dppc, down), up))

	over := dppc/r >= k.PanicThreshold
	switch {
	case over:
		k.panicTime = now
	case !k.panicTime.IsZero() && k.panicTime.Add(k.Stable).Before(now):
		k.panicTime, k.maxPanic = time.Time{}, 0
	}
	want := stable
	if !k.panicTime.IsZero() {
		want = max(want, panicking)
		k.maxPanic = max(k.maxPanic, want)
		want = k.maxPanic
	}
	return min(max(want, k.Min), k.Max)
}

// Panicking reports whether the last decision was in panic mode.
func (k *KPA) Panicking() bool { return !k.panicTime.IsZero() }

// act turns a desired count into reclaims, starts or drains.
func (k *KPA) act(want int, v View) Action {
	p := v.Pool
	have := p.Ready + p.Starting
	switch {
	case want > have:
		need := want - have
		a := Action{Reclaim: min(need, p.Draining), Reason: decide.ReasonDemand}
		if have < k.Min {
			a.Reason = decide.ReasonMinReplicas
		} else if have == 0 {
			a.Reason = decide.ReasonFromZero
		}
		room := k.Max - (p.Ready + p.Starting + p.Draining + p.Stopping)
		a.Start = max(min(need-a.Reclaim, room), 0)
		return a
	case want < have && p.Ready > 0:
		return Action{Drain: leastBusy(v.Ready(), min(have-want, p.Ready))}
	}
	return Action{}
}

// leastBusy is the ids of the n ready containers with the fewest in
// flight, newest first among equals (the order Shrink drains in).
func leastBusy(ready []decide.Candidate, n int) []string {
	c := slices.Clone(ready)
	slices.SortFunc(c, func(a, b decide.Candidate) int {
		if d := cmp.Compare(a.Inflight, b.Inflight); d != 0 {
			return d
		}
		if d := b.ReadySince.Compare(a.ReadySince); d != 0 {
			return d
		}
		return cmp.Compare(a.ID, b.ID)
	})
	ids := make([]string, 0, min(n, len(c)))
	for _, x := range c[:min(n, len(c))] {
		ids = append(ids, x.ID)
	}
	return ids
}
