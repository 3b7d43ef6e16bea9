// Package control is the scaler's controller: it holds the leader lease,
// keeps the Redis registry in step with the containers the driver runs,
// scales up on demand and down on idleness, and reports what it did.
//
// Decisions are made by package decide (pure functions). This package only
// gathers their inputs, carries out their results and records metrics. All
// decisions of one leadership term are taken by one goroutine (lead), so
// that two triggers (a demand signal and a reconcile, say) never both start
// containers for the same shortfall; the slow work — creating a container
// and waiting for its health, draining one — runs in worker goroutines
// owned by the term, which the term waits for when it ends.
//
// Each concern has its own type, file and lock, so that each can change
// and be tested alone: the lease loop (lease.go), the member table
// (members.go), scale-up (scaleup.go), drain and scale-down (drain.go),
// reconcile (reconcile.go) and the reporter of problems and events they
// share (report.go). This file ties them into terms.
package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"

	"lbscale/internal/state"
	"lbscale/scaler/config"
	"lbscale/scaler/dashboard"
	"lbscale/scaler/decide"
	"lbscale/scaler/driver"
)

const (
	// healthPoll is the pause between two health probes of a booting
	// container; it bounds how much the measured cold start overstates.
	healthPoll = 50 * time.Millisecond
	// probeTimeout bounds one health probe.
	probeTimeout = time.Second
	// backoffBase and backoffCap shape the retry delays after Docker or
	// Redis failures (exponential, capped).
	backoffBase = 500 * time.Millisecond
	backoffCap  = 30 * time.Second
	// problemEvery limits the repetition of one failing operation's log line.
	problemEvery = 10 * time.Second
	// eventRecheck is when a reconcile follows one triggered by an event.
	eventRecheck = 200 * time.Millisecond
	// eventsKept is the length of the /status event log.
	eventsKept = 50
)

// Options wires a Controller.
type Options struct {
	Config config.Config
	Store  state.Store
	Driver driver.Driver
	// Health probes addr once and returns nil when it is healthy; nil means
	// HTTPHealth of the pool's HEALTH_PATH (a GET must answer 200).
	Health func(ctx context.Context, addr string) error
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Logger (nil: slog.Default()).
	Logger *slog.Logger
	// Instance is this process's name in the lease (nil: SCALER_ID, a
	// slash and 8 random hex digits). It differs from every other
	// process's, a restarted one's included: a scaler restarted under the
	// same SCALER_ID must not take the dead process's lease for its own
	// (nor two scalers started with one SCALER_ID share one), so a new
	// process always campaigns like any follower.
	Instance string
	// Pools lists the pools the process runs, for /status and the
	// dashboard's pool selector (nil: this controller's pool alone). A
	// scaler of several pools runs one Controller per pool; each names
	// them all, so that any of its pages leads to the others.
	Pools func() []string
}

// Controller is one scaler process's control loop. It owns one value per
// concern — the lease loop, the member table, scale-up, drain, reconcile
// and the reporter they share — and the term that ties them together:
// startTerm begins leading, lead takes the term's decisions, and the end
// of the term resets what the term learned.
type Controller struct {
	cfg      config.Config
	instance string
	store    state.Store
	drv      driver.Driver
	now      func() time.Time
	log      *slog.Logger
	m        *metrics
	rep      *reporter

	lease   *lease
	dash    *dashboard.Hub
	members *memberTable
	up      *upscaler
	down    *drainer
	recon   *reconciler
	dep     *deployer
	floor   *floorKeeper
	flaps   *flapMeter
	pools   func() []string

	// Triggers for the lead goroutine; buffered 1 so that they coalesce.
	reconcileCh, downCh chan struct{}

	// leader is set while a term runs: from its start until its state was
	// reset at its end.
	leader atomic.Bool

	// wg counts the current term's workers.
	wg sync.WaitGroup

	// auto is the scaling policy with this term's demand samples; only the
	// lead goroutine touches it (through up and down).
	auto decide.Autoscaler
}

// New returns a controller; call Run to start it.
func New(o Options) *Controller {
	c := &Controller{
		cfg:         o.Config,
		instance:    o.Instance,
		store:       o.Store,
		drv:         o.Driver,
		now:         o.Now,
		log:         o.Logger,
		m:           newMetrics(o.Config.Pool),
		reconcileCh: make(chan struct{}, 1),
		downCh:      make(chan struct{}, 1),
		members:     newMemberTable(),
		flaps:       &flapMeter{window: o.Config.StableWindow},
		pools:       o.Pools,
	}
	c.auto = decide.Autoscaler{
		Sizing: decide.Sizing{Target: c.cfg.TargetInflight, Min: c.cfg.MinReplicas, Max: c.cfg.MaxReplicas, BacklogDrain: c.cfg.BacklogDrain,
			WaitTarget: c.cfg.LatencyTarget, TargetConns: c.cfg.TargetConns},
		Rule:        decide.Rule(c.cfg.ScaleDown),
		Rate:        c.cfg.MaxScaleDownRate,
		IdleTimeout: c.cfg.IdleTimeout,
		Cooldown:    c.cfg.ScaleUpCooldown,
		Win:         decide.Windows{Stable: c.cfg.StableWindow, Panic: c.cfg.PanicWindow, Every: c.cfg.PollInterval / 2},
	}
	health := o.Health
	if health == nil {
		health = HTTPHealth(&http.Client{Timeout: probeTimeout}, c.cfg.HealthPath)
	}
	if c.pools == nil {
		c.pools = func() []string { return []string{c.cfg.Pool} }
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.instance == "" {
		c.instance = c.cfg.ID + "/" + nonce()
	}
	c.log = c.log.With("scaler", c.instance, "pool", c.cfg.Pool)
	c.rep = newReporter(c.now, c.log, c.m)
	c.rep.size = func() int { ready, starting, _ := c.members.counts(); return ready + starting }
	c.up = &upscaler{
		cfg: c.cfg, store: c.store, drv: c.drv, health: health, now: c.now, log: c.log, m: c.m, rep: c.rep,
		members: c.members, auto: &c.auto, workers: &c.wg, flaps: c.flaps, recheck: c.reconcileCh,
	}
	c.down = &drainer{
		cfg: c.cfg, store: c.store, drv: c.drv, now: c.now, log: c.log, rep: c.rep,
		members: c.members, auto: &c.auto, workers: &c.wg, flaps: c.flaps, load: c.up,
	}
	c.up.remove = c.down
	c.floor = newFloorKeeper(c.cfg, c.store, c.log, c.rep, c.m.reg, c.up.coldStart)
	c.up.floor, c.down.floor = c.floor, c.floor
	c.dep = &deployer{cfg: c.cfg, store: c.store, now: c.now, log: c.log, rep: c.rep, m: c.m, members: c.members, up: c.up, down: c.down}
	c.up.image, c.up.failed = c.dep.startImage, c.dep.startFailed
	c.down.deploy = c.dep.view
	c.recon = &reconciler{cfg: c.cfg, store: c.store, drv: c.drv, now: c.now, log: c.log, rep: c.rep, members: c.members, up: c.up, down: c.down,
		surge: c.dep.surge}
	c.lease = newLease(c.store, c.instance, c.cfg.LeaseTTL, c.now, c.log, c.rep, c.startTerm)
	c.dash = dashboard.New(dashboard.Options{Source: c, Now: c.now, Log: c.log})
	return c
}

// DefaultHealthPath is what HTTPHealth probes when given no path.
const DefaultHealthPath = "/healthz"

// HTTPHealth probes GET http://addr<path> with client (path "" is
// DefaultHealthPath); 200 is healthy. The pool's HEALTH_PATH is the path:
// an image serves its health where it does (go-httpbin at /status/200),
// and a probe of a path it lacks would fail every start. Errors name the
// URL probed, so that a wrong path reads as one in the log.
func HTTPHealth(client *http.Client, path string) func(ctx context.Context, addr string) error {
	if path == "" {
		path = DefaultHealthPath
	}
	return func(ctx context.Context, addr string) error {
		url := "http://" + addr + path
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("health request %s: %w", url, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("health probe GET %s: %w", url, err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("health probe GET %s: %s (HEALTH_PATH is %s)", url, resp.Status, path)
		}
		return nil
	}
}

// nonce is 8 random hex digits.
func nonce() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Run campaigns for the lease and, while it holds it, leads. It returns when
// ctx ends, after the current term's workers stopped and the lease was
// released, so that another scaler takes over at once rather than after the
// TTL. How lease errors are weathered is told at the lease type.
func (c *Controller) Run(ctx context.Context) error {
	cr := cron.New(cron.WithLogger(cronLogger{c.log}), cron.WithChain(cron.SkipIfStillRunning(cronLogger{c.log})))
	if _, err := cr.AddFunc(c.cfg.ScaleDownSpec, func() { poke(c.downCh) }); err != nil {
		return fmt.Errorf("schedule scale-down %q: %w", c.cfg.ScaleDownSpec, err)
	}
	cr.Start()
	defer cr.Stop()
	dctx, stop := context.WithCancel(ctx)
	dashDone := make(chan struct{})
	go func() { defer close(dashDone); c.dash.Run(dctx) }()
	defer func() { stop(); <-dashDone }()
	c.lease.run(ctx)
	return nil
}

// startTerm begins leading; the returned func ends the term and waits.
func (c *Controller) startTerm(parent context.Context) func() {
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	c.leader.Store(true)
	c.auto.Win.Reset() // lead has not started: no other goroutine holds it
	c.m.leader.Set(1)
	c.log.Info("leading: lease acquired")
	c.wg.Add(1) // before lead starts: it waits for the term's workers
	go func() {
		defer c.wg.Done()
		// The previous leader's events are read before this term's first
		// Summary replaces its own (else they would be lost, depending on
		// which of the two goroutines ran first).
		c.seedEvents(ctx)
		c.publishSummaries(ctx)
	}()
	go func() {
		defer close(done)
		c.lead(ctx)
	}()
	return func() {
		cancel()
		<-done
		c.leader.Store(false)
		c.members.reset()
		// A new term starts afresh: back-off and cooldown from this one
		// must not hold back the starts of the next.
		c.up.endTerm()
		c.dep.endTerm()
		c.floor.endTerm()
		c.flaps.endTerm()
		c.up.gauges() // a follower reports no replicas: only the leader's view counts
		c.m.leader.Set(0)
		c.log.Info("stepped down")
	}
}

// lead takes every decision of one term, one at a time.
func (c *Controller) lead(ctx context.Context) {
	defer c.wg.Wait()
	watch := c.drv.Watch(ctx)
	demand := c.store.Demand(ctx)
	poll := time.NewTicker(c.cfg.PollInterval)
	defer poll.Stop()
	recon := time.NewTimer(0) // adopt and repair first, before any scaling
	defer recon.Stop()
	failures := 0
	// reconciled: one reconcile succeeded this term, so the members are
	// known. Until then no scaling decision is taken: with an empty view
	// every decision would see zero replicas and start MIN_REPLICAS anew.
	reconciled := false
	reconcile := func(next time.Duration) {
		if err := c.recon.reconcile(ctx); err != nil && ctx.Err() == nil {
			failures++
			next = max(next, decide.Backoff(failures, backoffBase, backoffCap))
		} else if err == nil {
			failures = 0
			reconciled = true
		}
		recon.Reset(next)
		c.up.gauges()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-recon.C:
			reconcile(c.cfg.ReconcileInterval)
		case _, ok := <-watch:
			if !ok {
				watch = nil
				continue
			}
			// The engine may send an event a moment before its container
			// list shows the change (die before the state reads exited), so
			// look again shortly after as well as now.
			c.log.Debug("reconcile on container event")
			reconcile(min(eventRecheck, c.cfg.ReconcileInterval))
		case <-c.reconcileCh:
			reconcile(c.cfg.ReconcileInterval)
		case _, ok := <-demand:
			if !ok {
				demand = nil
				continue
			}
			if reconciled {
				c.up.scaleUp(ctx)
			}
		case <-poll.C:
			if reconciled {
				c.up.scaleUp(ctx)
				c.dep.step(ctx)
			}
		case <-c.downCh:
			if reconciled {
				c.down.scaleDown(ctx)
			}
		}
	}
}

// cronLogger adapts slog to robfig/cron's logger.
type cronLogger struct{ l *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) { l.l.Debug("cron: "+msg, kv...) }
func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.l.Error("cron: "+msg, append(kv, "err", err)...)
}
