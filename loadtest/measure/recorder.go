// Package measure records what a load run did: how many requests were
// offered, sent, dropped and late, what came back, and how long it took, in
// HDR histograms (microsecond resolution, three significant digits) overall,
// per second, per target and per answering backend.
//
// Attribution to seconds: offered, sent, dropped and late count in the second
// the request was *due*; completions (ok, errors, latency) in the second they
// *finished*. That way "achieved" is a true throughput and the offered column
// is the schedule, even when latency is long.
//
// Latency percentiles are of successful (2xx/3xx) responses, measured by the
// driver from the intended send time. Failures are counted by kind instead,
// so a balancer answering 503 in a microsecond cannot make latency look good.
package measure

import (
	"maps"
	"sort"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// ringSize is how many seconds of per-second histograms stay open at once.
// Seconds close at the next Tick after they end, so two would do; four leaves
// room for a slow ticker without allocating.
const ringSize = 4

// Config sets up a Recorder.
type Config struct {
	Start   time.Time
	Targets []string // target URLs, indexed as the driver indexes them
	// MaxLatency is the largest latency the histograms track; longer values
	// are recorded as MaxLatency. Default 1 h.
	MaxLatency time.Duration
	// LateAfter is how far behind its intended time a request may leave
	// before it counts as late. Default 10 ms: below that is scheduler
	// jitter, above it the driver itself is falling behind.
	LateAfter time.Duration
}

// Second is one row of the time series. Latencies are zero when nothing
// completed successfully in the second.
type Second struct {
	Offered, Sent, Dropped, Late int64
	OK, Failed                   int64
	ErrStatus, ErrTimeout        int64
	ErrConnection, ErrOther      int64
	ErrRefused                   int64
	P50, P90, P99, P999, Max     time.Duration
	// ByStatus splits ErrStatus by HTTP status (nil when there was none),
	// so a second of 503s is told apart from one of 502s.
	ByStatus map[int]int64
}

type targetStats struct {
	offered, sent, dropped, ok, failed int64
	errors                             map[ErrKey]int64
	backends                           map[string]int64
	lat                                *hdr.Histogram
	slow                               slowest
}

type backendStats struct {
	requests, ok, failed int64
	lat                  *hdr.Histogram
}

type slot struct {
	sec int // -1: free
	h   *hdr.Histogram
}

// Recorder accumulates a run's measurements. Its methods are safe for
// concurrent use; each takes one short lock and allocates nothing once a
// backend id has been seen.
type Recorder struct {
	mu        sync.Mutex
	start     time.Time
	maxUS     int64
	lateAfter time.Duration

	offered, sent, dropped, late, ok, failed, bytes int64
	maxLag                                          time.Duration
	lastDue, lastDone                               time.Time

	total    *hdr.Histogram
	lag      *hdr.Histogram // send lag: actual − intended send time
	errors   map[ErrKey]int64
	urls     []string
	targets  []targetStats
	backends map[string]*backendStats
	secs     []Second
	ring     [ringSize]slot
	slow     slowest // traced requests only
	// closed: seconds before it have final percentiles (Tick closed them).
	// A completion stamped in such a second, but recorded after its Tick
	// (the clock is read before the lock), counts everywhere except in that
	// second's percentiles, which a lone late value would otherwise replace.
	closed int
}

// New returns an empty Recorder.
func New(c Config) *Recorder {
	if c.MaxLatency <= 0 {
		c.MaxLatency = time.Hour
	}
	if c.LateAfter <= 0 {
		c.LateAfter = 10 * time.Millisecond
	}
	r := &Recorder{
		start:     c.Start,
		maxUS:     c.MaxLatency.Microseconds(),
		lateAfter: c.LateAfter,
		errors:    map[ErrKey]int64{},
		backends:  map[string]*backendStats{},
		urls:      append([]string(nil), c.Targets...),
		targets:   make([]targetStats, len(c.Targets)),
		slow:      newSlowest(SlowestKept),
	}
	r.total = r.newHist()
	r.lag = r.newHist()
	for i := range r.targets {
		r.targets[i] = targetStats{errors: map[ErrKey]int64{}, backends: map[string]int64{}, lat: r.newHist(), slow: newSlowest(SlowestKept)}
	}
	for i := range r.ring {
		r.ring[i] = slot{sec: -1, h: r.newHist()}
	}
	return r
}

func (r *Recorder) newHist() *hdr.Histogram { return hdr.New(1, r.maxUS, 3) }

// Start is the run's time zero.
func (r *Recorder) Start() time.Time { return r.start }

// LateAfter is the lateness threshold in use.
func (r *Recorder) LateAfter() time.Duration { return r.lateAfter }

func (r *Recorder) second(t time.Time) int {
	d := t.Sub(r.start)
	if d < 0 {
		return 0
	}
	return int(d / time.Second)
}

// row returns the row of second s, growing the series; callers hold mu.
func (r *Recorder) row(s int) *Second {
	for len(r.secs) <= s {
		r.secs = append(r.secs, Second{})
	}
	return &r.secs[s]
}

// Dispatched records a request that was due at intended: sent `lag` after
// it, or dropped because the concurrency cap was reached.
func (r *Recorder) Dispatched(intended time.Time, lag time.Duration, target int, dropped bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	row := r.row(r.second(intended))
	row.Offered++
	r.offered++
	r.targets[target].offered++
	if intended.After(r.lastDue) {
		r.lastDue = intended
	}
	if dropped {
		row.Dropped++
		r.dropped++
		r.targets[target].dropped++
		return
	}
	row.Sent++
	r.sent++
	r.targets[target].sent++
	if lag > r.lateAfter {
		row.Late++
		r.late++
	}
	r.maxLag = max(r.maxLag, lag)
	_ = r.lag.RecordValue(min(max(lag.Microseconds(), 1), r.maxUS))
}

// Done records the outcome of a sent request; latency is done − intended.
// A traced request (o.Trace set) is also a candidate for the slowest lists,
// whatever its outcome, unless the run's own stop canceled it: a timeout
// is as worth looking up as a slow answer, a canceled request's latency
// is only when the run ended.
func (r *Recorder) Done(target int, intended, done time.Time, o Outcome) {
	us := min(max(done.Sub(intended).Microseconds(), 1), r.maxUS)
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.second(done)
	row := r.row(s)
	if done.After(r.lastDone) {
		r.lastDone = done
	}
	r.bytes += o.Bytes
	t := &r.targets[target]
	if !o.Trace.IsZero() && o.Kind != Canceled {
		sr := slowReq{trace: o.Trace, latency: done.Sub(intended), due: intended, target: target,
			status: o.Status, key: ErrKey{Kind: o.Kind}, backend: o.Backend}
		if o.Kind == Status {
			sr.key.Status = o.Status
		}
		r.slow.offer(sr)
		t.slow.offer(sr)
	}
	var b *backendStats
	if o.Backend != "" || o.Kind == OK || o.Kind == Status {
		b = r.backends[o.Backend]
		if b == nil {
			b = &backendStats{lat: r.newHist()}
			r.backends[o.Backend] = b
		}
		b.requests++
		t.backends[o.Backend]++
	}
	if o.Kind != OK {
		row.Failed++
		r.failed++
		t.failed++
		if b != nil {
			b.failed++
		}
		k := ErrKey{Kind: o.Kind}
		switch o.Kind {
		case Status:
			k.Status = o.Status
			row.ErrStatus++
			if row.ByStatus == nil {
				row.ByStatus = map[int]int64{}
			}
			row.ByStatus[o.Status]++
		case Timeout:
			row.ErrTimeout++
		case Connection:
			row.ErrConnection++
		case Refused:
			row.ErrRefused++
		default:
			row.ErrOther++
		}
		r.errors[k]++
		t.errors[k]++
		return
	}
	row.OK++
	r.ok++
	t.ok++
	b.ok++
	_ = r.total.RecordValue(us)
	_ = t.lat.RecordValue(us)
	_ = b.lat.RecordValue(us)
	if s < r.closed {
		return
	}
	sl := &r.ring[s%ringSize]
	if sl.sec != s {
		if sl.sec > s {
			return // its second already closed (a completion that took >4 s to report)
		}
		r.closeSlot(sl)
		sl.sec = s
	}
	_ = sl.h.RecordValue(us)
}

// closeSlot writes a slot's percentiles into its row and frees it; callers
// hold mu.
func (r *Recorder) closeSlot(sl *slot) {
	if sl.sec < 0 {
		return
	}
	row := r.row(sl.sec)
	if sl.h.TotalCount() > 0 {
		row.P50 = us(sl.h.ValueAtQuantile(50))
		row.P90 = us(sl.h.ValueAtQuantile(90))
		row.P99 = us(sl.h.ValueAtQuantile(99))
		row.P999 = us(sl.h.ValueAtQuantile(99.9))
		row.Max = us(sl.h.Max())
	}
	sl.h.Reset()
	sl.sec = -1
}

// Tick closes the per-second latency of every second before now's, and
// extends the series to now so seconds with no traffic still get a row.
// The driver calls it a few times a second and once at the end with the end
// time.
func (r *Recorder) Tick(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.second(now)
	if now.Sub(r.start) > 0 && len(r.secs) < cur {
		r.row(cur - 1)
	}
	r.closed = max(r.closed, cur)
	for i := range r.ring {
		if sl := &r.ring[i]; sl.sec >= 0 && sl.sec < cur {
			r.closeSlot(sl)
		}
	}
}

// Closed returns the rows of the seconds before now's (a copy): the seconds
// whose counts and latencies are final, as of the last Tick(now).
func (r *Recorder) Closed(now time.Time) []Second {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := min(r.second(now), len(r.secs))
	return copySeconds(r.secs[:n])
}

// LastClosed returns the row of the second before now's, the latest whose
// numbers are final, and its index; false before the first second ends.
func (r *Recorder) LastClosed(now time.Time) (Second, int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.second(now) - 1
	if i < 0 || i >= len(r.secs) {
		return Second{}, 0, false
	}
	return copySeconds(r.secs[i : i+1])[0], i, true
}

// Finish closes every open second and returns the whole series. Call it once
// all requests have completed.
func (r *Recorder) Finish() []Second {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.ring {
		r.closeSlot(&r.ring[i])
	}
	return copySeconds(r.secs)
}

// copySeconds copies rows deep enough that the caller may read them while
// completions still update the recorder's own.
func copySeconds(in []Second) []Second {
	out := append([]Second(nil), in...)
	for i := range out {
		out[i].ByStatus = maps.Clone(out[i].ByStatus)
	}
	return out
}

func us(v int64) time.Duration { return time.Duration(v) * time.Microsecond }

// Latency is a set of percentiles in milliseconds (JSON-friendly).
type Latency struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

func latencyOf(h *hdr.Histogram) Latency {
	if h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(v int64) float64 { return float64(v) / 1000 }
	return Latency{
		Count: h.TotalCount(),
		Min:   ms(h.Min()),
		Mean:  h.Mean() / 1000,
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

// P99Duration is P99 as a time.Duration.
func (l Latency) P99Duration() time.Duration { return time.Duration(l.P99 * float64(time.Millisecond)) }

// Totals is the whole-run count summary.
type Totals struct {
	// Offered is what the schedule asked for (open loop) or what was sent
	// (closed loop); Offered = Sent + Dropped.
	Offered int64 `json:"offered"`
	Sent    int64 `json:"sent"`
	// Dropped requests were due while --concurrency requests were already
	// in flight; they were never sent (see the driver for why).
	Dropped int64 `json:"dropped"`
	// Late requests left more than LateAfterMS behind their intended time.
	Late        int64   `json:"late"`
	LateAfterMS float64 `json:"late_after_ms"`
	MaxLagMS    float64 `json:"max_send_lag_ms"`
	OK          int64   `json:"ok"`
	Failed      int64   `json:"failed"`
	Bytes       int64   `json:"bytes"`
}

// TargetSummary is one --target's share of the run.
type TargetSummary struct {
	URL      string           `json:"url"`
	Offered  int64            `json:"offered"`
	Sent     int64            `json:"sent"`
	Dropped  int64            `json:"dropped"`
	OK       int64            `json:"ok"`
	Failed   int64            `json:"failed"`
	Errors   map[string]int64 `json:"errors"`
	Backends map[string]int64 `json:"backends"`
	Latency  Latency          `json:"latency"`
	// Slowest are the target's slowest traced requests, slowest first;
	// absent when the run was not traced (--trace).
	Slowest []SlowRequest `json:"slowest,omitempty"`
}

// BackendSummary is one answering backend (by X-Server-Id); ID "" gathers
// responses without the header.
type BackendSummary struct {
	ID       string  `json:"id"`
	Requests int64   `json:"requests"`
	Share    float64 `json:"share"` // of responses carrying any id
	OK       int64   `json:"ok"`
	Failed   int64   `json:"failed"`
	Latency  Latency `json:"latency"`
}

// Report is the recorder's whole-run view.
type Report struct {
	Totals  Totals  `json:"totals"`
	Latency Latency `json:"latency"`
	// SendLag is how far behind schedule requests left: the driver's own
	// precision (already included in Latency).
	SendLag  Latency          `json:"send_lag"`
	Errors   map[string]int64 `json:"errors"`
	Targets  []TargetSummary  `json:"targets"`
	Backends []BackendSummary `json:"backends"`
	// Slowest are the run's SlowestKept slowest traced requests, slowest
	// first; nil when no request was traced.
	Slowest []SlowRequest `json:"slowest,omitempty"`
	// LastDue and LastDone bound the run: the schedule's last intended
	// time and the last completion.
	LastDue  time.Time `json:"-"`
	LastDone time.Time `json:"-"`
}

// Report summarises everything recorded so far.
func (r *Recorder) Report() Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := Report{
		Totals: Totals{
			Offered: r.offered, Sent: r.sent, Dropped: r.dropped, Late: r.late,
			LateAfterMS: float64(r.lateAfter) / float64(time.Millisecond),
			MaxLagMS:    float64(r.maxLag) / float64(time.Millisecond),
			OK:          r.ok, Failed: r.failed, Bytes: r.bytes,
		},
		Latency:  latencyOf(r.total),
		SendLag:  latencyOf(r.lag),
		Errors:   errorMap(r.errors),
		Slowest:  r.slow.report(r.urls),
		LastDue:  r.lastDue,
		LastDone: r.lastDone,
	}
	for i, t := range r.targets {
		rep.Targets = append(rep.Targets, TargetSummary{
			URL: r.urls[i], Offered: t.offered, Sent: t.sent, Dropped: t.dropped, OK: t.ok, Failed: t.failed,
			Errors: errorMap(t.errors), Backends: copyMap(t.backends), Latency: latencyOf(t.lat),
			Slowest: t.slow.report(r.urls),
		})
	}
	var withID int64
	for id, b := range r.backends {
		if id != "" {
			withID += b.requests
		}
	}
	for id, b := range r.backends {
		bs := BackendSummary{ID: id, Requests: b.requests, OK: b.ok, Failed: b.failed, Latency: latencyOf(b.lat)}
		if id != "" && withID > 0 {
			bs.Share = float64(b.requests) / float64(withID)
		}
		rep.Backends = append(rep.Backends, bs)
	}
	sort.Slice(rep.Backends, func(i, j int) bool { return rep.Backends[i].ID < rep.Backends[j].ID })
	return rep
}

func errorMap(m map[ErrKey]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k.String()] += v
	}
	return out
}

func copyMap(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
