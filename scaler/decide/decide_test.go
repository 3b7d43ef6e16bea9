package decide

import (
	"math"
	"slices"
	"testing"
	"time"

	"lbscale/internal/state"
	"lbscale/scaler/driver"
)

// t0 is the fake clock's "now" in every table below.
var t0 = time.Date(2025, 1, 2, 10, 0, 0, 0, time.UTC)

func ago(d time.Duration) time.Time { return t0.Add(-d) }

func TestDesired(t *testing.T) {
	tests := []struct {
		name                    string
		inflight, queued        int64
		target, min, max, wantN int
	}{
		{"idle pool sits at min", 0, 0, 4, 1, 10, 1},
		{"idle pool at min 0 is empty", 0, 0, 4, 0, 10, 0},
		{"one queued request from zero", 0, 1, 4, 0, 10, 1},
		{"exact multiple", 8, 0, 4, 1, 10, 2},
		{"one over a multiple rounds up", 9, 0, 4, 1, 10, 3},
		{"3 saturated + 5 queued", 12, 5, 4, 1, 10, 5},
		{"two balancers' queues add, not the signals", 12, 10, 4, 1, 10, 6},
		{"bounded by max", 400, 100, 4, 1, 10, 10},
		{"huge load does not overflow", math.MaxInt64 / 2, math.MaxInt64 / 2, 1, 1, 10, 10},
		{"target 1", 3, 2, 1, 0, 10, 5},
		{"zero target treated as 1", 3, 0, 0, 0, 10, 3},
		{"negative counts (clock skew between balancers) ignored", -3, -1, 4, 1, 10, 1},
		{"min above load", 1, 0, 4, 3, 10, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Desired(tt.inflight, tt.queued, tt.target, tt.min, tt.max); got != tt.wantN {
				t.Fatalf("Desired(%d, %d, %d, %d, %d) = %d, want %d", tt.inflight, tt.queued, tt.target, tt.min, tt.max, got, tt.wantN)
			}
		})
	}
}

func TestUp(t *testing.T) {
	base := UpInput{Min: 1, Max: 10, Cooldown: 2 * time.Second}
	with := func(f func(*UpInput)) UpInput { in := base; f(&in); return in }
	tests := []struct {
		name string
		in   UpInput
		want UpResult
	}{
		{"quiet pool at min: nothing", with(func(in *UpInput) { in.Ready = 1 }),
			UpResult{Desired: 1}},
		{"below min starts up to min", with(func(in *UpInput) { in.Min = 3; in.Ready = 1 }),
			UpResult{Desired: 3, Start: 2, Reason: ReasonMinReplicas}},
		{"saturated with queue: ceil((12+5)/4)=5, have 3, start 2", with(func(in *UpInput) { in.Ready = 3; in.Desired = Desired(12, 5, 4, in.Min, in.Max) }),
			UpResult{Desired: 5, Start: 2, Reason: ReasonDemand}},
		{"starting ones count as capacity: no second start while they boot", with(func(in *UpInput) { in.Ready = 3; in.Starting = 2; in.Desired = Desired(12, 5, 4, in.Min, in.Max) }),
			UpResult{Desired: 5}},
		{"partly covered by starting ones", with(func(in *UpInput) { in.Ready = 3; in.Starting = 1; in.Desired = Desired(12, 5, 4, in.Min, in.Max) }),
			UpResult{Desired: 5, Start: 1, Reason: ReasonDemand}},
		{"scale from zero", with(func(in *UpInput) { in.Min = 0; in.Desired = Desired(0, 1, 4, in.Min, in.Max) }),
			UpResult{Desired: 1, Start: 1, Reason: ReasonFromZero}},
		{"from zero, a booting one already covers it", with(func(in *UpInput) { in.Min = 0; in.Desired = Desired(0, 3, 4, in.Min, in.Max); in.Starting = 1 }),
			UpResult{Desired: 1}},
		{"max holds under any load", with(func(in *UpInput) { in.Ready = 8; in.Desired = Desired(32, 1000, 4, in.Min, in.Max) }),
			UpResult{Desired: 10, Start: 2, Reason: ReasonDemand}},
		{"at max: nothing more", with(func(in *UpInput) { in.Ready = 9; in.Starting = 1; in.Desired = Desired(36, 1000, 4, in.Min, in.Max) }),
			UpResult{Desired: 10}},
		{"cooldown holds a demand start", with(func(in *UpInput) {
			in.Ready = 2
			in.Desired = Desired(8, 4, 4, in.Min, in.Max)
			in.LastUp = ago(time.Second)
		}),
			UpResult{Desired: 3, Reason: ReasonDemand, Held: "cooldown"}},
		{"cooldown over", with(func(in *UpInput) {
			in.Ready = 2
			in.Desired = Desired(8, 4, 4, in.Min, in.Max)
			in.LastUp = ago(2 * time.Second)
		}),
			UpResult{Desired: 3, Start: 1, Reason: ReasonDemand}},
		{"cooldown does not hold the min floor", with(func(in *UpInput) { in.Min = 2; in.LastUp = ago(time.Millisecond) }),
			UpResult{Desired: 2, Start: 2, Reason: ReasonMinReplicas}},
		{"back-off holds even the min floor", with(func(in *UpInput) { in.Min = 2; in.NotBefore = t0.Add(time.Second) }),
			UpResult{Desired: 2, Reason: ReasonMinReplicas, Held: "backoff"}},
		{"stopping containers count against max", with(func(in *UpInput) {
			in.Max = 3
			in.Ready = 2
			in.Stopping = 1
			in.Desired = Desired(8, 10, 4, in.Min, in.Max)
		}),
			UpResult{Desired: 3, Reason: ReasonDemand, Held: "max_replicas"}},
		{"stopping ones leave room for some", with(func(in *UpInput) {
			in.Max = 5
			in.Ready = 2
			in.Stopping = 1
			in.Desired = Desired(8, 100, 4, in.Min, in.Max)
		}),
			UpResult{Desired: 5, Start: 2, Reason: ReasonDemand}},
		{"reclaim draining before starting", with(func(in *UpInput) {
			in.Ready = 3
			in.Starting = 2
			in.Draining = 1
			in.Desired = Desired(12, 14, 4, in.Min, in.Max)
		}),
			UpResult{Desired: 7, Reclaim: 1, Start: 1, Reason: ReasonDemand}},
		{"reclaim covers all: no start", with(func(in *UpInput) { in.Ready = 2; in.Draining = 2; in.Desired = Desired(8, 4, 4, in.Min, in.Max) }),
			UpResult{Desired: 3, Reclaim: 1, Reason: ReasonDemand}},
		{"reclaim ignores cooldown", with(func(in *UpInput) {
			in.Ready = 2
			in.Draining = 1
			in.Desired = Desired(8, 8, 4, in.Min, in.Max)
			in.LastUp = ago(time.Millisecond)
		}),
			UpResult{Desired: 4, Reclaim: 1, Reason: ReasonDemand, Held: "cooldown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Up(tt.in, t0); got != tt.want {
				t.Fatalf("Up(%+v)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestIdle(t *testing.T) {
	idle := 60 * time.Second
	c := func(id string, readyAgo, seenAgo time.Duration, inflight int64) Candidate {
		k := Candidate{ID: id, ReadySince: ago(readyAgo), Inflight: inflight}
		if seenAgo >= 0 {
			k.LastSeen = ago(seenAgo)
		}
		return k
	}
	const never = -1
	tests := []struct {
		name  string
		in    IdleInput
		wantV []string
	}{
		{"all idle, keep 1: newest first", IdleInput{Keep: 1, IdleTimeout: idle, Ready: []Candidate{
			c("old", 10*time.Minute, 5*time.Minute, 0), c("mid", 8*time.Minute, 5*time.Minute, 0), c("new", 7*time.Minute, 5*time.Minute, 0),
		}}, []string{"new", "mid"}},
		{"in flight is never chosen, and does not use the quota", IdleInput{Keep: 1, IdleTimeout: idle, Ready: []Candidate{
			c("old", 10*time.Minute, 5*time.Minute, 0), c("mid", 8*time.Minute, 5*time.Minute, 0), c("new", 7*time.Minute, 5*time.Minute, 1),
		}}, []string{"mid", "old"}},
		{"recently seen is not idle", IdleInput{Keep: 0, IdleTimeout: idle, Ready: []Candidate{
			c("a", 10*time.Minute, 30*time.Second, 0), c("b", 10*time.Minute, 61*time.Second, 0),
		}}, []string{"b"}},
		{"exactly the timeout is not yet older than it", IdleInput{Keep: 0, IdleTimeout: idle, Ready: []Candidate{
			c("a", 10*time.Minute, idle, 0),
		}}, nil},
		{"never seen falls back to ready time", IdleInput{Keep: 0, IdleTimeout: idle, Ready: []Candidate{
			c("fresh", 30*time.Second, never, 0), c("stale", 2*time.Minute, never, 0),
		}}, []string{"stale"}},
		{"seen before a later ready time (re-adopted) counts from ready", IdleInput{Keep: 0, IdleTimeout: idle, Ready: []Candidate{
			c("a", 10*time.Second, 10*time.Minute, 0),
		}}, nil},
		{"never below keep", IdleInput{Keep: 2, IdleTimeout: idle, Ready: []Candidate{
			c("a", 10*time.Minute, never, 0), c("b", 9*time.Minute, never, 0),
		}}, nil},
		{"min 0 may empty the pool", IdleInput{Keep: 0, IdleTimeout: idle, Ready: []Candidate{
			c("a", 10*time.Minute, never, 0), c("b", 9*time.Minute, never, 0),
		}}, []string{"b", "a"}},
		{"queued requests: nothing is idle", IdleInput{Keep: 0, Queued: 1, IdleTimeout: idle, Ready: []Candidate{
			c("a", 10*time.Minute, never, 0),
		}}, nil},
		{"same ready time: by id for a stable choice", IdleInput{Keep: 1, IdleTimeout: idle, Ready: []Candidate{
			c("y", 10*time.Minute, never, 0), c("x", 10*time.Minute, never, 0),
		}}, []string{"x"}},
		{"empty", IdleInput{Keep: 0, IdleTimeout: idle}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Idle(tt.in, t0)
			if !slices.Equal(got, tt.wantV) {
				t.Fatalf("Idle = %v, want %v", got, tt.wantV)
			}
		})
	}
}

func TestIdleDoesNotReorderInput(t *testing.T) {
	in := []Candidate{{ID: "a", ReadySince: ago(time.Hour)}, {ID: "b", ReadySince: ago(2 * time.Hour)}}
	Idle(IdleInput{Ready: in, IdleTimeout: time.Second}, t0)
	if in[0].ID != "a" || in[1].ID != "b" {
		t.Fatalf("input reordered: %v", in)
	}
}

func TestBackoff(t *testing.T) {
	base, ceil := 500*time.Millisecond, 10*time.Second
	want := []time.Duration{0, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
	for n, w := range want {
		if got := Backoff(n, base, ceil); got != w {
			t.Errorf("Backoff(%d) = %s, want %s", n, got, w)
		}
	}
	if got := Backoff(10_000, base, ceil); got != ceil {
		t.Errorf("Backoff(10000) = %s, want the cap %s", got, ceil)
	}
}

func TestReconcile(t *testing.T) {
	run := func(id, addr string) driver.Instance {
		return driver.Instance{ID: id, Addr: addr, State: driver.StateRunning, Created: ago(time.Hour)}
	}
	inState := func(id, s string, created time.Duration) driver.Instance {
		return driver.Instance{ID: id, State: s, Created: ago(created)}
	}
	ready := func(id, addr string, since time.Duration) state.Backend {
		return state.Backend{ID: id, Addr: addr, State: state.Ready, Since: ago(since)}
	}
	entry := func(id, addr string, s state.Status) state.Backend {
		return state.Backend{ID: id, Addr: addr, State: s, Since: ago(time.Minute)}
	}
	tests := []struct {
		name string
		w    World
		want Plan
	}{
		{"in agreement at min", World{Min: 2, Max: 5,
			Containers: []driver.Instance{run("a", "10.0.0.1:8080"), run("b", "10.0.0.2:8080")},
			Registry:   []state.Backend{ready("a", "10.0.0.1:8080", time.Hour), ready("b", "10.0.0.2:8080", time.Hour)},
		}, Plan{Ready: []state.Backend{ready("a", "10.0.0.1:8080", time.Hour), ready("b", "10.0.0.2:8080", time.Hour)}}},
		{"empty start-up starts min", World{Min: 2, Max: 5},
			Plan{Start: 2, Reason: ReasonMinReplicas}},
		{"killed container: remove, unregister, replace", World{Min: 2, Max: 5,
			Containers: []driver.Instance{run("a", "10.0.0.1:8080"), inState("b", driver.StateExited, time.Hour)},
			Registry:   []state.Backend{ready("a", "10.0.0.1:8080", time.Hour), ready("b", "10.0.0.2:8080", time.Hour)},
		}, Plan{Remove: []string{"b"}, Unregister: []string{"b"}, Ready: []state.Backend{ready("a", "10.0.0.1:8080", time.Hour)}, Start: 1, Reason: ReasonReplace}},
		{"dead container removed even if unregistered", World{Min: 0, Max: 5,
			Containers: []driver.Instance{inState("x", driver.StateDead, time.Hour)},
		}, Plan{Remove: []string{"x"}}},
		{"registry entry without container goes", World{Min: 0, Max: 5,
			Registry: []state.Backend{ready("ghost", "10.0.0.9:8080", time.Hour)},
		}, Plan{Unregister: []string{"ghost"}}},
		{"running but unregistered is adopted and counts toward min", World{Min: 1, Max: 5,
			Containers: []driver.Instance{run("a", "10.0.0.1:8080")},
		}, Plan{Adopt: []driver.Instance{run("a", "10.0.0.1:8080")}}},
		{"stuck in starting (its scaler died) is adopted", World{Min: 1, Max: 5,
			Containers: []driver.Instance{run("a", "10.0.0.1:8080")},
			Registry:   []state.Backend{entry("a", "10.0.0.1:8080", state.Starting)},
		}, Plan{Adopt: []driver.Instance{run("a", "10.0.0.1:8080")}}},
		{"draining nobody drains is resumed, not counted", World{Min: 1, Max: 5,
			Containers: []driver.Instance{run("a", "10.0.0.1:8080")},
			Registry:   []state.Backend{entry("a", "10.0.0.1:8080", state.Draining)},
		}, Plan{Resume: []state.Backend{entry("a", "10.0.0.1:8080", state.Draining)}, Start: 1, Reason: ReasonMinReplicas}},
		{"address changed is rewritten", World{Min: 1, Max: 5,
			Containers: []driver.Instance{run("a", "10.0.0.7:8080")},
			Registry:   []state.Backend{ready("a", "10.0.0.1:8080", time.Hour)},
		}, Plan{Ready: []state.Backend{ready("a", "10.0.0.7:8080", time.Hour)}, Rewrite: []state.Backend{ready("a", "10.0.0.7:8080", time.Hour)}}},
		{"busy ones are left to their worker and their starts count", World{Min: 3, Max: 5, Starting: 2,
			Busy:       map[string]bool{"s1": true, "s2": true, "gone-but-busy": true, "ghost-but-busy": true},
			Containers: []driver.Instance{inState("s1", driver.StateCreated, 0), run("s2", "10.0.0.2:8080"), inState("gone-but-busy", driver.StateExited, time.Minute)},
			Registry:   []state.Backend{entry("s2", "10.0.0.2:8080", state.Starting), entry("ghost-but-busy", "", state.Starting)},
		}, Plan{Start: 1, Reason: ReasonMinReplicas}},
		{"fresh created container left alone, stale one removed", World{Min: 0, Max: 5, StaleCreate: time.Minute,
			Containers: []driver.Instance{inState("fresh", driver.StateCreated, time.Second), inState("stale", driver.StateCreated, 2*time.Minute)},
		}, Plan{Remove: []string{"stale"}, Pending: 1}},
		{"created by a scaler that died before starting it: counts against max", World{Min: 4, Max: 4, StaleCreate: 10 * time.Second,
			Containers: []driver.Instance{run("a", "10.0.0.1:8080"), inState("x", driver.StateCreated, time.Second), inState("y", driver.StateCreated, 2*time.Second)},
			Registry:   []state.Backend{ready("a", "10.0.0.1:8080", time.Hour)},
		}, Plan{Ready: []state.Backend{ready("a", "10.0.0.1:8080", time.Hour)}, Pending: 2, Start: 1, Reason: ReasonMinReplicas}},
		{"and none starts while they fill max", World{Min: 3, Max: 3, StaleCreate: 10 * time.Second,
			Containers: []driver.Instance{run("a", "10.0.0.1:8080"), inState("x", driver.StateCreated, time.Second), inState("y", driver.StateCreated, 2*time.Second)},
			Registry:   []state.Backend{ready("a", "10.0.0.1:8080", time.Hour)},
		}, Plan{Ready: []state.Backend{ready("a", "10.0.0.1:8080", time.Hour)}, Pending: 2}},
		{"running off the network: left while young, removed once stale", World{Min: 0, Max: 5, StaleCreate: time.Minute,
			Containers: []driver.Instance{inState("young", driver.StateRunning, time.Second), inState("old", driver.StateRunning, 2*time.Minute)},
			Registry:   []state.Backend{ready("old", "10.0.0.1:8080", time.Hour)},
		}, Plan{Unregister: []string{"old"}, Remove: []string{"old"}}},
		{"paused: unregistered but not removed", World{Min: 0, Max: 5,
			Containers: []driver.Instance{inState("p", "paused", time.Hour)},
			Registry:   []state.Backend{ready("p", "10.0.0.1:8080", time.Hour)},
		}, Plan{Unregister: []string{"p"}}},
		{"above max trims the newest ready", World{Min: 1, Max: 2,
			Containers: []driver.Instance{run("a", "1:1"), run("b", "2:1"), run("c", "3:1")},
			Registry:   []state.Backend{ready("a", "1:1", 3*time.Hour), ready("b", "2:1", time.Hour), ready("c", "3:1", 2*time.Hour)},
		}, Plan{Ready: []state.Backend{ready("a", "1:1", 3*time.Hour), ready("b", "2:1", time.Hour), ready("c", "3:1", 2*time.Hour)}, Trim: []string{"b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Reconcile(tt.w, t0)
			if !equalPlan(got, tt.want) {
				t.Fatalf("Reconcile\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func equalPlan(a, b Plan) bool {
	eqB := func(x, y []state.Backend) bool {
		return slices.EqualFunc(x, y, func(p, q state.Backend) bool {
			return p.ID == q.ID && p.Addr == q.Addr && p.State == q.State && p.Since.Equal(q.Since)
		})
	}
	return slices.Equal(a.Remove, b.Remove) && slices.Equal(a.Unregister, b.Unregister) &&
		eqB(a.Ready, b.Ready) && eqB(a.Rewrite, b.Rewrite) && eqB(a.Resume, b.Resume) &&
		slices.EqualFunc(a.Adopt, b.Adopt, func(p, q driver.Instance) bool { return p.ID == q.ID && p.Addr == q.Addr }) &&
		a.Start == b.Start && a.Reason == b.Reason && slices.Equal(a.Trim, b.Trim)
}

func TestIdleConnsAndStale(t *testing.T) {
	idle := 60 * time.Second
	k := func(id string, readyAgo time.Duration, conns int64, stale bool) Candidate {
		return Candidate{ID: id, ReadySince: ago(readyAgo), LastSeen: ago(5 * time.Minute), Conns: conns, Stale: stale}
	}
	for _, tt := range []struct {
		name  string
		in    IdleInput
		wantV []string
	}{
		{"an open connection is busy, however long since a request", IdleInput{Keep: 0, IdleTimeout: idle, Ready: []Candidate{
			k("ws", 10*time.Minute, 1, false), k("quiet", 10*time.Minute, 0, false),
		}}, []string{"quiet"}},
		{"busy with connections does not use the quota", IdleInput{Keep: 1, IdleTimeout: idle, Ready: []Candidate{
			k("old", 10*time.Minute, 0, false), k("mid", 8*time.Minute, 0, false), k("new", 7*time.Minute, 5, false),
		}}, []string{"mid", "old"}},
		{"stale first among idle ones, then newest", IdleInput{Keep: 1, IdleTimeout: idle, Ready: []Candidate{
			k("old-stale", 10*time.Minute, 0, true), k("mid", 8*time.Minute, 0, false), k("new", 7*time.Minute, 0, false),
		}}, []string{"old-stale", "new"}},
		{"a stale one with a connection is still busy", IdleInput{Keep: 0, IdleTimeout: idle, Ready: []Candidate{
			k("stale-ws", 10*time.Minute, 2, true), k("cur", 8*time.Minute, 0, false),
		}}, []string{"cur"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Idle(tt.in, t0); !slices.Equal(got, tt.wantV) {
				t.Fatalf("Idle = %v, want %v", got, tt.wantV)
			}
		})
	}
}
