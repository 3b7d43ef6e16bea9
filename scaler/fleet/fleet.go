// Package fleet runs a scaler's pools: one control.Controller per pool of
// the pool file (LBSCALE_CONFIG), each with its own configuration, Redis
// keys, driver and leader lease, so that each pool keeps every guarantee
// of a single-pool scaler and the pools' leases spread over the scaler
// replicas (whichever takes each lease first leads that pool).
//
// A reload is a whole new pool file, applied beside the running one, as
// Caddy applies a config: what it adds is started, what it changed is
// replaced, what it dropped is stopped and retired (drained, its
// containers removed), and what is equal runs on untouched. A file that
// does not load changes nothing.
package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"lbscale/internal/poolfile"
	"lbscale/internal/state"
	"lbscale/scaler/config"
	"lbscale/scaler/control"
	"lbscale/scaler/driver"
)

// Pool is one pool as the fleet runs it: the file's entry and the scaler
// configuration it makes (the environment overlaid with its settings).
type Pool struct {
	File   poolfile.Pool
	Config config.Config
}

// Load makes each pool's configuration: config.Load over the environment
// overlaid with the pool's settings. Every problem of every pool is
// reported, each line naming the file, line and key that set the value
// (poolfile.Pool.Explain), or the variable when it came from the
// environment; a line that several pools share (an environment variable's)
// is reported once.
func Load(c poolfile.Config, env func(string) (string, bool)) ([]Pool, error) {
	if env == nil {
		env = os.LookupEnv
	}
	return poolfile.Each(c, func(p poolfile.Pool) (Pool, error) {
		cfg, err := config.Load(p.Lookup(env))
		return Pool{File: p, Config: cfg}, err
	})
}

// Options wire a Fleet.
type Options struct {
	// Env is the process environment (nil: os.LookupEnv); each pool's
	// settings overlay it.
	Env func(string) (string, bool)
	// Store returns the pool's state (redisstore's ForPool: one client for
	// every pool). The fleet closes each Store it got once done with it.
	Store func(pool string) state.Store
	// Driver returns the pool's driver (containers labelled
	// lbscale.pool=<pool>) and what closes it (nil: nothing to close).
	Driver func(ctx context.Context, cfg config.Config) (driver.Driver, func(), error)
	// Health, when set, returns the start gate's probe for a pool (nil:
	// the controller's HTTP probe of the pool's HEALTH_PATH).
	Health func(cfg config.Config) func(ctx context.Context, addr string) error
	// Now is the controllers' clock (nil: time.Now).
	Now    func() time.Time
	Logger *slog.Logger // nil: slog.Default()
}

// Fleet is the pools a scaler process runs. Start it once; then Apply
// and Invalid take reloads (from the pool file's watcher), and Wait
// stops it once Start's context ends.
type Fleet struct {
	o   Options
	log *slog.Logger
	ctx context.Context // Start's: every controller and retirement runs under it

	// applyMu serialises Start, Apply and Wait's stop: one change of the
	// running set at a time.
	applyMu sync.Mutex
	// wg counts controllers' Run goroutines and retirements.
	wg sync.WaitGroup

	reloadErrors prometheus.Counter
	reg          *prometheus.Registry

	mu       sync.RWMutex // protects the fields below
	order    []string     // running pools, in the file's order
	running  map[string]*runner
	retiring map[string]*retirement
	problem  string // the latest pool file's error; "" once one loads
}

// runner is one pool's running controller and what it was built with.
type runner struct {
	pool    Pool
	ctrl    *control.Controller
	store   state.Store
	closeFn func()        // closes the driver
	cancel  func()        // ends Run
	done    chan struct{} // closed when Run returned
}

// retirement is a removed pool being drained.
type retirement struct {
	cancel func()
	done   chan struct{}
}

// New returns a Fleet; Start starts it.
func New(o Options) *Fleet {
	if o.Env == nil {
		o.Env = os.LookupEnv
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	f := &Fleet{o: o, log: log, running: map[string]*runner{}, retiring: map[string]*retirement{},
		reg: prometheus.NewRegistry()}
	f.reloadErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lbscale_scaler_config_reload_errors_total",
		Help: "Pool file changes that did not load (the running pools stayed as they were).",
	})
	f.reg.MustRegister(f.reloadErrors)
	return f
}

// Start runs a controller for each pool, until ctx ends (then Wait
// returns once they all stopped). An error (a driver that cannot be
// made) stops what it started.
func (f *Fleet) Start(ctx context.Context, pools []Pool) error {
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	f.ctx = ctx
	for _, p := range pools {
		r, err := f.start(p)
		if err != nil {
			f.stopAll()
			return err
		}
		f.mu.Lock()
		f.running[p.Config.Pool] = r
		f.order = append(f.order, p.Config.Pool)
		f.mu.Unlock()
	}
	return nil
}

// Wait blocks until Start's ctx ends, then stops every controller (each
// releases its lease) and waits for them and for retirements under way
// (which ctx's end cancels: a pool half retired keeps its remaining
// containers until a scaler retires it again).
func (f *Fleet) Wait() {
	<-f.ctx.Done()
	f.applyMu.Lock()
	f.stopAll()
	f.applyMu.Unlock()
	f.wg.Wait()
}

// stopAll stops every running controller, at once. applyMu is held.
func (f *Fleet) stopAll() {
	f.mu.Lock()
	rs := make([]*runner, 0, len(f.running))
	for _, r := range f.running {
		rs = append(rs, r)
	}
	f.running, f.order = map[string]*runner{}, nil
	f.mu.Unlock()
	for _, r := range rs {
		r.cancel()
	}
	for _, r := range rs {
		<-r.done
		r.close()
	}
}

// start builds and runs p's controller.
func (f *Fleet) start(p Pool) (*runner, error) {
	drv, closeDrv, err := f.o.Driver(f.ctx, p.Config)
	if err != nil {
		return nil, fmt.Errorf("pool %s: driver: %w", p.Config.Pool, err)
	}
	var health func(context.Context, string) error
	if f.o.Health != nil {
		health = f.o.Health(p.Config)
	}
	store := f.o.Store(p.Config.Pool)
	ctrl := control.New(control.Options{Config: p.Config, Store: store, Driver: drv, Health: health,
		Now: f.o.Now, Logger: f.log, Pools: f.Pools})
	ctx, cancel := context.WithCancel(f.ctx)
	r := &runner{pool: p, ctrl: ctrl, store: store, closeFn: closeDrv, cancel: cancel, done: make(chan struct{})}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer close(r.done)
		if err := ctrl.Run(ctx); err != nil {
			f.log.Error("controller stopped", "pool", p.Config.Pool, "err", err)
		}
	}()
	f.log.Info("pool running", "pool", p.Config.Pool, "min", p.Config.MinReplicas, "max", p.Config.MaxReplicas,
		"target_inflight", p.Config.TargetInflight, "image", p.Config.WebImage, "health_path", p.Config.HealthPath)
	return r, nil
}

// close releases what r's controller used, once Run returned.
func (r *runner) close() {
	if r.closeFn != nil {
		r.closeFn()
	}
	_ = r.store.Close()
}

// stop ends r's controller and waits: its term's workers stop and its
// lease is released, so that another scaler (or r's successor) leads at
// once.
func (r *runner) stop() {
	r.cancel()
	<-r.done
}

// Apply makes the running pools those of c (a reload). Pools whose
// settings are unchanged run on untouched (a change of routes alone is
// the balancers' business). A file whose pools do not all load changes
// nothing: it is reported as Invalid reports it. Apply is called from the
// pool file's watcher; calls are serialised.
func (f *Fleet) Apply(c poolfile.Config) {
	pools, err := Load(c, f.o.Env)
	if err != nil {
		f.Invalid(err)
		return
	}
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	if f.ctx.Err() != nil {
		return
	}
	f.mu.Lock()
	f.problem = ""
	old := maps.Clone(f.running)
	f.mu.Unlock()

	want := map[string]Pool{}
	var added, changed, removed, failed []string
	for _, p := range pools {
		want[p.Config.Pool] = p
	}
	for name, r := range old {
		if _, ok := want[name]; !ok {
			removed = append(removed, name)
			f.retire(r)
		}
	}
	next := map[string]*runner{}
	var order []string
	for _, p := range pools {
		name := p.Config.Pool
		r := old[name]
		switch {
		case r != nil && r.pool.File.SameSettings(p.File):
			next[name] = r
			order = append(order, name)
			continue
		case r != nil:
			// A new controller for the new settings: the old one stops
			// (its lease released), the new one campaigns and its first
			// reconcile adopts the running containers. An image change
			// reaches only the containers started from now on; rolling
			// the running ones onto it is a deploy's work, not a reload's.
			f.mu.Lock()
			delete(f.running, name)
			f.mu.Unlock()
			r.stop()
			r.close()
			changed = append(changed, name)
		default:
			f.cancelRetirement(name)
			added = append(added, name)
		}
		nr, err := f.start(p)
		if err != nil {
			failed = append(failed, name)
			f.log.Error("pool not started", "pool", name, "err", err)
			f.mu.Lock()
			f.problem = err.Error()
			f.mu.Unlock()
			continue
		}
		next[name] = nr
		order = append(order, name)
		f.mu.Lock()
		f.running[name] = nr
		f.mu.Unlock()
	}
	f.mu.Lock()
	f.running, f.order = next, order
	f.mu.Unlock()
	f.log.Info("pool file reloaded", "file", c.File, "pools", order, "added", added, "changed", changed,
		"removed", removed, "failed", failed)
}

// Invalid reports a pool file that does not load: logged with its file,
// line and key, counted, and shown in /status until a file loads. The
// running pools stay as they are.
func (f *Fleet) Invalid(err error) {
	f.reloadErrors.Inc()
	f.mu.Lock()
	f.problem = err.Error()
	f.mu.Unlock()
	f.log.Error("pool file not applied; the running pools stay as they are", "err", err)
}

// retire stops r's controller and retires its pool in the background:
// drained, containers removed, registry emptied (control.Retire, under
// the pool's lease, so that one scaler of several does it). applyMu is
// held.
func (f *Fleet) retire(r *runner) {
	name := r.pool.Config.Pool
	f.mu.Lock()
	delete(f.running, name)
	f.mu.Unlock()
	r.stop()
	ctx, cancel := context.WithCancel(f.ctx)
	ret := &retirement{cancel: cancel, done: make(chan struct{})}
	f.mu.Lock()
	f.retiring[name] = ret
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer close(ret.done)
		defer r.close()
		if err := r.ctrl.Retire(ctx); err != nil && ctx.Err() == nil {
			f.log.Error("pool retirement failed", "pool", name, "err", err)
		}
		f.mu.Lock()
		if f.retiring[name] == ret {
			delete(f.retiring, name)
		}
		f.mu.Unlock()
	}()
}

// cancelRetirement stops the retirement of a pool that is back in the
// file, and waits for it: its drains must not take the new controller's
// containers. applyMu is held.
func (f *Fleet) cancelRetirement(name string) {
	f.mu.Lock()
	ret := f.retiring[name]
	delete(f.retiring, name)
	f.mu.Unlock()
	if ret != nil {
		ret.cancel()
		<-ret.done
		f.log.Info("pool back in the pool file: its retirement stopped", "pool", name)
	}
}

// Pools lists the running pools in the pool file's order.
func (f *Fleet) Pools() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return slices.Clone(f.order)
}

// Retiring lists the pools being retired, sorted.
func (f *Fleet) Retiring() []string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []string
	for name := range f.retiring {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Controller returns pool's running controller (nil: not running). With
// pool "", the first pool's.
func (f *Fleet) Controller(pool string) *control.Controller {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if pool == "" && len(f.order) > 0 {
		pool = f.order[0]
	}
	if r := f.running[pool]; r != nil {
		return r.ctrl
	}
	return nil
}

// controllers returns the running controllers in order.
func (f *Fleet) controllers() []*control.Controller {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]*control.Controller, 0, len(f.order))
	for _, name := range f.order {
		if r := f.running[name]; r != nil { // nil: being replaced by Apply
			out = append(out, r.ctrl)
		}
	}
	return out
}

// reloadProblem is the latest pool file's error ("" when it loaded).
func (f *Fleet) reloadProblem() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.problem
}
