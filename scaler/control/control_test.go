package control

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"lbscale/internal/state"
	"lbscale/internal/state/memstore"
	"lbscale/internal/testenv"
	"lbscale/scaler/config"
	"lbscale/scaler/decide"
	"lbscale/scaler/driver"
	"lbscale/scaler/driver/drivertest"
)

// These tests run the whole controller against the in-memory store and the
// fake engine, with short intervals, each inside a synctest bubble: time is
// fake and moves on only when every goroutine of the bubble waits, so a
// test's sleeps and the controller's timers cost no real time, and "at most
// three attempts in 1.5 s" counts the same on a loaded machine as on an
// idle one. Assertions wait for a condition (eventually) rather than a
// fixed time; the few "it did not happen" checks hold for any speed, since
// nothing could make it happen.

const pool = "unit"

func testConfig() config.Config {
	return config.Config{
		Pool:              pool,
		MinReplicas:       1,
		MaxReplicas:       5,
		TargetInflight:    4,
		ScaleUpCooldown:   0,
		IdleTimeout:       time.Hour,
		ScaleDownSpec:     "@every 1h",
		DrainTimeout:      10 * time.Second,
		DrainSettle:       0,
		StopGrace:         0,
		WebImage:          "lbscale/webserver:test",
		HealthTimeout:     5 * time.Second,
		LeaseTTL:          300 * time.Millisecond,
		ReconcileInterval: 50 * time.Millisecond,
		PollInterval:      20 * time.Millisecond,
		// A panic window of a nanosecond holds only the reading being
		// decided on, so every decision sizes from the balancers' latest
		// report alone and a test reasons about one report at a time (the
		// windows' means have their own tests in package decide). A zero
		// window would hold no reading at all: no backlog.
		PanicWindow: time.Nanosecond,
		ID:          "scaler-a",
	}
}

// clock is the bubble's time plus an offset the test can advance, so that
// "idle for an hour" is one step, not an hour of controller rounds. The
// lease loop does not see the offset (it keeps Redis's wall clock).
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration) { c.off.Add(int64(d)) }

type harness struct {
	t     *testing.T
	store *memstore.Store
	eng   *drivertest.Engine
	clk   *clock
	stops []started
}

// started is a controller the harness started, and what stops it.
type started struct {
	c    *Controller
	stop func()
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, store: memstore.New(nil), eng: drivertest.NewEngine(nil), clk: &clock{}}
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("SCALER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// start runs a controller until the test ends (or stop is called).
func (h *harness) start(cfg config.Config, store state.Store) (c *Controller, stop func()) {
	if store == nil {
		store = h.store
	}
	c = New(Options{Config: cfg, Store: store, Driver: h.eng.Driver(cfg.Pool), Health: h.eng.Health, Now: h.clk.now, Logger: testLogger(h.t)})
	return c, h.run(c)
}

// run runs c until the test ends (or stop is called).
func (h *harness) run(c *Controller) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("Run: %v", err)
			}
		})
	}
	h.t.Cleanup(stop)
	h.stops = append(h.stops, started{c, stop})
	return stop
}

// inBubble runs f in a synctest bubble, under a watchdog on real time.
// Fake time moves on only when every goroutine of the bubble waits, so a
// controller that spins without waiting (a lost back-off, say) freezes it:
// the test's sleeps never return. The watchdog turns that hang into a
// failure naming the test after a minute, not at go test's timeout.
func inBubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	name := t.Name()
	dog := time.AfterFunc(time.Minute, func() {
		panic(name + ": still running after a minute of real time; is a goroutine spinning without waiting, so that fake time cannot move on?")
	})
	defer dog.Stop()
	synctest.Test(t, f)
}

func (h *harness) registry() []state.Backend {
	bs, err := h.store.Backends(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return bs
}

func (h *harness) ready() []string {
	var ids []string
	for _, b := range h.registry() {
		if b.State == state.Ready {
			ids = append(ids, b.ID)
		}
	}
	return ids
}

func (h *harness) entry(id string) (state.Backend, bool) {
	for _, b := range h.registry() {
		if b.ID == id {
			return b, true
		}
	}
	return state.Backend{}, false
}

// balancer reports load the way a balancer's sync does.
func (h *harness) balancer(name string, queued int64, inflight map[string]int64, seen map[string]time.Time) {
	h.t.Helper()
	req := state.SyncRequest{Balancer: name, Queued: queued, TTL: time.Hour}
	ids := map[string]bool{}
	for id := range inflight {
		ids[id] = true
	}
	for id := range seen {
		ids[id] = true
	}
	for id := range ids {
		req.Slots = append(req.Slots, state.SlotUse{ID: id, Local: inflight[id], Limit: 4, LastSeen: seen[id]})
	}
	if _, err := h.store.Sync(context.Background(), req); err != nil {
		h.t.Fatal(err)
	}
}

// waitDraining waits until one backend is draining and returns its id.
func (h *harness) waitDraining() string {
	h.t.Helper()
	var id string
	testenv.Eventually(h.t, 15*time.Second, "a backend draining", func() bool {
		for _, b := range h.registry() {
			if b.State == state.Draining {
				id = b.ID
				return true
			}
		}
		return false
	})
	return id
}

// settle waits until the registry and engine agree with n ready and
// nothing starting, then a few more controller rounds.
func (h *harness) settle(n int) {
	h.t.Helper()
	testenv.Eventually(h.t, 15*time.Second, "pool settles", func() bool {
		return len(h.ready()) == n && len(h.registry()) == n && len(h.eng.Running(pool)) == n
	})
	time.Sleep(100 * time.Millisecond)
}

func TestStartsToMinAndRegistersReady(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.MinReplicas = 3
		c, _ := h.start(cfg, nil)
		h.settle(3)
		running := h.eng.Running(pool)
		if !slices.Equal(h.ready(), running) {
			t.Fatalf("registry %v, engine %v", h.ready(), running)
		}
		for _, id := range running {
			if !strings.HasPrefix(id, "lbscale-"+pool+"-web-") {
				t.Errorf("container name %q does not say what it is", id)
			}
			inst, _ := h.eng.Get(id)
			b, _ := h.entry(id)
			if b.Addr != inst.Addr || b.Since.IsZero() {
				t.Errorf("entry %+v, container addr %s", b, inst.Addr)
			}
		}
		if h.eng.Starts() != 3 {
			t.Fatalf("starts = %d, want 3", h.eng.Starts())
		}
		if n := histogramCount(t, c, "lbscale_scaler_cold_start_seconds"); n != 3 {
			t.Fatalf("cold-start observations = %d, want 3", n)
		}
		if !c.Leader() {
			t.Fatal("the only scaler does not lead")
		}
	})
}

func TestKilledContainerLeavesRegistryAndIsReplaced(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.MinReplicas = 2
		c, _ := h.start(cfg, nil)
		h.settle(2)
		victim := h.ready()[0]
		h.eng.Kill(victim)
		testenv.Eventually(t, 15*time.Second, "killed container unregistered and removed", func() bool {
			_, inReg := h.entry(victim)
			_, exists := h.eng.Get(victim)
			return !inReg && !exists
		})
		h.settle(2)
		if slices.Contains(h.ready(), victim) || h.eng.Starts() != 3 {
			t.Fatalf("ready %v after replacing %s; starts %d", h.ready(), victim, h.eng.Starts())
		}
		if !hasEvent(c, "down", decide.ReasonExited) || !hasEvent(c, "up", decide.ReasonReplace) {
			t.Fatalf("events %+v lack exited/replace", c.rep.events.list())
		}
	})
}

func TestDemandScalesByTargetNotByOne(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		h.eng.SetBootDelay(300 * time.Millisecond) // many polls while they boot
		cfg := testConfig()
		cfg.TargetInflight = 2
		cfg.MaxReplicas = 10
		c, _ := h.start(cfg, nil)
		h.settle(1)
		first := h.ready()[0]
		// One container saturated (2 in flight), 5 queued: ceil(7/2) = 4.
		h.balancer("b1", 5, map[string]int64{first: 2}, nil)
		testenv.Eventually(t, 15*time.Second, "4 ready", func() bool { return len(h.ready()) == 4 })
		time.Sleep(200 * time.Millisecond) // more polls on the same load
		if got := h.eng.Starts(); got != 4 {
			t.Fatalf("starts = %d, want 4 (1 for min + 3 for demand, each once)", got)
		}
		evs := eventsOf(c, "up", decide.ReasonDemand)
		if len(evs) != 1 || evs[0].Count != 3 || evs[0].Desired != 4 || evs[0].Queued != 5 || evs[0].Inflight != 2 {
			t.Fatalf("demand events %+v, want one of 3 containers", evs)
		}
	})
}

func TestTwoBalancersSignallingStartWhatTheDemandNeeds(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		h.eng.SetBootDelay(200 * time.Millisecond)
		cfg := testConfig()
		cfg.MaxReplicas = 10
		h.start(cfg, nil)
		h.settle(1)
		first := h.ready()[0]
		// Each balancer has 2 in flight on the one container and 4 queued:
		// ceil((4 + 8) / 4) = 3 — not 1 + 2×2 for two separate signals.
		h.balancer("b1", 4, map[string]int64{first: 2}, nil)
		h.balancer("b2", 4, map[string]int64{first: 2}, nil)
		for range 5 {
			_ = h.store.PublishDemand(context.Background(), "b1", 4)
			_ = h.store.PublishDemand(context.Background(), "b2", 4)
		}
		testenv.Eventually(t, 15*time.Second, "3 ready", func() bool { return len(h.ready()) == 3 })
		time.Sleep(200 * time.Millisecond)
		if got := h.eng.Starts(); got != 3 {
			t.Fatalf("starts = %d, want 3", got)
		}
	})
}

func TestMaxReplicasHoldsUnderAnyLoad(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		h.eng.SetBootDelay(100 * time.Millisecond)
		cfg := testConfig()
		cfg.MaxReplicas = 3
		c, _ := h.start(cfg, nil)
		h.settle(1)
		h.balancer("b1", 100_000, map[string]int64{h.ready()[0]: 4}, nil)
		testenv.Eventually(t, 15*time.Second, "3 ready", func() bool { return len(h.ready()) == 3 })
		time.Sleep(300 * time.Millisecond)
		if got, most := h.eng.Starts(), h.eng.MaxRunning(pool); got != 3 || most != 3 {
			t.Fatalf("starts %d, most running %d; want 3 and 3", got, most)
		}
		if s := c.Status(context.Background()); s.Desired != 3 {
			t.Fatalf("desired = %d, want MAX_REPLICAS 3", s.Desired)
		}
	})
}

func TestScaleFromZero(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.MinReplicas = 0
		c, _ := h.start(cfg, nil)
		testenv.Eventually(t, 15*time.Second, "leads", c.Leader)
		time.Sleep(200 * time.Millisecond)
		if n := h.eng.Starts(); n != 0 {
			t.Fatalf("MIN_REPLICAS=0 and no load started %d containers", n)
		}
		h.balancer("b1", 1, nil, nil)
		_ = h.store.PublishDemand(context.Background(), "b1", 1)
		testenv.Eventually(t, 15*time.Second, "one ready", func() bool { return len(h.ready()) == 1 })
		if !hasEvent(c, "up", decide.ReasonFromZero) {
			t.Fatalf("events %+v lack from_zero", c.rep.events.list())
		}
	})
}

func TestCooldownSpacesDemandStarts(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.MaxReplicas = 10
		cfg.ScaleUpCooldown = time.Hour
		c, _ := h.start(cfg, nil)
		h.settle(1)
		h.balancer("b1", 4, map[string]int64{h.ready()[0]: 4}, nil)
		testenv.Eventually(t, 15*time.Second, "2 ready", func() bool { return len(h.ready()) == 2 })
		// Load doubles, but the cooldown of the first demand start holds it.
		h.balancer("b1", 12, map[string]int64{h.ready()[0]: 4, h.ready()[1]: 4}, nil)
		time.Sleep(300 * time.Millisecond)
		if n := h.eng.Starts(); n != 2 {
			t.Fatalf("starts = %d during the cooldown, want 2", n)
		}
		h.clk.advance(time.Hour)
		testenv.Eventually(t, 15*time.Second, "5 ready after the cooldown", func() bool { return len(h.ready()) == 5 })
		if len(eventsOf(c, "up", decide.ReasonDemand)) != 2 {
			t.Fatalf("events %+v", c.rep.events.list())
		}
	})
}

func TestIdleScaleDownNewestFirstToMin(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.MaxReplicas = 4
		cfg.IdleTimeout = time.Minute
		cfg.DrainSettle = 50 * time.Millisecond
		c, _ := h.start(cfg, nil)
		h.settle(1)
		oldest := h.ready()[0]
		h.balancer("b1", 8, map[string]int64{oldest: 4}, nil)
		h.settle(3)
		h.balancer("b1", 0, map[string]int64{}, nil) // load gone
		poke(c.downCh)
		time.Sleep(200 * time.Millisecond)
		if len(h.eng.Stopped()) != 0 {
			t.Fatalf("stopped %v before IDLE_TIMEOUT", h.eng.Stopped())
		}
		h.clk.advance(2 * time.Minute)
		poke(c.downCh)
		h.settle(1)
		if got := h.ready(); !slices.Equal(got, []string{oldest}) {
			t.Fatalf("ready %v, want the oldest %s kept", got, oldest)
		}
		if evs := eventsOf(c, "down", decide.ReasonIdle); len(evs) != 1 || evs[0].Count != 2 {
			t.Fatalf("idle events %+v", evs)
		}
	})
}

func TestScaleDownByCron(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.MaxReplicas = 4
		cfg.IdleTimeout = 100 * time.Millisecond
		cfg.ScaleDownSpec = "@every 1s"
		h.start(cfg, nil)
		h.settle(1)
		h.balancer("b1", 4, map[string]int64{h.ready()[0]: 4}, nil)
		testenv.Eventually(t, 15*time.Second, "2 ready", func() bool { return len(h.ready()) == 2 })
		h.balancer("b1", 0, nil, nil)
		h.settle(1) // the cron job, not the test, drains the idle one
	})
}

func TestInflightKeepsAContainerAndDrainWaitsForIt(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.MaxReplicas = 3
		cfg.MinReplicas = 0
		cfg.IdleTimeout = time.Minute
		cfg.DrainSettle = 100 * time.Millisecond
		c, _ := h.start(cfg, nil)
		h.balancer("b1", 8, nil, nil)
		h.settle(2)
		ids := h.ready()
		busy, idle := ids[0], ids[1]
		long := h.clk.now().Add(-time.Hour)
		h.balancer("b1", 0, map[string]int64{busy: 1}, map[string]time.Time{busy: long, idle: long})
		h.clk.advance(2 * time.Minute)
		poke(c.downCh)
		testenv.Eventually(t, 15*time.Second, "idle one draining", func() bool { b, _ := h.entry(idle); return b.State == state.Draining })
		// A request reaches the draining container before its balancer synced.
		h.balancer("b1", 0, map[string]int64{busy: 1, idle: 1}, nil)
		time.Sleep(400 * time.Millisecond)
		if _, ok := h.eng.Get(idle); !ok {
			t.Fatal("draining container stopped with a request in flight")
		}
		if b, _ := h.entry(busy); b.State != state.Ready {
			t.Fatalf("busy container %+v was picked for scale-down", b)
		}
		h.balancer("b1", 0, map[string]int64{busy: 1}, nil)
		testenv.Eventually(t, 15*time.Second, "drained container stopped and unregistered", func() bool {
			_, reg := h.entry(idle)
			_, run := h.eng.Get(idle)
			return !reg && !run
		})
	})
}

func TestDrainTimeoutStopsAnyway(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.IdleTimeout = time.Minute
		cfg.DrainSettle = 200 * time.Millisecond // time to see it draining
		cfg.DrainTimeout = 600 * time.Millisecond
		c, _ := h.start(cfg, nil)
		h.settle(1)
		h.balancer("b1", 8, nil, nil)
		h.settle(2)
		h.balancer("b1", 0, nil, nil)
		h.clk.advance(2 * time.Minute)
		poke(c.downCh)
		id := h.waitDraining()
		// A stuck request: one in flight needs 1 replica, the other ready one
		// covers it, so this is no reason to reclaim; only the timeout ends it.
		h.balancer("b1", 0, map[string]int64{id: 1}, nil)
		testenv.Eventually(t, 15*time.Second, "stopped after DRAIN_TIMEOUT", func() bool { _, ok := h.eng.Get(id); return !ok })
		if hasEvent(c, "up", decide.ReasonReclaim) {
			t.Fatal("reclaimed")
		}
	})
}

func TestDemandReclaimsDrainingContainer(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.MinReplicas = 1
		cfg.MaxReplicas = 3
		cfg.IdleTimeout = time.Minute
		cfg.DrainSettle = time.Second
		c, _ := h.start(cfg, nil)
		h.balancer("b1", 8, nil, nil)
		h.settle(2)
		h.balancer("b1", 0, nil, nil)
		h.clk.advance(2 * time.Minute)
		poke(c.downCh)
		draining := h.waitDraining()
		// It still has a request in flight (so it is not stopped yet) when
		// demand returns: 2 in flight + 3 queued needs ceil(5/4) = 2.
		h.balancer("b1", 3, map[string]int64{draining: 1, h.ready()[0]: 1}, nil)
		testenv.Eventually(t, 15*time.Second, "reclaimed", func() bool { b, _ := h.entry(draining); return b.State == state.Ready })
		time.Sleep(200 * time.Millisecond)
		if h.eng.Starts() != 2 || len(h.eng.Stopped()) != 0 {
			t.Fatalf("starts %d stopped %v: reclaim should replace a start", h.eng.Starts(), h.eng.Stopped())
		}
		if !hasEvent(c, "up", decide.ReasonReclaim) {
			t.Fatalf("events %+v", c.rep.events.list())
		}
	})
}

func TestForeignContainersAreNeverTouched(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.MinReplicas = 0
		cfg.IdleTimeout = time.Millisecond
		h.eng.Add("other-pool", driver.Instance{ID: "neighbour"})
		h.eng.Add("other-pool", driver.Instance{ID: "neighbour-exited", State: driver.StateExited})
		c, _ := h.start(cfg, nil)
		h.balancer("b1", 1, nil, nil)
		h.settle(1)
		h.balancer("b1", 0, nil, nil)
		h.clk.advance(time.Hour)
		poke(c.downCh)
		h.settle(0)
		if _, ok := h.eng.Get("neighbour"); !ok {
			t.Fatal("a container of another pool was stopped")
		}
		if _, ok := h.eng.Get("neighbour-exited"); !ok {
			t.Fatal("an exited container of another pool was removed")
		}
		for _, id := range h.eng.Stopped() {
			if strings.HasPrefix(id, "neighbour") {
				t.Fatalf("stopped %s", id)
			}
		}
	})
}

func TestAdoptsAndRepairsOnStartUp(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.MinReplicas = 2
		ctx := context.Background()
		// What a crashed scaler left behind: two running containers (one
		// registered ready, one stuck in starting), an exited one, a registry
		// entry with no container, and one running but unregistered.
		h.eng.Add(pool, driver.Instance{ID: "left-ready"})
		h.eng.Add(pool, driver.Instance{ID: "left-starting"})
		h.eng.Add(pool, driver.Instance{ID: "left-exited", State: driver.StateExited})
		h.eng.Add(pool, driver.Instance{ID: "left-unregistered"})
		addr := func(id string) string { i, _ := h.eng.Get(id); return i.Addr }
		since := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
		_ = h.store.PutBackend(ctx, state.Backend{ID: "left-ready", Addr: addr("left-ready"), State: state.Ready, Since: since})
		_ = h.store.PutBackend(ctx, state.Backend{ID: "left-starting", Addr: addr("left-starting"), State: state.Starting, Since: since})
		_ = h.store.PutBackend(ctx, state.Backend{ID: "ghost", Addr: "10.0.0.99:8080", State: state.Ready, Since: since})
		c, _ := h.start(cfg, nil)
		h.settle(3) // above min 2, below max 5: all three adopted, none started
		if got := h.ready(); !slices.Equal(got, []string{"left-ready", "left-starting", "left-unregistered"}) {
			t.Fatalf("ready %v", got)
		}
		if b, _ := h.entry("left-ready"); !b.Since.Equal(since) {
			t.Fatalf("a ready entry was rewritten on adoption: %+v", b)
		}
		if _, ok := h.eng.Get("left-exited"); ok {
			t.Fatal("exited container not removed")
		}
		if h.eng.Starts() != 0 {
			t.Fatalf("started %d containers while adopting enough", h.eng.Starts())
		}
		_ = c
	})
}

func TestAboveMaxIsTrimmed(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.MaxReplicas = 2
		for _, id := range []string{"a", "b", "c"} {
			h.eng.Add(pool, driver.Instance{ID: id})
		}
		h.start(cfg, nil)
		h.settle(2)
		if len(h.eng.Stopped()) != 1 {
			t.Fatalf("stopped %v, want one", h.eng.Stopped())
		}
	})
}

// cutStore fails every call while cut is set, like a Redis out of reach;
// leaseFails makes that many lease calls fail on their own (a hiccup).
type cutStore struct {
	state.Store
	cut        atomic.Bool
	leaseFails atomic.Int32
}

var errCut = errors.New("redis unreachable (test)")

func (s *cutStore) AcquireLease(ctx context.Context, holder string, ttl time.Duration) (state.Lease, error) {
	if s.cut.Load() || s.leaseFails.Add(-1) >= 0 {
		return state.Lease{}, errCut
	}
	return s.Store.AcquireLease(ctx, holder, ttl)
}

func (s *cutStore) ClusterLoad(ctx context.Context) (state.ClusterLoad, error) {
	if s.cut.Load() {
		return state.ClusterLoad{}, errCut
	}
	return s.Store.ClusterLoad(ctx)
}

func (s *cutStore) Backends(ctx context.Context) ([]state.Backend, error) {
	if s.cut.Load() {
		return nil, errCut
	}
	return s.Store.Backends(ctx)
}

func (s *cutStore) PutBackend(ctx context.Context, b state.Backend) error {
	if s.cut.Load() {
		return errCut
	}
	return s.Store.PutBackend(ctx, b)
}

func (s *cutStore) ReleaseLease(ctx context.Context, holder string) error {
	if s.cut.Load() {
		return errCut
	}
	return s.Store.ReleaseLease(ctx, holder)
}

// pair starts scaler a (on storeA; nil: the harness's store), waits until it
// leads, starts b, lets the pool settle at n ready, and checks over three
// lease periods that a alone leads.
func (h *harness) pair(cfgA, cfgB config.Config, storeA state.Store, n int) (a, b *Controller) {
	h.t.Helper()
	a, _ = h.start(cfgA, storeA)
	testenv.Eventually(h.t, 15*time.Second, "a leads", a.Leader)
	b, _ = h.start(cfgB, nil)
	h.settle(n)
	time.Sleep(3 * cfgA.LeaseTTL)
	if !a.Leader() || b.Leader() {
		h.t.Fatalf("leaders: a %v, b %v; want a only", a.Leader(), b.Leader())
	}
	return a, b
}

func TestTwoScalersOneActsAndTheOtherTakesOver(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfgA, cfgB := testConfig(), testConfig()
		cfgA.MinReplicas, cfgB.MinReplicas = 2, 2
		cfgB.ID = "scaler-b"
		storeA := &cutStore{Store: h.store}
		a, b := h.pair(cfgA, cfgB, storeA, 2)
		if h.eng.Starts() != 2 {
			t.Fatalf("starts = %d with two scalers, want 2", h.eng.Starts())
		}
		// a loses Redis: it must stop acting, and b take over after the TTL.
		storeA.cut.Store(true)
		testenv.Eventually(t, 15*time.Second, "a steps down", func() bool { return !a.Leader() })
		testenv.Eventually(t, 15*time.Second, "b takes over", b.Leader)
		h.settle(2)
		if h.eng.Starts() != 2 {
			t.Fatalf("the new leader started %d containers instead of adopting", h.eng.Starts()-2)
		}
		// The new leader acts: it replaces a killed container.
		h.eng.Kill(h.ready()[0])
		testenv.Eventually(t, 15*time.Second, "replaced by b", func() bool { return h.eng.Starts() == 3 })
		h.settle(2)
		if a.Leader() {
			t.Fatal("a leads while cut off")
		}
		if s := a.Status(context.Background()); s.Problems["redis lease"] == "" {
			t.Fatalf("a's status does not show the lease problem: %+v", s.Problems)
		}
	})
}

// A leader that dies without releasing (a crash, or cut off from Redis)
// is replaced within the lease TTL: the follower campaigns as soon as the
// dead leader's lease runs out, not at its next periodic campaign.
func TestDeadLeaderReplacedWithinTheTTL(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfgA, cfgB := testConfig(), testConfig()
		cfgA.LeaseTTL, cfgB.LeaseTTL = 6*time.Second, 6*time.Second // campaign every 1 s
		cfgA.ID, cfgB.ID = "a", "b"
		storeA := &cutStore{Store: h.store}
		a, _ := h.start(cfgA, storeA)
		testenv.Eventually(t, 15*time.Second, "a leads", a.Leader)
		b, _ := h.start(cfgB, nil)
		h.settle(1)
		ia := a.Status(context.Background()).Instance
		if !strings.HasPrefix(ia, "a/") || len(ia) != len("a/")+8 {
			t.Fatalf("instance %q, want a/ and 8 hex digits", ia)
		}
		if s := b.Status(context.Background()); s.Leader || s.LeaderID != ia {
			t.Fatalf("follower status: leader %v, leader_id %q; want false, %s", s.Leader, s.LeaderID, ia)
		}
		if s := a.Status(context.Background()); !s.Leader || s.LeaderID != ia {
			t.Fatalf("leader status: leader %v, leader_id %q; want true, %s", s.Leader, s.LeaderID, ia)
		}
		// Die just after a renewal, the worst case: the lease then has a
		// whole TTL left.
		time.Sleep(2*time.Second + time.Millisecond)
		storeA.cut.Store(true)
		died := time.Now()
		for !b.Leader() {
			time.Sleep(time.Millisecond)
			if time.Since(died) > 2*cfgB.LeaseTTL {
				t.Fatal("b never took over")
			}
		}
		took := time.Since(died)
		if took > cfgB.LeaseTTL+50*time.Millisecond {
			t.Fatalf("b took over %v after a died, want within the TTL %v", took, cfgB.LeaseTTL)
		}
		t.Logf("b took over %v after a died (TTL %v)", took, cfgB.LeaseTTL)
		if s := b.Status(context.Background()); s.LeaderID != s.Instance || !strings.HasPrefix(s.LeaderID, "b/") {
			t.Fatalf("new leader's status names %q, its instance is %q", s.LeaderID, s.Instance)
		}
	})
}

// Two processes under one SCALER_ID (a scaler restarted while its dead
// predecessor's lease runs, or a compose service scaled to two) are two
// instances in the lease: one leads, the other follows.
func TestOneScalerIDTwoProcessesOneLeads(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		h.pair(testConfig(), testConfig(), nil, 1)
	})
}

// One failed renewal while the lease still has most of its TTL to run is
// retried; the term goes on (its workers are not cancelled and re-adopted).
// Two in a row end it well before the lease runs out.
func TestLeaseHiccupDoesNotEndTheTerm(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.LeaseTTL = 1200 * time.Millisecond // renew every 400 ms, a retry 200 ms after a failure
		cfg.MinReplicas = 1
		store := &cutStore{Store: h.store}
		a, _ := h.start(cfg, store)
		testenv.Eventually(t, 15*time.Second, "a leads", a.Leader)
		h.settle(1)
		stop := make(chan struct{})
		lost := make(chan struct{}, 1)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(2 * time.Millisecond):
				}
				if !a.Leader() {
					lost <- struct{}{}
					return
				}
			}
		}()
		store.leaseFails.Store(1)
		time.Sleep(1500 * time.Millisecond) // the failed renewal, its retry, more renewals
		close(stop)
		select {
		case <-lost:
			t.Fatal("one failed renewal ended the term")
		default:
		}
		if store.leaseFails.Load() >= 0 {
			t.Fatal("the hiccup was never hit")
		}
		store.leaseFails.Store(2)
		testenv.Eventually(t, 15*time.Second, "two failures in a row end the term", func() bool { return !a.Leader() })
		testenv.Eventually(t, 15*time.Second, "leads again once Redis answers", a.Leader)
	})
}

func TestReleasedLeaseIsTakenAtOnce(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfgA, cfgB := testConfig(), testConfig()
		cfgA.LeaseTTL, cfgB.LeaseTTL = time.Hour, time.Hour // only a release can hand over
		cfgA.ID, cfgB.ID = "a", "b"
		a, stopA := h.start(cfgA, nil)
		testenv.Eventually(t, 15*time.Second, "a leads", a.Leader)
		b, _ := h.start(cfgB, nil)
		h.settle(1)
		stopA()
		if a.Leader() {
			t.Fatal("a still leads after Run returned")
		}
		// b campaigns every TTL/6 = 10 minutes, so it cannot have taken over
		// by expiry; check the lease is free instead.
		l, err := h.store.AcquireLease(context.Background(), "probe", time.Millisecond)
		if err != nil || !l.HeldBy("probe") {
			t.Fatalf("lease not released: %+v %v", l, err)
		}
		_ = b
	})
}

func TestStartFailuresBackOffAndRecover(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		h.eng.SetStartError(errors.New("no such image"))
		cfg := testConfig()
		c, _ := h.start(cfg, nil)
		testenv.Eventually(t, 15*time.Second, "leads", c.Leader)
		time.Sleep(1500 * time.Millisecond)
		// Back-off 0.5 s, 1 s, 2 s …: at most 3 attempts in 1.5 s, where a
		// reconcile every 50 ms without back-off would make 30.
		n := counterValue(t, c, "lbscale_scaler_start_failures_total")
		if n < 1 || n > 3 {
			t.Fatalf("%v failed starts in 1.5s, want 1..3", n)
		}
		h.eng.SetStartError(nil)
		h.settle(1)
	})
}

func TestEngineErrorsBackOffAndRecover(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.MinReplicas = 2
		c, _ := h.start(cfg, nil)
		h.settle(2)
		h.eng.SetListError(errors.New("cannot connect to the Docker daemon"))
		testenv.Eventually(t, 15*time.Second, "problem shown", func() bool { return c.Status(context.Background()).Problems["docker list"] != "" })
		before := h.eng.Lists()
		time.Sleep(1500 * time.Millisecond)
		// RECONCILE_INTERVAL is 50 ms (30 lists in 1.5 s); the back-off of
		// 0.5 s, 1 s, 2 s … allows a handful.
		if n := h.eng.Lists() - before; n > 4 {
			t.Fatalf("%d list attempts in 1.5s while the engine is down: no back-off", n)
		}
		if len(h.ready()) != 2 || !c.Leader() {
			t.Fatalf("engine trouble disturbed the registry (%v) or leadership", h.ready())
		}
		h.eng.SetListError(nil)
		testenv.Eventually(t, 15*time.Second, "recovered", func() bool { return c.Status(context.Background()).Problems["docker list"] == "" })
		victim := h.ready()[0]
		h.eng.Kill(victim)
		testenv.Eventually(t, 15*time.Second, "acting again: killed one replaced", func() bool { return h.eng.Starts() == 3 })
		h.settle(2)
	})
}

func TestUnhealthyContainerIsRemoved(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		h.eng.SetBootDelay(time.Hour)
		cfg := testConfig()
		cfg.HealthTimeout = 200 * time.Millisecond
		c, _ := h.start(cfg, nil)
		testenv.Eventually(t, 15*time.Second, "a failed start", func() bool { return counterValue(t, c, "lbscale_scaler_start_failures_total") >= 1 })
		testenv.Eventually(t, 15*time.Second, "the unhealthy container removed", func() bool { return len(h.eng.Stopped()) >= 1 })
		if len(h.ready()) != 0 {
			t.Fatalf("unhealthy container registered ready: %v", h.ready())
		}
		h.eng.SetBootDelay(0)
		h.settle(1)
	})
}

func TestContainerDyingWhileBootingIsNotWaitedFor(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		h.eng.SetBootDelay(time.Hour)
		cfg := testConfig()
		cfg.HealthTimeout = time.Hour
		c, _ := h.start(cfg, nil)
		testenv.Eventually(t, 15*time.Second, "one starting", func() bool { return len(h.eng.Running(pool)) == 1 })
		h.eng.SetBootDelay(0)
		h.eng.Kill(h.eng.Running(pool)[0])
		testenv.Eventually(t, 15*time.Second, "failure noticed without waiting HEALTH_TIMEOUT", func() bool {
			return counterValue(t, c, "lbscale_scaler_start_failures_total") == 1
		})
		h.settle(1)
	})
}

func TestAdminEndpoints(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.MinReplicas = 2
		c, _ := h.start(cfg, nil)
		h.settle(2)
		// The handler is served in-process (no socket): a listener would
		// take the test out of the bubble's fake time.
		get := func(path string) *httptest.ResponseRecorder {
			rec := httptest.NewRecorder()
			c.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			return rec
		}

		if rec := get("/healthz"); rec.Code != 200 {
			t.Fatalf("healthz: %d %s", rec.Code, rec.Body)
		}

		var s Status
		if err := json.NewDecoder(get("/status").Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		if !s.Leader || s.Replicas != 2 || len(s.Registry) != 2 || len(s.Members) != 2 || s.Desired != 2 || s.Config.MinReplicas != 2 {
			t.Fatalf("status %+v", s)
		}
		if len(s.Events) != 1 || s.Events[0].Reason != decide.ReasonMinReplicas || s.Events[0].Count != 2 {
			t.Fatalf("events %+v", s.Events)
		}

		body := get("/metrics").Body.String()
		for _, want := range []string{
			`lbscale_scaler_leader{pool="unit"} 1`,
			`lbscale_scaler_desired_replicas{pool="unit"} 2`,
			`lbscale_scaler_replicas{pool="unit",state="ready"} 2`,
			`lbscale_scaler_scale_events_total{direction="up",pool="unit",reason="min_replicas"} 2`,
			`lbscale_scaler_cold_start_seconds_count{pool="unit"} 2`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
}

func histogramCount(t *testing.T, c *Controller, name string) uint64 {
	t.Helper()
	mfs, err := c.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

func counterValue(t *testing.T, c *Controller, name string) float64 {
	t.Helper()
	mfs, err := c.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func eventsOf(c *Controller, dir string, r decide.Reason) []Event {
	var out []Event
	for _, e := range c.rep.events.list() {
		if e.Direction == dir && e.Reason == r {
			out = append(out, e)
		}
	}
	return out
}

func hasEvent(c *Controller, dir string, r decide.Reason) bool { return len(eventsOf(c, dir, r)) > 0 }

// A balancer that syncs slowly (SYNC_INTERVAL well above DRAIN_SETTLE) may
// not have seen the drain mark yet, and the count it published is as old:
// the container is stopped only once two of its intervals have passed.
func TestDrainWaitsForTheSlowestBalancer(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.IdleTimeout = time.Minute
		cfg.DrainSettle = 0
		cfg.DrainTimeout = time.Hour
		c, _ := h.start(cfg, nil)
		h.settle(1)
		h.balancer("b1", 8, nil, nil)
		h.settle(2)
		slow := func() {
			req := state.SyncRequest{Balancer: "slow", TTL: time.Hour, Interval: 30 * time.Second}
			if _, err := h.store.Sync(context.Background(), req); err != nil {
				t.Fatal(err)
			}
		}
		h.balancer("b1", 0, nil, nil)
		slow()
		h.clk.advance(2 * time.Minute)
		poke(c.downCh)
		id := h.waitDraining()
		time.Sleep(300 * time.Millisecond)
		if _, ok := h.eng.Get(id); !ok {
			t.Fatal("stopped before a balancer syncing every 30s could have seen the drain")
		}
		h.clk.advance(61 * time.Second)
		testenv.Eventually(t, 15*time.Second, "stopped once two of the slowest intervals passed", func() bool { _, ok := h.eng.Get(id); return !ok })
	})
}
