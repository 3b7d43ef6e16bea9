// Package drivertest is an in-memory driver.Driver for unit tests of the
// scaler's logic: containers are records, "healthy" is a flag, and the test
// can kill containers, plant foreign ones and make starts fail.
package drivertest

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"lbscale/scaler/driver"
)

// Fake is a driver.Driver over an in-memory engine shared by every pool;
// each Fake value sees its own pool's containers, like the Docker driver.
type Fake struct {
	pool string
	e    *Engine
}

// Engine is the fake container engine: one per test, shared by the Fake
// drivers of several scalers or pools.
type Engine struct {
	mu       sync.Mutex
	now      func() time.Time
	boxes    map[string]*box
	nextIP   int
	watchers map[chan struct{}]struct{}
	// startErr, when set, fails every Start; listErr every List.
	startErr, listErr error
	lists             int
	// bootDelay is how long a started container stays unhealthy.
	bootDelay time.Duration
	starts    int
	stopped   []string
	// maxRunning is the most running containers per pool seen at once.
	maxRunning map[string]int
}

type box struct {
	inst      driver.Instance
	pool      string
	healthyAt time.Time
	unhealthy bool
}

// NewEngine returns an empty engine; now is its clock (nil: time.Now).
func NewEngine(now func() time.Time) *Engine {
	if now == nil {
		now = time.Now
	}
	return &Engine{now: now, boxes: map[string]*box{}, watchers: map[chan struct{}]struct{}{}, maxRunning: map[string]int{}}
}

// Driver returns a driver.Driver for pool on this engine.
func (e *Engine) Driver(pool string) *Fake { return &Fake{pool: pool, e: e} }

// SetStartError makes every later Start fail with err (nil: succeed).
func (e *Engine) SetStartError(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.startErr = err
}

// SetListError makes every later List fail with err (nil: succeed), as an
// engine that went away would.
func (e *Engine) SetListError(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.listErr = err
}

// Lists is how many List calls were made, failed ones included.
func (e *Engine) Lists() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lists
}

// SetBootDelay makes started containers fail health checks for d.
func (e *Engine) SetBootDelay(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.bootDelay = d
}

// SetUnhealthy makes id fail (or pass again) health checks.
func (e *Engine) SetUnhealthy(id string, bad bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if b := e.boxes[id]; b != nil {
		b.unhealthy = bad
	}
}

// Add plants a container for pool (running unless inst.State says
// otherwise), as if someone ran it by hand or a previous scaler started it.
func (e *Engine) Add(pool string, inst driver.Instance) {
	e.mu.Lock()
	if inst.State == "" {
		inst.State = driver.StateRunning
	}
	if inst.Addr == "" && inst.State == driver.StateRunning {
		inst.Addr = e.addrLocked()
	}
	if inst.Created.IsZero() {
		inst.Created = e.now()
	}
	e.boxes[inst.ID] = &box{inst: inst, pool: pool}
	e.countLocked(pool)
	e.mu.Unlock()
	e.nudge()
}

// Kill makes id exit, as docker kill would.
func (e *Engine) Kill(id string) {
	e.mu.Lock()
	if b := e.boxes[id]; b != nil {
		b.inst.State, b.inst.Addr = driver.StateExited, ""
	}
	e.mu.Unlock()
	e.nudge()
}

// Get returns id's container.
func (e *Engine) Get(id string) (driver.Instance, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b := e.boxes[id]
	if b == nil {
		return driver.Instance{}, false
	}
	return b.inst, true
}

// Running returns the ids of pool's running containers, sorted.
func (e *Engine) Running(pool string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ids []string
	for id, b := range e.boxes {
		if b.pool == pool && b.inst.Running() {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// Starts is how many containers were started, all pools together.
func (e *Engine) Starts() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.starts
}

// Stopped lists the ids stopped through a driver, in order.
func (e *Engine) Stopped() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.stopped...)
}

// MaxRunning is the most containers pool ran at once.
func (e *Engine) MaxRunning(pool string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.maxRunning[pool]
}

// Health is a health probe for the controller: addr answers once its
// container runs, has booted and is not marked unhealthy.
func (e *Engine) Health(_ context.Context, addr string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, b := range e.boxes {
		if b.inst.Addr != addr || !b.inst.Running() {
			continue
		}
		if b.unhealthy || e.now().Before(b.healthyAt) {
			return fmt.Errorf("%s: not healthy", addr)
		}
		return nil
	}
	return fmt.Errorf("%s: connection refused", addr)
}

func (e *Engine) addrLocked() string {
	e.nextIP++
	return fmt.Sprintf("10.99.%d.%d:8080", e.nextIP/250, e.nextIP%250+1)
}

func (e *Engine) countLocked(pool string) {
	n := 0
	for _, b := range e.boxes {
		if b.pool == pool && b.inst.Running() {
			n++
		}
	}
	e.maxRunning[pool] = max(e.maxRunning[pool], n)
}

func (e *Engine) nudge() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for ch := range e.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// List implements driver.Driver.
func (f *Fake) List(ctx context.Context) ([]driver.Instance, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	e := f.e
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lists++
	if e.listErr != nil {
		return nil, fmt.Errorf("list containers of pool %s: %w", f.pool, e.listErr)
	}
	var out []driver.Instance
	for _, b := range e.boxes {
		if b.pool == f.pool {
			out = append(out, b.inst)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Start implements driver.Driver.
func (f *Fake) Start(ctx context.Context, spec driver.Spec) (driver.Instance, error) {
	if err := ctx.Err(); err != nil {
		return driver.Instance{}, err
	}
	e := f.e
	e.mu.Lock()
	if e.startErr != nil {
		err := e.startErr
		e.mu.Unlock()
		return driver.Instance{}, fmt.Errorf("start container %s: %w", spec.Name, err)
	}
	if _, dup := e.boxes[spec.Name]; dup {
		e.mu.Unlock()
		return driver.Instance{}, fmt.Errorf("start container %s: name in use", spec.Name)
	}
	now := e.now()
	inst := driver.Instance{ID: spec.Name, ContainerID: "fake-" + spec.Name, Addr: e.addrLocked(), State: driver.StateRunning, Created: now, Image: spec.Image}
	e.boxes[spec.Name] = &box{inst: inst, pool: f.pool, healthyAt: now.Add(e.bootDelay)}
	e.starts++
	e.countLocked(f.pool)
	e.mu.Unlock()
	e.nudge()
	return inst, nil
}

// Stop implements driver.Driver.
func (f *Fake) Stop(ctx context.Context, id string, _ time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e := f.e
	e.mu.Lock()
	b := e.boxes[id]
	if b == nil {
		e.mu.Unlock()
		return nil
	}
	if b.pool != f.pool {
		e.mu.Unlock()
		return fmt.Errorf("stop container %s: %w", id, driver.ErrNotInPool)
	}
	delete(e.boxes, id)
	e.stopped = append(e.stopped, id)
	e.mu.Unlock()
	e.nudge()
	return nil
}

// Watch implements driver.Driver.
func (f *Fake) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	e := f.e
	e.mu.Lock()
	e.watchers[ch] = struct{}{}
	e.mu.Unlock()
	go func() {
		<-ctx.Done()
		e.mu.Lock()
		delete(e.watchers, ch)
		e.mu.Unlock()
	}()
	ch <- struct{}{}
	return ch
}
