// Package decide holds the scaler's decisions as pure functions: how many
// replicas the load needs (Up), which idle containers to drain (Idle), how
// to repair the registry against what the engine runs (Reconcile), and how
// a deploy rolls (Roll) and judges its canary (Canary).
//
// Like Knative's autoscaler, each takes a snapshot of the cluster and the
// time as arguments and returns a plain struct; unlike it, nothing here logs
// or records metrics, so every rule is table-tested with made-up numbers and
// a made-up clock (decide_test.go). The controller gathers the inputs,
// calls these, and carries the result out.
package decide

import (
	"cmp"
	"slices"
	"time"

	"lbscale/internal/state"
	"lbscale/scaler/driver"
)

// Reason says why the replica count changes; it labels the scale-event
// metric and the /status event log.
type Reason string

// Reasons for scaling.
const (
	// ReasonMinReplicas: fewer replicas than MIN_REPLICAS.
	ReasonMinReplicas Reason = "min_replicas"
	// ReasonReplace: a container died and the pool fell below MIN_REPLICAS.
	ReasonReplace Reason = "replace"
	// ReasonDemand: the arrival rate and the backlog need more containers.
	ReasonDemand Reason = "demand"
	// ReasonFromZero: requests wait and no replica exists at all.
	ReasonFromZero Reason = "from_zero"
	// ReasonReclaim: demand returned while containers drained; they are put
	// back to ready instead of starting new ones.
	ReasonReclaim Reason = "reclaim"
	// ReasonSurplus: the whole stable window needed fewer containers than
	// are ready (SCALE_DOWN=demand).
	ReasonSurplus Reason = "surplus"
	// ReasonIdle: idle past IDLE_TIMEOUT with nothing in flight.
	ReasonIdle Reason = "idle"
	// ReasonAboveMax: more replicas than MAX_REPLICAS (e.g. after a leader
	// change adopted a container the old leader was still starting).
	ReasonAboveMax Reason = "above_max"
	// ReasonExited: the container stopped by itself or was killed outside.
	ReasonExited Reason = "exited"
	// ReasonUnhealthy: a container never passed its health check.
	ReasonUnhealthy Reason = "unhealthy"
)

// Desired is the replica count the load needs: ceil((inflight + queued) /
// target), bounded by [min, max].
//
// Worked numbers, target 4 (MAX_INFLIGHT 4):
//   - 3 containers saturated (12 in flight) and 5 queued: ceil(17/4) = 5.
//   - 3 containers with 2 in flight each, none queued: ceil(6/4) = 2; Up
//     never scales down, so the 3 stay until they go idle.
//   - nothing at all, min 0: 0. One queued request, min 0: ceil(1/4) = 1,
//     which is scale-from-zero; no special case is needed as long as max ≥ 1.
//   - two balancers each queueing 5 while 3 containers are saturated: the
//     totals already add both, ceil((12+10)/4) = 6; each balancer's signal
//     does not add a container of its own.
func Desired(inflight, queued int64, target, min, max int) int {
	if target < 1 {
		target = 1
	}
	load := max64(inflight, 0) + max64(queued, 0)
	n := (load + int64(target) - 1) / int64(target)
	if n > int64(max) { // compare in int64: a huge load never overflows int
		n = int64(max)
	}
	if n < int64(min) {
		n = int64(min)
	}
	return int(n)
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// UpInput is the cluster snapshot a scale-up decision reads.
type UpInput struct {
	// Desired is the replica count the load needs now (Sizing.Up); Up
	// bounds it by Min and Max.
	Desired int
	// Ready, Starting and Draining count containers by phase. Starting ones
	// (created, booting, or being adopted) count as capacity on the way, so a
	// burst seen at every poll while they boot starts them only once.
	// Draining ones count only as reclaimable. Stopping ones carry no
	// requests but are still containers, so they count against Max.
	Ready, Starting, Draining, Stopping int
	Min, Max                            int
	// LastUp is the last scale-up that started containers (zero: never).
	LastUp time.Time
	// Cooldown is SCALE_UP_COOLDOWN.
	Cooldown time.Duration
	// NotBefore holds starts back after failures (exponential back-off).
	NotBefore time.Time
}

// UpResult is what a scale-up decision asks for.
type UpResult struct {
	// Desired replicas for the current load (a gauge, also when nothing
	// changes).
	Desired int
	// Reclaim draining containers back to ready; Start new ones.
	Reclaim, Start int
	// Reason why capacity is needed (reclaims are recorded as
	// ReasonReclaim whatever this says).
	Reason Reason
	// Held says why containers are needed but none start now ("cooldown",
	// "backoff"); empty otherwise.
	Held string
	// Panic: a start for demand while requests queue and the latest
	// reading is more than the pool carries at target, starting containers
	// counted: the load came before the pool, which a floor (MIN_SCHEDULE,
	// FORECAST) exists to avoid.
	Panic bool
}

// Up decides whether to add capacity now. It never removes any: shrinking is
// Shrink's and Idle's job, on a whole stable window or on idle time rather
// than on a momentary dip.
//
// Order of remedies: a draining container is back in service at the next
// balancer sync, so reclaiming beats starting and ignores the cooldown;
// starts wait for the cooldown and the failure back-off, except when the
// pool is below MIN_REPLICAS, which is a floor rather than a reaction to a
// measurement.
//
// E.g. Ready 3, Starting 2, Draining 1, Desired 7: need 2, reclaim 1,
// start 1. Same with Desired 5: need 0 — the 2 booting cover it.
func Up(in UpInput, now time.Time) UpResult {
	res := UpResult{Desired: min(max(in.Desired, in.Min), in.Max)}
	have := in.Ready + in.Starting
	need := res.Desired - have
	if need <= 0 {
		return res
	}
	res.Reason = ReasonDemand
	switch {
	case have < in.Min:
		res.Reason = ReasonMinReplicas
	case have == 0:
		res.Reason = ReasonFromZero
	}
	res.Reclaim = min(need, in.Draining)
	need -= res.Reclaim
	if need == 0 {
		return res
	}
	belowMin := have+res.Reclaim < in.Min
	switch {
	case now.Before(in.NotBefore):
		res.Held = "backoff"
	case !belowMin && !in.LastUp.IsZero() && now.Sub(in.LastUp) < in.Cooldown:
		res.Held = "cooldown"
	default:
		res.Start = need
	}
	// MAX_REPLICAS bounds containers, not just ready ones: draining ones not
	// reclaimed and ones still stopping are containers until they are gone.
	// E.g. Max 3, Ready 2, Stopping 1, Desired 3: start none until it is gone.
	if room := in.Max - (in.Ready + in.Starting + in.Draining + in.Stopping); res.Start > room {
		res.Start = max(room, 0)
		if res.Start == 0 {
			res.Held = "max_replicas"
		}
	}
	return res
}

// Candidate is a ready container considered for scale-down.
type Candidate struct {
	ID string
	// ReadySince is when it became ready; LastSeen the latest request the
	// cluster sent it (zero: never).
	ReadySince, LastSeen time.Time
	// Inflight is its cluster-wide in-flight count.
	Inflight int64
	// Conns is its cluster-wide count of open long-lived connections
	// (WebSocket, SSE). They are not in flight, yet draining the container
	// cuts every one of them.
	Conns int64
	// Stale: it runs an image other than the pool's current one, so a
	// deploy is replacing it; drained before current ones.
	Stale bool
}

// IdleInput is the snapshot a scale-down decision reads.
type IdleInput struct {
	// Ready are the ready containers; draining ones are not candidates and
	// must not be listed (they are already leaving and do not count again).
	Ready []Candidate
	// Keep is the fewest ready containers to leave: max(MIN_REPLICAS, the
	// current Desired), so scale-down never undercuts the load's needs.
	Keep int
	// IdleTimeout is IDLE_TIMEOUT.
	IdleTimeout time.Duration
	// Queued requests mean the pool is short, not idle: no victims.
	Queued int64
}

// Idle picks the containers to drain: idle longer than IdleTimeout (since
// the later of last request and ready time, so a freshly started container
// gets its full timeout), nothing in flight and no long-lived connection
// open cluster-wide, stale ones first, then newest first, and never
// leaving fewer than Keep ready.
//
// An open connection (WebSocket, SSE) makes a container busy, as a request
// in flight does: its client is using it, though no request may have
// arrived for hours. Stale first because a deploy is replacing those
// anyway. Newest first because the oldest containers are the ones
// balancers have ramped up fully (slow start) and clients are sticky to;
// the newest were started for a burst that passed.
//
// E.g. Keep 1, three idle containers ready at 10:00, 10:05, 10:07: victims
// 10:07 and 10:05. Same, but 10:07 has 1 in flight (or 1 connection open):
// victims 10:05 and 10:00; the busy one is skipped and is the one that
// stays. Same, but 10:00 is stale: victims 10:00 and 10:07.
func Idle(in IdleInput, now time.Time) []string {
	quota := len(in.Ready) - in.Keep
	if quota <= 0 || in.Queued > 0 {
		return nil
	}
	c := slices.Clone(in.Ready)
	slices.SortFunc(c, func(a, b Candidate) int {
		if a.Stale != b.Stale {
			if a.Stale {
				return -1
			}
			return 1
		}
		if d := b.ReadySince.Compare(a.ReadySince); d != 0 {
			return d
		}
		return cmp.Compare(a.ID, b.ID)
	})
	var victims []string
	for _, k := range c {
		if len(victims) == quota {
			break
		}
		last := k.ReadySince
		if k.LastSeen.After(last) {
			last = k.LastSeen
		}
		if k.Inflight > 0 || k.Conns > 0 || now.Sub(last) <= in.IdleTimeout {
			continue
		}
		victims = append(victims, k.ID)
	}
	return victims
}

// Backoff is the delay after failures consecutive failures: base, 2·base,
// 4·base … capped at ceiling; 0 after no failure.
func Backoff(failures int, base, ceiling time.Duration) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := base
	for i := 1; i < failures && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}

// World is what the engine runs and the registry says, as the controller
// saw them at one reconcile.
type World struct {
	// Containers of the pool, as the driver lists them.
	Containers []driver.Instance
	// Registry entries.
	Registry []state.Backend
	// Busy are ids a worker of this scaler owns right now (starting,
	// adopting, draining, stopping): Reconcile leaves them alone, since the
	// worker writes their registry entry and removes their container.
	Busy map[string]bool
	// Starting is how many of Busy count as capacity (on their way to
	// ready, or ready since Busy was taken).
	Starting int
	Min, Max int
	// StaleCreate: a container created but never started for longer than
	// this is debris of a scaler that died between create and start.
	StaleCreate time.Duration
}

// Plan is how to make the registry and the engine agree.
type Plan struct {
	// Remove these containers (exited, dead, or stale created ones).
	Remove []string
	// Unregister these registry entries (no running container behind them).
	Unregister []string
	// Ready are the entries that stay ready, with the address the engine
	// reports now.
	Ready []state.Backend
	// Rewrite are the Ready entries whose stored address was stale.
	Rewrite []state.Backend
	// Adopt these running containers: health-check, then register ready.
	// They are not in the registry, or stuck in starting because the scaler
	// that started them is gone.
	Adopt []driver.Instance
	// Resume draining these (a previous leader began and did not finish).
	Resume []state.Backend
	// Start this many containers to reach Min.
	Start int
	// Reason for Start (min_replicas, or replace when Remove lost some).
	Reason Reason
	// Trim: drain these ready ones (newest first) to get back to Max.
	Trim []string
	// Pending counts the containers created, not started and not Busy,
	// still within StaleCreate: another scaler's start that may yet run
	// (or a Swarm replacement on its way). They carry nothing, but they
	// are containers, so they count against Max until they run or go.
	Pending int
}

// Reconcile compares the engine and the registry. Containers and entries
// in w.Busy are skipped. A container must be running and have an address
// to be (or become) ready; an entry without such a container goes.
//
// E.g. Min 2, registry {a ready, b ready}, engine {a running, b exited}:
// remove b, unregister b, keep a, start 1 (reason replace).
func Reconcile(w World, now time.Time) Plan {
	var p Plan
	reg := make(map[string]state.Backend, len(w.Registry))
	for _, b := range w.Registry {
		reg[b.ID] = b
	}
	seen := make(map[string]bool, len(w.Containers))
	for _, c := range w.Containers {
		seen[c.ID] = true
		if w.Busy[c.ID] {
			continue
		}
		b, registered := reg[c.ID]
		switch {
		case c.Gone():
			p.Remove = append(p.Remove, c.ID)
			if registered {
				p.Unregister = append(p.Unregister, c.ID)
			}
		case c.Running() && c.Addr != "":
			switch {
			case registered && b.State == state.Ready:
				if b.Addr != c.Addr {
					b.Addr = c.Addr
					p.Rewrite = append(p.Rewrite, b)
				}
				p.Ready = append(p.Ready, b)
			case registered && b.State == state.Draining:
				b.Addr = c.Addr
				p.Resume = append(p.Resume, b)
			default:
				p.Adopt = append(p.Adopt, c)
			}
		default:
			// created, paused, restarting, removing, or running without an
			// address on the network: not routable now.
			if registered {
				p.Unregister = append(p.Unregister, c.ID)
			}
			// Created but never started, or running with no address on the
			// pool's network (disconnected by hand), for longer than a start
			// may take: it will never serve, yet it is a container of the
			// pool, so it goes rather than sit beside its replacement.
			stuck := c.State == driver.StateCreated || c.Running() && c.Addr == ""
			switch {
			case stuck && now.Sub(c.Created) > w.StaleCreate:
				p.Remove = append(p.Remove, c.ID)
			case c.State == driver.StateCreated:
				p.Pending++
			}
		}
	}
	for _, b := range w.Registry {
		if !seen[b.ID] && !w.Busy[b.ID] {
			p.Unregister = append(p.Unregister, b.ID)
		}
	}

	capacity := len(p.Ready) + len(p.Adopt) + w.Starting
	if capacity < w.Min {
		// Never past Max with the pending ones: they leave room as they go.
		p.Start = max(min(w.Min-capacity, w.Max-capacity-p.Pending), 0)
		p.Reason = ReasonMinReplicas
		if len(p.Remove) > 0 {
			p.Reason = ReasonReplace
		}
		if p.Start == 0 {
			p.Reason = ""
		}
	}
	if excess := capacity - w.Max; excess > 0 {
		newest := slices.Clone(p.Ready)
		slices.SortFunc(newest, func(a, b state.Backend) int {
			if d := b.Since.Compare(a.Since); d != 0 {
				return d
			}
			return cmp.Compare(a.ID, b.ID)
		})
		for _, b := range newest[:min(excess, len(newest))] {
			p.Trim = append(p.Trim, b.ID)
		}
	}
	slices.Sort(p.Remove)
	slices.Sort(p.Unregister)
	p.Unregister = slices.Compact(p.Unregister)
	slices.SortFunc(p.Ready, byID)
	slices.SortFunc(p.Rewrite, byID)
	slices.SortFunc(p.Resume, byID)
	slices.SortFunc(p.Adopt, func(a, b driver.Instance) int { return cmp.Compare(a.ID, b.ID) })
	return p
}

func byID(a, b state.Backend) int { return cmp.Compare(a.ID, b.ID) }
