package control

import (
	"context"
	"slices"
	"sync"
	"time"

	"lbscale/internal/state"
	"lbscale/scaler/decide"
	"lbscale/scaler/driver"
)

// phase is where a member is in its life as this leader sees it.
type phase int

const (
	phaseStarting phase = iota // being created, booting, or adopted and health-checked
	phaseReady                 // registered ready
	phaseDraining              // registered draining; waiting for in-flight to reach 0
	phaseStopping              // being stopped and removed
)

var phaseNames = [...]string{"starting", "ready", "draining", "stopping"}

func (p phase) String() string { return phaseNames[p] }

// member is a container of the pool as the leader tracks it. Its id never
// changes; every other field is read and written under its table's lock.
type member struct {
	id, containerID, addr string
	// image is the image the container runs (a deploy tells old from new
	// by it).
	image string
	phase phase
	// booted: the container exists (Start returned, or adopted).
	booted bool
	// created is when the start was decided; since the ready time.
	created, since time.Time
	// drainStart is when draining began.
	drainStart time.Time
	// cancel stops the member's worker wait (health wait or drain wait).
	cancel context.CancelFunc
	// reason the member is draining (for the log).
	reason decide.Reason
}

// memberTable is the pool as this leader tracks it, one term at a time.
// The lead goroutine and the term's workers (starts, drains) change it
// concurrently, each under the table's lock for a moment; no lock is held
// across I/O, so a slow Docker or Redis call never holds up /status or
// another worker.
type memberTable struct {
	mu   sync.Mutex // protects byID, the fields of every member in it, and cold
	byID map[string]*member
	// cold is the pool's measured cold start (start decided → ready), a
	// moving mean over its recent starts; 0 before the first. It outlives
	// a term: the engine and the image do not change with the leader.
	cold time.Duration
	// pending is the latest reconcile's count of containers created and
	// not started by any worker of ours (decide.Plan.Pending): they count
	// against MAX_REPLICAS as stopping ones do.
	pending int
}

func newMemberTable() *memberTable { return &memberTable{byID: map[string]*member{}} }

// reset forgets every member: a new term learns the pool afresh from its
// first reconcile.
func (t *memberTable) reset() {
	t.mu.Lock()
	t.byID, t.pending = map[string]*member{}, 0
	t.mu.Unlock()
}

// put adds m, which is new (a start reserves a fresh name).
func (t *memberTable) put(m *member) {
	t.mu.Lock()
	t.byID[m.id] = m
	t.mu.Unlock()
}

// add adds m unless its id is tracked already (a worker owns it, or the
// table has it ready); it reports whether it did.
func (t *memberTable) add(m *member) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID[m.id] != nil {
		return false
	}
	t.byID[m.id] = m
	return true
}

// delete forgets id, whatever member holds it.
func (t *memberTable) delete(id string) {
	t.mu.Lock()
	delete(t.byID, id)
	t.mu.Unlock()
}

// remove forgets m, but not a newer member that took its id meanwhile.
func (t *memberTable) remove(m *member) {
	t.mu.Lock()
	if t.byID[m.id] == m {
		delete(t.byID, m.id)
	}
	t.mu.Unlock()
}

// counts returns members by phase (stopping counts as draining).
func (t *memberTable) counts() (ready, starting, draining int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range t.byID {
		switch m.phase {
		case phaseReady:
			ready++
		case phaseStarting:
			starting++
		default:
			draining++
		}
	}
	return
}

// pool counts members by phase as decide.Autoscaler.Poll takes them.
func (t *memberTable) pool(now time.Time) decide.Pool {
	p := decide.Pool{}
	var left time.Duration
	t.mu.Lock()
	defer t.mu.Unlock()
	p.ColdStart = t.cold
	for _, m := range t.byID {
		switch m.phase {
		case phaseReady:
			p.Ready++
		case phaseStarting:
			p.Starting++
			left += max(t.cold-now.Sub(m.created), 0)
		case phaseDraining:
			p.Draining++
		case phaseStopping:
			p.Stopping++
		}
	}
	if p.Starting > 0 {
		p.StartingLeft = left / time.Duration(p.Starting)
	}
	p.Stopping += t.pending
	return p
}

// coldStarted records a start that took d to ready: the mean moves a
// quarter of the way to it, so one slow start (an image pulled, a busy
// engine) does not double the next estimate, and a lasting change shows
// within a few starts.
func (t *memberTable) coldStarted(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cold <= 0 {
		t.cold = d
		return
	}
	t.cold += (d - t.cold) / 4
}

// inflight sums load's cluster-wide in-flight counts over the members
// (negative counts, a balancer's transient, count as 0).
func (t *memberTable) inflight(load state.ClusterLoad) int64 {
	var n int64
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range t.byID {
		n += max(load.Inflight[id], 0)
	}
	return n
}

// candidates returns the ready members as scale-down candidates. conns are the members'
// long-lived connections; a deploy's view says which members are stale
// (to be replaced) and which one, its canary, no scale-down may take.
func (t *memberTable) candidates(load state.ClusterLoad, conns map[string]backendStats, dv deployView) (cands []decide.Candidate) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, m := range t.byID {
		if m.phase == phaseReady {
			if id == dv.canary {
				continue
			}
			cands = append(cands, decide.Candidate{ID: id, ReadySince: m.since, LastSeen: load.LastSeen[id], Inflight: load.Inflight[id],
				Conns: conns[id].Conns, Stale: dv.stale(m.image)})
		}
	}
	return cands
}

// conns sums the members' long-lived connections.
func (t *memberTable) conns(stats map[string]backendStats) int64 {
	var n int64
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range t.byID {
		n += max(stats[id].Conns, 0)
	}
	return n
}

// snapshot is a copy of a member's fields, read under the table's lock.
type snapshot struct {
	id, image string
	phase     phase
	since     time.Time
}

// list copies every member.
func (t *memberTable) list() []snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]snapshot, 0, len(t.byID))
	for _, m := range t.byID {
		out = append(out, snapshot{id: m.id, image: m.image, phase: m.phase, since: m.since})
	}
	return out
}

// status lists the members for /status, unsorted.
func (t *memberTable) status() []MemberStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]MemberStatus, 0, len(t.byID))
	for _, m := range t.byID {
		out = append(out, MemberStatus{ID: m.id, Addr: m.addr, State: m.phase.String(), Since: m.since, Image: m.image})
	}
	return out
}

// busy adds to set the ids a worker owns (every phase but ready).
func (t *memberTable) busy(set map[string]bool) {
	t.mu.Lock()
	t.busyLocked(set)
	t.mu.Unlock()
}

func (t *memberTable) busyLocked(set map[string]bool) {
	for id, m := range t.byID {
		if m.phase != phaseReady {
			set[id] = true
		}
	}
}

// busyCapacityLocked counts the busy members that are capacity: starting
// ones, and ones that became ready since the busy set was taken (Reconcile
// skips them, so they would count nowhere else and be started twice).
func (t *memberTable) busyCapacityLocked(busy map[string]bool) (n int) {
	for id, m := range t.byID {
		if busy[id] && (m.phase == phaseStarting || m.phase == phaseReady) {
			n++
		}
	}
	return n
}

// reconcile completes the busy set (taken before listing) under the lock,
// ends the health wait of members whose container died while booting,
// lets plan decide with the busy set and the busy capacity, and makes the
// ready members those of the plan. All of it is one critical section, so
// that no worker changes a phase between the busy set and the plan's
// application.
func (t *memberTable) reconcile(busy map[string]bool, insts []driver.Instance, plan func(starting int) decide.Plan) decide.Plan {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.busyLocked(busy)
	starting := t.busyCapacityLocked(busy)
	for _, in := range insts {
		// A container that died while booting: end its health wait now
		// rather than at HEALTH_TIMEOUT.
		if m := t.byID[in.ID]; m != nil && m.phase == phaseStarting && m.booted && in.Gone() && m.cancel != nil {
			m.cancel()
		}
	}
	p := plan(starting)
	t.pending = p.Pending
	images := make(map[string]string, len(insts))
	for _, in := range insts {
		images[in.ID] = in.Image
	}
	keep := map[string]state.Backend{}
	for _, b := range p.Ready {
		keep[b.ID] = b
	}
	for id, m := range t.byID {
		if m.phase == phaseReady && !busy[id] {
			if _, ok := keep[id]; !ok {
				delete(t.byID, id)
			}
		}
	}
	for _, b := range p.Ready {
		if m := t.byID[b.ID]; m != nil {
			m.addr = b.Addr
			if img := images[b.ID]; img != "" {
				m.image = img
			}
			continue
		}
		t.byID[b.ID] = &member{id: b.ID, addr: b.Addr, image: images[b.ID], phase: phaseReady, booted: true, since: b.Since, created: b.Since}
	}
	return p
}

// booted records that m's container exists at inst, and how to end its
// health wait.
func (t *memberTable) booted(m *member, inst driver.Instance, cancel context.CancelFunc) {
	t.mu.Lock()
	m.containerID, m.addr, m.booted, m.cancel = inst.ContainerID, inst.Addr, true, cancel
	t.mu.Unlock()
}

// ready records that m is registered ready since at; no worker waits on it.
func (t *memberTable) ready(m *member, at time.Time) {
	t.mu.Lock()
	m.phase, m.since, m.cancel = phaseReady, at, nil
	t.mu.Unlock()
}

// drainable returns id's member and the registry entry that marks it
// draining, or nil when id is not ready (gone, or a worker owns it).
func (t *memberTable) drainable(id string) (*member, state.Backend) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.byID[id]
	if m == nil || m.phase != phaseReady {
		return nil, state.Backend{}
	}
	return m, state.Backend{ID: id, Addr: m.addr, State: state.Draining}
}

// draining records that m is registered draining since at, for reason,
// and returns the context of its drain wait (a reclaim cancels it).
func (t *memberTable) draining(ctx context.Context, m *member, at time.Time, reason decide.Reason) context.Context {
	t.mu.Lock()
	defer t.mu.Unlock()
	m.phase, m.drainStart, m.reason = phaseDraining, at, reason
	dctx, cancel := context.WithCancel(ctx)
	m.cancel = cancel
	return dctx
}

// drainStart returns when m's drain began.
func (t *memberTable) drainStart(m *member) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return m.drainStart
}

// stopping moves m from draining to stopping and reports whether it did:
// not when a reclaim took it back (dctx cancelled, or ready again).
func (t *memberTable) stopping(dctx context.Context, m *member) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if dctx.Err() != nil || m.phase != phaseDraining {
		return false
	}
	m.phase = phaseStopping
	return true
}

// reclaim moves up to n draining members back to ready, the newest-ready
// first, ends their drain waits and returns them.
func (t *memberTable) reclaim(n int) []*member {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ms []*member
	for _, m := range t.byID {
		if m.phase == phaseDraining {
			ms = append(ms, m)
		}
	}
	slices.SortFunc(ms, func(a, b *member) int { return b.since.Compare(a.since) })
	ms = ms[:min(n, len(ms))]
	for _, m := range ms {
		m.phase = phaseReady
		if m.cancel != nil {
			m.cancel()
			m.cancel = nil
		}
	}
	return ms
}
