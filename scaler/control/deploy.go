package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"lbscale/internal/state"
	"lbscale/scaler/config"
	"lbscale/scaler/decide"
)

// Reasons of the scale events a deploy records.
const (
	ReasonDeploy   decide.Reason = "deploy"
	ReasonRollback decide.Reason = "rollback"
)

// opDeploy names a deploy's store failures among the problems of /status.
const opDeploy = "redis deploy"

// ErrDeployBusy is StartDeploy's answer while another deploy is under way.
var ErrDeployBusy = errors.New("a deploy is under way")

// deployStore is the part of state.Store deploys use.
type deployStore interface {
	state.Deploys
}

// deployView is what scale-down needs to know of the deploy under way:
// which image the pool is moving to, and its canary.
type deployView struct {
	// target is the image the pool is moving to ("" : no deploy under way,
	// or one still in its canary phase, where nothing is stale yet).
	target string
	// canary is the canary's id while it is being judged.
	canary string
}

// stale reports whether a container on image is being replaced.
func (v deployView) stale(image string) bool { return v.target != "" && image != v.target }

// deployer rolls the pool onto a new image without loss, and back when the
// image misbehaves. The deploy itself lives in the store (state.Deploy), so
// that it outlives the leader that began it; each poll of the lead
// goroutine takes one step of it from what the store says and what the
// member table holds:
//
//   - canary: start one container on the new image through the health
//     gate; once ready, compare its failures and latency with the old
//     containers' (decide.Canary) and pass to rolling, or roll back. A
//     canary that fails its gate or dies rolls back too.
//   - rolling (and rolling-back, towards the previous image): start new
//     containers a surge at a time, drain old ones as new ones are ready,
//     never below the ready count the deploy began with (decide.Roll).
//
// A change of the configured image (WEB_IMAGE, or the pool file's image)
// is a deploy too: it is recorded as one at the next step.
type deployer struct {
	cfg     config.Config
	store   deployStore
	now     func() time.Time
	log     *slog.Logger
	rep     *reporter
	m       *metrics
	members *memberTable
	up      *upscaler
	down    *drainer

	mu   sync.Mutex // protects cur, has and failedStarts
	cur  state.Deploy
	has  bool
	fail map[string]string // image → the latest failed start's error, this term

	// The canary as this term saw it; only the lead goroutine uses them.
	canarySeen string       // id of the canary seen this term
	baseFor    string       // canary id the baselines are for
	baseAt     time.Time    // when they were taken
	baseCanary backendStats // the canary's counters then
	baseOld    map[string]backendStats
}

// endTerm forgets what this term saw: the next leader judges the canary
// afresh from its own first sight.
func (d *deployer) endTerm() {
	d.mu.Lock()
	d.fail = nil
	d.mu.Unlock()
	d.canarySeen, d.baseFor, d.baseOld = "", "", nil
}

// startFailed hears of a failed start on image.
func (d *deployer) startFailed(image string, err error) {
	d.mu.Lock()
	if d.fail == nil {
		d.fail = map[string]string{}
	}
	d.fail[image] = err.Error()
	d.mu.Unlock()
}

// failedOn is the latest failed start on image this term ("" : none), and
// forgets it.
func (d *deployer) failedOn(image string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.fail[image]
	delete(d.fail, image)
	return e
}

// current returns the latest deploy read (false: none recorded).
func (d *deployer) current() (state.Deploy, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cur, d.has
}

// startImage is the image every start but a deploy's own runs: the
// previous image while a canary is judged or after a rollback, the new one
// once the canary passed, and the configured one when no deploy overrides
// it.
func (d *deployer) startImage() string {
	cur, ok := d.current()
	if !ok || cur.ConfigImage != d.cfg.WebImage {
		return d.cfg.WebImage
	}
	switch cur.Phase {
	case state.DeployRolling, state.DeployDone:
		return cur.Image
	default:
		return cur.Previous
	}
}

// view is the deploy as scale-down needs it.
func (d *deployer) view() deployView {
	cur, ok := d.current()
	if !ok || !cur.Phase.Active() {
		return deployView{}
	}
	switch cur.Phase {
	case state.DeployCanary:
		return deployView{canary: cur.Canary}
	case state.DeployRolling:
		return deployView{target: cur.Image}
	default:
		return deployView{target: cur.Previous}
	}
}

// surge is how many containers the deploy under way may have starting at
// once beyond the pool's count (0: none under way); MAX_REPLICAS is
// exceeded by it for the deploy's length, as a Kubernetes surge is.
func (d *deployer) surge() int {
	cur, ok := d.current()
	if !ok || !cur.Phase.Active() {
		return 0
	}
	return decide.SurgeOf(max(cur.Floor, 1), d.cfg.DeploySurge)
}

// step reads the deploy and takes its next step.
func (d *deployer) step(ctx context.Context) {
	rec, ok, err := d.store.Deploy(ctx)
	if err != nil {
		d.rep.fail(opDeploy, err)
		return
	}
	d.rep.recover(opDeploy)
	rec, ok = d.configured(ctx, rec, ok)
	d.mu.Lock()
	d.cur, d.has = rec, ok
	d.mu.Unlock()
	d.m.deployPhase(rec, ok)
	if !ok || !rec.Phase.Active() {
		d.canarySeen = ""
		return
	}
	if rec.Floor < 0 {
		// Asked for through the admin API, which does not know the pool:
		// the leader records the ready count the deploy begins with.
		rec.Floor, _, _ = d.members.counts()
		if !d.put(ctx, rec, rec.ID) {
			return
		}
	}
	switch rec.Phase {
	case state.DeployCanary:
		d.stepCanary(ctx, rec)
	default:
		d.stepRoll(ctx, rec)
	}
}

// configured records a change of the configured image as a deploy: the
// first step after WEB_IMAGE (or the pool file's image) changed, or after
// a scaler found containers on another image than the configured one with
// no deploy recorded, rolls the pool onto it.
func (d *deployer) configured(ctx context.Context, rec state.Deploy, ok bool) (state.Deploy, bool) {
	want := d.cfg.WebImage
	if ok && rec.ConfigImage == want {
		return rec, ok
	}
	all, ready := countImages(d.members.list())
	running, most := "", 0
	for img, n := range ready {
		if n > most || n == most && img < running {
			running, most = img, n
		}
	}
	others := false
	for img := range all {
		if img != want {
			others = true
		}
	}
	now := d.now()
	next := state.Deploy{ID: newDeployID(), Image: want, ConfigImage: want, Started: now, Updated: now}
	switch {
	case !others && !ok:
		// Nothing runs another image and no deploy chose one: nothing
		// to record.
		return rec, ok
	case !others || running == "":
		// Nothing to roll (no containers, or all on it already): the
		// configured image simply stands from now on.
		next.Previous, next.Phase, next.Finished = want, state.DeployDone, now
	default:
		next.Previous, next.Phase, next.Floor = running, state.DeployCanary, most
		next.Reason = "the configured image changed"
	}
	prev := ""
	if ok {
		prev = rec.ID
	}
	if !d.put(ctx, next, prev) {
		return rec, ok
	}
	if next.Phase == state.DeployCanary {
		d.log.Info("deploy: configured image changed", "image", want, "previous", running)
	}
	return next, true
}

// put writes rec over the deploy prev, and reports whether it did.
func (d *deployer) put(ctx context.Context, rec state.Deploy, prev string) bool {
	rec.Updated = d.now()
	wrote, err := d.store.PutDeploy(ctx, rec, prev)
	if err != nil {
		d.rep.fail(opDeploy, err)
		return false
	}
	if !wrote {
		d.log.Info("deploy changed meanwhile; reading it again", "deploy", rec.ID)
		return false
	}
	d.mu.Lock()
	d.cur, d.has = rec, true
	d.mu.Unlock()
	d.m.deployPhase(rec, true)
	return true
}

// stepCanary starts the canary, waits for its health gate, and judges it.
func (d *deployer) stepCanary(ctx context.Context, rec state.Deploy) {
	var canary *snapshot
	for _, m := range d.members.list() {
		if m.image == rec.Image && (m.phase == phaseStarting || m.phase == phaseReady) {
			canary = &m
			break
		}
	}
	if e := d.failedOn(rec.Image); e != "" && (canary == nil || canary.phase != phaseReady) {
		d.rollback(ctx, rec, "the canary failed its start: "+e)
		return
	}
	if canary == nil {
		if d.canarySeen != "" {
			d.rollback(ctx, rec, "the canary "+d.canarySeen+" stopped")
			return
		}
		ids := d.up.startWith(ctx, 1, rec.Image, ReasonDeploy, Event{Desired: d.up.latest().desired})
		d.canarySeen = ids[0]
		rec.Canary = ids[0]
		d.log.Info("deploy: canary starting", "image", rec.Image, "id", ids[0])
		d.put(ctx, rec, rec.ID)
		return
	}
	d.canarySeen = canary.id
	if rec.Canary != canary.id {
		rec.Canary = canary.id
		if !d.put(ctx, rec, rec.ID) {
			return
		}
	}
	if canary.phase != phaseReady {
		return // its health gate is under way
	}
	stats := d.up.stats()
	now := d.now()
	if d.baseFor != canary.id {
		d.baseFor, d.baseAt, d.baseCanary = canary.id, now, stats[canary.id]
		d.baseOld = map[string]backendStats{}
		for _, m := range d.members.list() {
			if m.image != rec.Image {
				d.baseOld[m.id] = stats[m.id]
			}
		}
		return
	}
	can := stats[canary.id].since(d.baseCanary)
	var old backendStats
	for _, m := range d.members.list() {
		if m.image != rec.Image && m.phase == phaseReady {
			old = old.add(stats[m.id].since(d.baseOld[m.id]))
		}
	}
	v := decide.Canary(decide.CanaryInput{
		Canary:       decide.CanaryStats{Served: int64(can.Served), Failures: int64(can.Failures), Busy: can.Busy},
		Baseline:     decide.CanaryStats{Served: int64(old.Served), Failures: int64(old.Failures), Busy: old.Busy},
		Elapsed:      now.Sub(d.baseAt),
		MinRequests:  d.cfg.CanaryRequests,
		MaxWait:      d.cfg.CanaryTime,
		MaxErrorRate: d.cfg.CanaryErrorRate,
		MaxLatency:   d.cfg.CanaryLatency,
	})
	switch v.Outcome {
	case decide.CanaryPass:
		rec.Phase, rec.Reason = state.DeployRolling, v.Reason
		if d.put(ctx, rec, rec.ID) {
			d.log.Info("deploy: canary passed; rolling", "image", rec.Image, "verdict", v.Reason)
			d.rep.record(Event{Direction: "deploy", Reason: ReasonDeploy, Count: 0, IDs: []string{canary.id}, Desired: d.up.latest().desired})
		}
	case decide.CanaryFail:
		d.rollback(ctx, rec, v.Reason)
	}
}

// rollback turns the deploy back towards the previous image.
func (d *deployer) rollback(ctx context.Context, rec state.Deploy, reason string) {
	rec.Phase, rec.Reason = state.DeployRollingBack, reason
	if !d.put(ctx, rec, rec.ID) {
		return
	}
	d.log.Warn("deploy: rolling back", "image", rec.Image, "previous", rec.Previous, "why", reason)
	d.rep.problem("deploy", fmt.Errorf("deploy of %s rolled back: %s", rec.Image, reason))
	d.rep.record(Event{Direction: "deploy", Reason: ReasonRollback, Desired: d.up.latest().desired})
}

// stepRoll replaces the containers not on the target image, a surge at a
// time; once none is left, the deploy (or its rollback) is finished.
func (d *deployer) stepRoll(ctx context.Context, rec state.Deploy) {
	target, reason := rec.Image, ReasonDeploy
	if rec.Phase == state.DeployRollingBack {
		target, reason = rec.Previous, ReasonRollback
	}
	if e := d.failedOn(rec.Image); e != "" && rec.Phase == state.DeployRolling {
		d.rollback(ctx, rec, "a container on the new image failed its start: "+e)
		return
	}
	stats := d.up.stats()
	var in decide.RollInput
	others := 0 // members on another image, in any phase
	for _, m := range d.members.list() {
		if m.image != target {
			others++
		}
		switch {
		case m.image == target && m.phase == phaseReady:
			in.NewReady++
		case m.image == target && m.phase == phaseStarting:
			in.NewStarting++
		case m.phase == phaseReady:
			in.Old = append(in.Old, decide.Candidate{ID: m.id, ReadySince: m.since, Conns: stats[m.id].Conns,
				Inflight: d.up.inflightOf(m.id), Stale: true})
		}
	}
	// Finished once no container of another image is left at all: the
	// drained ones too have stopped (their connections had their
	// CONNECTION_DRAIN), so that "done" means every container runs it.
	if others == 0 {
		rec.Phase, rec.Finished = state.DeployDone, d.now()
		if reason == ReasonRollback {
			rec.Phase = state.DeployRolledBack
		}
		if d.put(ctx, rec, rec.ID) {
			d.log.Info("deploy: finished", "phase", rec.Phase, "image", target, "took", rec.Finished.Sub(rec.Started).Round(time.Millisecond).String())
			d.m.deploys.WithLabelValues(string(rec.Phase)).Inc()
			d.rep.recover("deploy")
		}
		return
	}
	in.Floor, in.Desired, in.Surge = rec.Floor, d.up.latest().desired, d.surge()
	st := decide.Roll(in)
	if st.Start > 0 {
		d.up.startWith(ctx, st.Start, target, reason, Event{Desired: in.Desired})
	}
	if len(st.Drain) > 0 {
		d.log.Info("deploy: draining replaced containers", "ids", st.Drain, "image", target)
		d.down.drain(ctx, st.Drain, reason)
	}
}

// StartDeploy records a deploy of image to the pool, for the leader to
// carry out (any scaler may take the request: the deploy lives in the
// store). A deploy under way is not replaced: ErrDeployBusy. Deploying the
// image the pool runs already is a no-op that returns the current deploy.
func (c *Controller) StartDeploy(ctx context.Context, image string) (state.Deploy, error) {
	if image == "" {
		return state.Deploy{}, errors.New("no image given")
	}
	rec, ok, err := c.store.Deploy(ctx)
	if err != nil {
		return state.Deploy{}, err
	}
	running := c.cfg.WebImage
	prev := ""
	if ok {
		prev = rec.ID
		if rec.ConfigImage == c.cfg.WebImage {
			if rec.Phase.Active() {
				return rec, fmt.Errorf("%w: %s to %s, %s", ErrDeployBusy, rec.ID, rec.Image, rec.Phase)
			}
			running = rec.Running()
		}
	}
	if image == running {
		return rec, nil
	}
	now := c.now()
	d := state.Deploy{ID: newDeployID(), Image: image, Previous: running, ConfigImage: c.cfg.WebImage,
		Phase: state.DeployCanary, Floor: -1, Started: now, Updated: now}
	wrote, err := c.store.PutDeploy(ctx, d, prev)
	if err != nil {
		return state.Deploy{}, err
	}
	if !wrote {
		return state.Deploy{}, fmt.Errorf("%w: another deploy was recorded meanwhile", ErrDeployBusy)
	}
	c.log.Info("deploy requested", "image", image, "previous", running, "deploy", d.ID)
	return d, nil
}

// countImages counts members by image, and the ready ones by image.
func countImages(ms []snapshot) (all, ready map[string]int) {
	all, ready = map[string]int{}, map[string]int{}
	for _, m := range ms {
		all[m.image]++
		if m.phase == phaseReady {
			ready[m.image]++
		}
	}
	return all, ready
}

// newDeployID is a deploy's id: its time and 8 random hex digits.
func newDeployID() string { return time.Now().UTC().Format("20060102T150405Z") + "-" + nonce() }
