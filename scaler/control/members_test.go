package control

import (
	"context"
	"testing"
	"time"

	"lbscale/internal/state"
	"lbscale/scaler/decide"
	"lbscale/scaler/driver"
)

// Reclaim takes the newest-ready draining members first (the oldest keep
// draining) and ends their drain waits.
func TestMemberTableReclaimsNewestFirst(t *testing.T) {
	tab := newMemberTable()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	ctxs := map[string]context.Context{}
	for i, id := range []string{"old", "mid", "new"} {
		m := &member{id: id, phase: phaseReady, since: t0.Add(time.Duration(i) * time.Minute)}
		tab.put(m)
		ctxs[id] = tab.draining(context.Background(), m, t0.Add(time.Hour), decide.ReasonIdle)
	}
	tab.put(&member{id: "ready", phase: phaseReady})

	got := tab.reclaim(2)
	if len(got) != 2 || got[0].id != "new" || got[1].id != "mid" {
		t.Fatalf("reclaimed %v, want new and mid", got)
	}
	for id, want := range map[string]bool{"new": true, "mid": true, "old": false} {
		if cancelled := ctxs[id].Err() != nil; cancelled != want {
			t.Errorf("%s drain wait cancelled: %v, want %v", id, cancelled, want)
		}
	}
	if ready, starting, draining := tab.counts(); ready != 3 || starting != 0 || draining != 1 {
		t.Fatalf("counts ready %d starting %d draining %d, want 3 0 1", ready, starting, draining)
	}
}

// Reconcile forgets ready members the plan no longer holds, adds the ones
// it found, and leaves alone members a worker owns (they are busy).
func TestMemberTableReconcileSparesBusyMembers(t *testing.T) {
	tab := newMemberTable()
	tab.put(&member{id: "gone", phase: phaseReady})
	tab.put(&member{id: "kept", phase: phaseReady, addr: "old:1"})
	tab.put(&member{id: "booting", phase: phaseStarting})
	tab.put(&member{id: "draining", phase: phaseDraining})

	busy := map[string]bool{}
	var sawStarting int
	tab.reconcile(busy, nil, func(starting int) decide.Plan {
		sawStarting = starting
		return decide.Plan{Ready: []state.Backend{{ID: "kept", Addr: "new:1"}, {ID: "found", Addr: "x:1"}}}
	})
	if !busy["booting"] || !busy["draining"] || busy["kept"] {
		t.Fatalf("busy %v, want booting and draining", busy)
	}
	if sawStarting != 1 {
		t.Fatalf("plan saw %d starting, want 1", sawStarting)
	}
	got := map[string]string{}
	for _, s := range tab.status() {
		got[s.ID] = s.State + " " + s.Addr
	}
	want := map[string]string{"kept": "ready new:1", "found": "ready x:1", "booting": "starting ", "draining": "draining "}
	if len(got) != len(want) {
		t.Fatalf("members %v, want %v", got, want)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: %q, want %q", id, got[id], w)
		}
	}
}

// A member whose container died while it booted has its health wait
// ended at the next reconcile, not at HEALTH_TIMEOUT.
func TestMemberTableReconcileEndsBootOfDeadContainer(t *testing.T) {
	tab := newMemberTable()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := &member{id: "b", phase: phaseStarting}
	tab.put(m)
	tab.booted(m, driver.Instance{ID: "b", Addr: "b:1"}, cancel)
	tab.reconcile(map[string]bool{}, []driver.Instance{{ID: "b", State: driver.StateExited}}, func(int) decide.Plan { return decide.Plan{} })
	if ctx.Err() == nil {
		t.Fatal("health wait of a dead booting container not ended")
	}
}
