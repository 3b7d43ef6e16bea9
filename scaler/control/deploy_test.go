package control

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"lbscale/internal/state"
	"lbscale/internal/testenv"
	"lbscale/scaler/config"
)

// deployConfig is testConfig with a pool of three and a short canary watch.
func deployConfig() config.Config {
	cfg := testConfig()
	cfg.MinReplicas, cfg.MaxReplicas = 3, 6
	cfg.DeploySurge = 25
	cfg.CanaryRequests = 20
	cfg.CanaryTime = 2 * time.Second
	cfg.CanaryErrorRate = 0.05
	cfg.CanaryLatency = 2
	cfg.ConnDrain = 10 * time.Second
	return cfg
}

// startWithHealth is harness.start with a health probe of the test's own.
func (h *harness) startWithHealth(cfg config.Config, health func(context.Context, string) error) *Controller {
	c := New(Options{Config: cfg, Store: h.store, Driver: h.eng.Driver(cfg.Pool), Health: health, Now: h.clk.now, Logger: testLogger(h.t)})
	h.run(c)
	return c
}

// imageByAddr is the image a running container of the pool was started from,
// found by its address (what a health probe is given).
func (h *harness) imageByAddr(addr string) string {
	for _, id := range h.eng.Running(pool) {
		if in, ok := h.eng.Get(id); ok && in.Addr == addr {
			return in.Image
		}
	}
	return ""
}

// images counts the pool's running containers by image.
func (h *harness) images() map[string]int {
	out := map[string]int{}
	for _, id := range h.eng.Running(pool) {
		in, _ := h.eng.Get(id)
		out[in.Image]++
	}
	return out
}

// readyFloor watches the registry's ready count until stop and returns the
// lowest it saw.
func (h *harness) readyFloor() (lowest func() int, stop func()) {
	var low atomic.Int64
	low.Store(1 << 30)
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			n := int64(len(h.ready()))
			if n < low.Load() {
				low.Store(n)
			}
			select {
			case <-quit:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return func() int { return int(low.Load()) }, func() { close(quit); <-done }
}

// report is a balancer's report of served requests per backend.
func (h *harness) report(name string, per map[string]state.BackendReport) {
	h.t.Helper()
	r := state.Report{Balancer: name, At: h.clk.now(), StoreUp: true}
	for id, b := range per {
		b.ID = id
		r.Backends = append(r.Backends, b)
	}
	if err := h.store.PutReport(context.Background(), r); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) deploy(c *Controller) state.Deploy {
	d, ok, err := h.store.Deploy(context.Background())
	if err != nil || !ok {
		h.t.Fatalf("no deploy recorded: %v", err)
	}
	return d
}

// A deploy of a good image replaces every container, never with fewer
// ready than the pool had, one surge at a time after its canary.
func TestDeployRollsEveryContainerOntoTheNewImage(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := deployConfig()
		c, _ := h.start(cfg, nil)
		h.settle(3)
		lowest, stop := h.readyFloor()
		d, err := c.StartDeploy(context.Background(), "app:v2")
		if err != nil || d.Phase != state.DeployCanary || d.Previous != cfg.WebImage {
			t.Fatalf("StartDeploy: %+v %v", d, err)
		}
		if _, err := c.StartDeploy(context.Background(), "app:v3"); !errors.Is(err, ErrDeployBusy) {
			t.Fatalf("a second deploy while one runs: %v, want ErrDeployBusy", err)
		}
		testenv.Eventually(t, 30*time.Second, "deploy done", func() bool { return h.deploy(c).Phase == state.DeployDone })
		h.settle(3)
		stop()
		if got := h.images(); got["app:v2"] != 3 || len(got) != 1 {
			t.Fatalf("images after the deploy: %v, want 3 × app:v2", got)
		}
		if lowest() < 3 {
			t.Fatalf("ready fell to %d during the deploy, below the 3 it began with", lowest())
		}
		if d := h.deploy(c); d.Floor != 3 || d.Canary == "" || d.Finished.IsZero() {
			t.Fatalf("deploy record %+v", d)
		}
		// New starts (a replaced container, say) use the deployed image.
		h.eng.Kill(h.ready()[0])
		h.settle(3)
		if got := h.images(); got["app:v2"] != 3 {
			t.Fatalf("after a replacement: %v", got)
		}
		if s := c.Status(context.Background()); s.Deploy == nil || s.Deploy.Phase != state.DeployDone {
			t.Fatalf("/status deploy: %+v", s.Deploy)
		}
	})
}

// A canary that never passes its health gate rolls the deploy back; the
// old containers never left.
func TestDeployRollsBackACanaryThatFailsItsHealthGate(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := deployConfig()
		cfg.HealthTimeout = 500 * time.Millisecond
		c := h.startWithHealth(cfg, func(ctx context.Context, addr string) error {
			if h.imageByAddr(addr) == "app:broken" {
				return fmt.Errorf("%s: connection refused", addr)
			}
			return h.eng.Health(ctx, addr)
		})
		h.settle(3)
		lowest, stop := h.readyFloor()
		if _, err := c.StartDeploy(context.Background(), "app:broken"); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, "deploy rolled back", func() bool { return h.deploy(c).Phase == state.DeployRolledBack })
		h.settle(3)
		stop()
		if got := h.images(); got[cfg.WebImage] != 3 || len(got) != 1 {
			t.Fatalf("images after the rollback: %v", got)
		}
		if lowest() < 3 {
			t.Fatalf("ready fell to %d", lowest())
		}
		if d := h.deploy(c); d.Reason == "" {
			t.Fatalf("rollback without a reason: %+v", d)
		}
		// Later starts keep the previous image.
		h.eng.Kill(h.ready()[0])
		h.settle(3)
		if got := h.images(); got[cfg.WebImage] != 3 {
			t.Fatalf("after a replacement: %v", got)
		}
	})
}

// A canary that answers errors where the old containers do not is judged
// by the balancers' reports and rolled back: drained, not waited for.
func TestDeployRollsBackACanaryThatFailsRequests(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := deployConfig()
		cfg.CanaryTime = time.Minute
		c, _ := h.start(cfg, nil)
		h.settle(3)
		old := h.ready()
		if _, err := c.StartDeploy(context.Background(), "app:errors"); err != nil {
			t.Fatal(err)
		}
		var canary string
		testenv.Eventually(t, 30*time.Second, "canary ready", func() bool {
			for _, id := range h.ready() {
				if in, _ := h.eng.Get(id); in.Image == "app:errors" {
					canary = id
					return true
				}
			}
			return false
		})
		// The balancers' counters grow: the canary fails 8 of 10, the old
		// containers none of 100 each.
		served := uint64(0)
		testenv.Eventually(t, 30*time.Second, "rolled back", func() bool {
			served += 10
			per := map[string]state.BackendReport{canary: {Served: served, Failures: served * 8 / 10, Busy: time.Duration(served) * time.Millisecond}}
			for _, id := range old {
				per[id] = state.BackendReport{Served: served * 10, Busy: time.Duration(served*10) * time.Millisecond}
			}
			h.report("lb-a", per)
			p := h.deploy(c).Phase
			return p == state.DeployRolledBack
		})
		h.settle(3)
		if _, running := h.eng.Get(canary); running {
			t.Fatalf("the failing canary %s still runs", canary)
		}
		if d := h.deploy(c); d.Reason == "" {
			t.Fatalf("no reason: %+v", d)
		}
	})
}

// A change of the configured image (WEB_IMAGE, the pool file's image) is a
// deploy: a controller started with the new image rolls the pool onto it.
func TestConfiguredImageChangeIsADeploy(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := deployConfig()
		_, stop := h.start(cfg, nil)
		h.settle(3)
		stop()
		cfg.WebImage = "app:v2"
		c, _ := h.start(cfg, nil)
		testenv.Eventually(t, 30*time.Second, "deploy done", func() bool {
			d, ok, _ := h.store.Deploy(context.Background())
			return ok && d.Phase == state.DeployDone && d.Image == "app:v2"
		})
		h.settle(3)
		if got := h.images(); got["app:v2"] != 3 || len(got) != 1 {
			t.Fatalf("images: %v", got)
		}
		if d := h.deploy(c); d.Previous != "lbscale/webserver:test" {
			t.Fatalf("previous image %q", d.Previous)
		}
	})
}

// A deploy outlives its leader: the scaler that takes over in the middle
// of the roll finishes it from the store's record and the containers'
// images, without starting it over.
func TestDeploySurvivesALeaderChange(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfgA, cfgB := deployConfig(), deployConfig()
		cfgA.MinReplicas, cfgB.MinReplicas = 4, 4
		cfgB.ID = "scaler-b"
		storeA := &cutStore{Store: h.store}
		a, b := h.pair(cfgA, cfgB, storeA, 4)
		lowest, stop := h.readyFloor()
		if _, err := b.StartDeploy(context.Background(), "app:v2"); err != nil { // a follower takes the request
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, "rolling, part-way", func() bool {
			return h.deploy(a).Phase == state.DeployRolling && h.images()["app:v2"] >= 2
		})
		storeA.cut.Store(true)
		testenv.Eventually(t, 15*time.Second, "b takes over", b.Leader)
		testenv.Eventually(t, 60*time.Second, "deploy done by b", func() bool { return h.deploy(b).Phase == state.DeployDone })
		h.settle(4)
		stop()
		if got := h.images(); got["app:v2"] != 4 || len(got) != 1 {
			t.Fatalf("images: %v", got)
		}
		if lowest() < 4 {
			t.Fatalf("ready fell to %d across the leader change", lowest())
		}
		if a.Leader() {
			t.Fatal("a leads while cut off")
		}
	})
}

// Autoscaling goes on during a deploy: once the canary passed, the
// containers a load step asks for start on the new image, and the deploy
// still ends with every container on it.
func TestDeployWithAutoscalingDuringIt(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := deployConfig()
		cfg.MinReplicas = 2
		cfg.CanaryTime = 100 * time.Millisecond
		c, _ := h.start(cfg, nil)
		h.settle(2)
		if _, err := c.StartDeploy(context.Background(), "app:v2"); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, "rolling", func() bool { return h.deploy(c).Phase != state.DeployCanary })
		// A step of load: 20 in flight at a target of 4 asks for 5.
		inflight := map[string]int64{}
		for _, id := range h.ready() {
			inflight[id] = 20 / int64(len(h.ready()))
		}
		h.balancer("lb-a", 10, inflight, nil)
		testenv.Eventually(t, 30*time.Second, "deploy done", func() bool { return h.deploy(c).Phase == state.DeployDone })
		testenv.Eventually(t, 30*time.Second, "grown on the new image", func() bool {
			got := h.images()
			return got["app:v2"] >= 5 && len(got) == 1
		})
	})
}
