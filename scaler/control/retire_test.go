package control

import (
	"context"
	"testing"
	"time"

	"lbscale/internal/state"
	"lbscale/internal/testenv"
	"lbscale/scaler/driver"
)

// A retired pool is drained like a scale-down (balancers see every
// container draining, a request in flight holds its container), then
// nothing of it is left: no container, running or not, and no registry
// entry.
func TestRetireDrainsEveryContainerAndEmptiesTheRegistry(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.MinReplicas = 3
		cfg.DrainSettle = 100 * time.Millisecond
		c, stop := h.start(cfg, nil)
		h.settle(3)
		stop()
		ids := h.ready()
		busy := ids[0]
		// What a crash may leave: an exited container, and an entry
		// without a container.
		h.eng.Add(pool, driver.Instance{ID: "lbscale-unit-web-exited", State: driver.StateExited})
		if err := h.store.PutBackend(context.Background(), state.Backend{ID: "lbscale-unit-web-gone", Addr: "10.1.1.1:8080", State: state.Ready}); err != nil {
			t.Fatal(err)
		}
		h.balancer("b1", 0, map[string]int64{busy: 1}, nil)

		done := make(chan error, 1)
		go func() { done <- c.Retire(context.Background()) }()
		testenv.Eventually(t, 15*time.Second, "every running container draining, the rest gone", func() bool {
			reg := h.registry()
			if len(reg) == 0 {
				return false
			}
			for _, b := range reg {
				if b.State != state.Draining {
					return false
				}
			}
			_, exited := h.eng.Get("lbscale-unit-web-exited")
			return !exited
		})
		testenv.Eventually(t, 15*time.Second, "the idle ones stopped", func() bool { return len(h.eng.Running(pool)) == 1 })
		time.Sleep(500 * time.Millisecond)
		if _, ok := h.eng.Get(busy); !ok {
			t.Fatal("a container was stopped with a request in flight, long before DRAIN_TIMEOUT")
		}
		h.balancer("b1", 0, nil, nil)
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Retire: %v", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("Retire did not return once the pool was empty")
		}
		if n := len(h.eng.Running(pool)); n != 0 {
			t.Fatalf("%d containers left", n)
		}
		if _, ok := h.eng.Get("lbscale-unit-web-exited"); ok {
			t.Fatal("the exited container was left")
		}
		if reg := h.registry(); len(reg) != 0 {
			t.Fatalf("registry left with %v", reg)
		}
		if evs := eventsOf(c, "down", reasonRetired); len(evs) == 0 || evs[0].Count != 3 {
			t.Fatalf("retire events %+v, want one draining the 3", evs)
		}
		if l, err := h.store.AcquireLease(context.Background(), "probe", time.Second); err != nil || !l.HeldBy("probe") {
			t.Fatalf("lease not released after the retirement: %+v %v", l, err)
		}
	})
}

// Retire holds the pool's lease: it waits while another scaler leads the
// pool (touching nothing), and of two scalers retiring at once one drains
// while the other, when its turn comes, finds nothing left.
func TestRetireWaitsForTheLeaseAndOneScalerDrains(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfgA, cfgB := testConfig(), testConfig()
		cfgA.MinReplicas, cfgB.MinReplicas = 2, 2
		cfgB.ID = "scaler-b"
		a, b := h.pair(cfgA, cfgB, nil, 2)
		// b's controller stops; a still leads.
		stopA(t, h, b)
		ctx := context.Background()
		doneB := make(chan error, 1)
		go func() { doneB <- b.Retire(ctx) }()
		time.Sleep(5 * cfgA.LeaseTTL)
		if reg := h.ready(); len(reg) != 2 || len(h.eng.Running(pool)) != 2 {
			t.Fatalf("the pool changed while another scaler led it: %v", reg)
		}
		select {
		case err := <-doneB:
			t.Fatalf("Retire returned %v while another scaler held the lease", err)
		default:
		}
		stopA(t, h, a)
		doneA := make(chan error, 1)
		go func() { doneA <- a.Retire(ctx) }()
		for _, ch := range []chan error{doneA, doneB} {
			select {
			case err := <-ch:
				if err != nil {
					t.Fatalf("Retire: %v", err)
				}
			case <-time.After(time.Minute):
				t.Fatal("Retire did not return")
			}
		}
		if len(h.eng.Running(pool)) != 0 || len(h.registry()) != 0 {
			t.Fatalf("left: containers %v, registry %v", h.eng.Running(pool), h.registry())
		}
		na, nb := len(eventsOf(a, "down", reasonRetired)), len(eventsOf(b, "down", reasonRetired))
		if na+nb != 1 {
			t.Fatalf("retire events: a %d, b %d; want one scaler to drain", na, nb)
		}
	})
}

// A cancelled retirement releases the lease and says why it ended.
func TestRetireCancelled(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := testConfig()
		cfg.DrainTimeout = time.Hour
		c, stop := h.start(cfg, nil)
		h.settle(1)
		stop()
		h.balancer("b1", 0, map[string]int64{h.ready()[0]: 1}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Retire(ctx) }()
		h.waitDraining()
		cancel()
		if err := <-done; err != context.Canceled {
			t.Fatalf("Retire after cancel: %v", err)
		}
		if l, err := h.store.AcquireLease(context.Background(), "probe", time.Second); err != nil || !l.HeldBy("probe") {
			t.Fatalf("lease kept after a cancelled retirement: %+v %v", l, err)
		}
	})
}
