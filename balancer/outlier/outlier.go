// Package outlier is the balancer's passive health check, after Envoy's
// outlier detection: a backend that fails Consecutive times in a row (5xx
// answers, or gateway failures: connect errors, resets, upstream timeouts)
// is ejected, takes no new request until its ejection ends, and each repeat
// ejection lasts longer. It is the only passive mechanism; active health
// checks (balancer/health) set a separate verdict, and a backend must pass
// both to be picked.
//
// Decide is a pure function of the pool's census, the backend's history and
// the time; Detector applies it to pool.Backend records.
package outlier

import (
	"sync"
	"sync/atomic"
	"time"

	"lbscale/balancer/pool"
)

// Config is the ejection policy; see Decide.
type Config struct {
	// Consecutive failures that eject a backend (OUTLIER_CONSECUTIVE_5XX);
	// 0 turns ejection off.
	Consecutive int
	// BaseEjection is the first ejection's length (OUTLIER_BASE_EJECTION);
	// the n-th in a row lasts n times as long.
	BaseEjection time.Duration
	// MaxEjection caps an ejection's length (OUTLIER_MAX_EJECTION).
	MaxEjection time.Duration
	// MaxPercent is the largest share of the pool ejected at once
	// (OUTLIER_MAX_EJECTION_PERCENT).
	MaxPercent int
}

// Census counts the pool when a backend reaches the threshold. Draining
// backends are left out: they take no new requests anyway.
type Census struct {
	// Members is the number of backends in the pool.
	Members int
	// Ejected is how many of them are ejected now.
	Ejected int
	// PickableOthers is how many backends other than the candidate are
	// healthy and not ejected: the ones left if the candidate goes.
	PickableOthers int
}

// History is what a backend's past ejections leave behind.
type History struct {
	// LastUntil is when its latest ejection ended (zero: never ejected).
	LastUntil time.Time
	// Level is that ejection's multiplier.
	Level int
}

// Verdict is Decide's answer.
type Verdict struct {
	Eject bool
	// Until and Level are the ejection's end and multiplier when Eject.
	Until time.Time
	Level int
	// Overflow is set when the threshold was reached but MaxPercent or the
	// last pickable backend forbade the ejection.
	Overflow bool
}

// Decide says whether a backend with consecutive failures in a row is
// ejected at now.
//
// Below the threshold: no. At or above it, the ejection must leave the pool
// within MaxPercent ((Ejected+1) × 100 ≤ MaxPercent × Members) and leave some
// other backend pickable; otherwise the backend stays in (Overflow) and the
// next failure asks again. E.g. MaxPercent 50: of 2 backends 1 may be out,
// of 3 still 1, of 4 two; a pool of 1 never loses its backend.
//
// The length is BaseEjection × level, capped at MaxEjection (where the
// level stops growing too), where level is
// the previous ejection's level, less one for each BaseEjection since that
// ejection ended, plus one. So a backend that fails again soon after it
// returns stays out longer each time, and one that behaved for a while
// starts over. E.g. base 30s: ejected 30s; fails again 10s after returning:
// 60s; returns and fails 40s later (level 2 − 1 = 1, +1): 60s again; fails
// 2 minutes after that: 30s.
func (c Config) Decide(now time.Time, consecutive int, h History, n Census) Verdict {
	if c.Consecutive <= 0 || consecutive < c.Consecutive {
		return Verdict{}
	}
	if n.PickableOthers < 1 || (n.Ejected+1)*100 > c.MaxPercent*n.Members {
		return Verdict{Overflow: true}
	}
	level := h.Level
	if !h.LastUntil.IsZero() && now.After(h.LastUntil) && c.BaseEjection > 0 {
		level -= int(now.Sub(h.LastUntil) / c.BaseEjection)
	}
	level = max(level, 0) + 1
	d := c.BaseEjection * time.Duration(level)
	if c.MaxEjection > 0 && c.BaseEjection > 0 {
		// The level stops growing at the cap, so a backend that was out for
		// the longest time needs no longer to earn its way back.
		level = min(level, int((c.MaxEjection+c.BaseEjection-1)/c.BaseEjection))
		d = min(c.BaseEjection*time.Duration(level), c.MaxEjection)
	}
	return Verdict{Eject: true, Until: now.Add(d), Level: level}
}

// Detector applies Decide to the outcomes the proxy reports. Success and a
// failure below the threshold touch only the backend's atomics; the lock is
// taken only by a backend at or above it.
type Detector struct {
	Config
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	// mu serialises ejection decisions, so two backends failing at once
	// cannot both take the last ejection MaxPercent allows.
	mu       sync.Mutex
	overflow atomic.Uint64
}

// Success records an answer below 500 from b.
func (d *Detector) Success(b *pool.Backend) { b.Succeeded() }

// Failure records a 5xx answer or a gateway failure from b, a member of
// set, and ejects b when Decide says so. The caller logs the verdict.
//
// Failures of requests sent before an ejection and ending during it count
// in b's failures but not in its run: on its return b starts a fresh run.
func (d *Detector) Failure(set *pool.Set, b *pool.Backend) Verdict {
	b.Failed()
	if d.Consecutive <= 0 {
		return Verdict{}
	}
	now := time.Now()
	if d.Now != nil {
		now = d.Now()
	}
	if b.Ejected(now) {
		return Verdict{}
	}
	n := b.ExtendFailureRun()
	if n < int64(d.Consecutive) {
		return Verdict{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if b.Ejected(now) {
		return Verdict{} // another failure of b ejected it meanwhile
	}
	var census Census
	for _, o := range set.Backends {
		if o.Draining() {
			continue
		}
		census.Members++
		switch {
		case o.Ejected(now):
			census.Ejected++
		case o != b && o.Healthy():
			census.PickableOthers++
		}
	}
	until, level := b.LastEjection()
	v := d.Decide(now, int(n), History{LastUntil: until, Level: level}, census)
	if v.Eject {
		b.Eject(v.Until, v.Level)
	}
	if v.Overflow {
		d.overflow.Add(1)
	}
	return v
}

// Overflows is how many times the threshold was reached but MaxPercent (or
// the last pickable backend) kept the backend in.
func (d *Detector) Overflows() uint64 { return d.overflow.Load() }
