package cluster

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv/statetest"
)

// outageBackends and outageLimit: B = 400 backends of MAX_INFLIGHT 3, so
// that four balancers' outage shares are uneven (1, 1, 1, 0 in turn).
const (
	outageBackends = 400
	outageLimit    = 3
)

// outageCluster is real Syncers, each with its own Store as separate
// processes have, on one real redis-server, driven sync by sync on one
// made-up clock so that the test steps past TTLs without sleeping.
type outageCluster struct {
	srv     *statetest.Server
	now     time.Time
	syncers []*Syncer
	ids     []string
	static  []Static
}

func newOutageCluster(t *testing.T) *outageCluster {
	t.Helper()
	c := &outageCluster{srv: statetest.StartRedis(t), now: time.Unix(1_700_000_000, 0)}
	for i := range outageBackends {
		c.static = append(c.static, Static{Addr: fmt.Sprintf("10.1.%d.%d:8080", i/256, i%256), Weight: 1})
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		c.add(t, id)
	}
	return c
}

// add starts one more balancer with a closed loop of 100 clients, each
// with a request in flight or queued: it wants more slots than it can get,
// and its demand weight stands still whatever runs (a drifting weight
// makes the balancers divide from slightly different pictures, which
// leaves a few slots to nobody until it settles).
func (c *outageCluster) add(t *testing.T, id string) *Syncer {
	t.Helper()
	store, err := redisstore.New(c.srv.URL(), "outage")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	var s *Syncer
	queued := func() int64 {
		n := int64(100)
		for _, b := range s.Set().Backends {
			n -= b.Local()
		}
		return max(n, 0)
	}
	s = New(Options{Store: store, ID: id, Share: true, Interval: 25 * time.Millisecond, Limit: outageLimit,
		Static: c.static, Queued: queued, Now: func() time.Time { return c.now }, Log: slog.New(slog.DiscardHandler)})
	c.syncers = append(c.syncers, s)
	c.ids = append(c.ids, id)
	return s
}

// round moves the clock on by step and syncs every balancer in turn,
// checking the limit after each sync.
func (c *outageCluster) round(t *testing.T, step time.Duration, when string) {
	t.Helper()
	c.now = c.now.Add(step)
	for j, s := range c.syncers {
		s.Sync(t.Context())
		c.checkLimit(t, fmt.Sprintf("%s, after %s synced", when, c.ids[j]))
	}
}

// roundThenCheck is round checking only once every balancer has synced:
// for the step into the outage shares, which the balancers take one by one
// (see TestOutageMovingToSharesKeepsLimit).
func (c *outageCluster) roundThenCheck(t *testing.T, step time.Duration, when string) {
	t.Helper()
	c.now = c.now.Add(step)
	for _, s := range c.syncers {
		s.Sync(t.Context())
	}
	c.checkLimit(t, when+", after all synced")
}

// over counts the backends whose grants sum past the limit.
func (c *outageCluster) over() (n int) {
	for i := range outageBackends {
		var sum int64
		for _, s := range c.syncers {
			sum += s.Set().Backends[i].Grant()
		}
		if sum > outageLimit {
			n++
		}
	}
	return n
}

// checkLimit: on every backend no balancer has more in flight than its
// grant, and the balancers' grants sum to at most the limit.
func (c *outageCluster) checkLimit(t *testing.T, when string) {
	t.Helper()
	for i := range outageBackends {
		var sum int64
		for j, s := range c.syncers {
			b := s.Set().Backends[i]
			if b.Local() > b.Grant() {
				t.Fatalf("%s: %s has %d in flight on %s over its grant %d", when, c.ids[j], b.Local(), b.ID, b.Grant())
			}
			sum += b.Grant()
		}
		if sum > outageLimit {
			t.Fatalf("%s: grants on %s sum to %d > limit %d (%s)", when, c.syncers[0].Set().Backends[i].ID, sum, outageLimit, c.grantsOn(i))
		}
	}
}

func (c *outageCluster) grantsOn(i int) string {
	out := ""
	for j, s := range c.syncers {
		out += fmt.Sprintf("%s:%d ", c.ids[j], s.Set().Backends[i].Grant())
	}
	return out
}

// total is every grant of every balancer summed.
func (c *outageCluster) total() (n int64) {
	for _, s := range c.syncers {
		for _, b := range s.Set().Backends {
			n += b.Grant()
		}
	}
	return n
}

// converge syncs rounds until the balancers hold the whole limit of every
// backend and, when settle, every balancer knows all the others and holds
// exactly its targets (with no request in flight over a target); it fails
// if that takes more than a few epochs.
func (c *outageCluster) converge(t *testing.T, when string, settle bool) {
	t.Helper()
	for r := range 40 {
		c.round(t, 25*time.Millisecond, fmt.Sprintf("%s, round %d", when, r))
		if c.total() == outageBackends*outageLimit && (!settle || c.settled()) {
			return
		}
	}
	t.Fatalf("%s: the balancers hold %d of %d slots (settled: %v)", when, c.total(), outageBackends*outageLimit, c.settled())
}

// settled reports whether every balancer sees them all and holds exactly
// its targets.
func (c *outageCluster) settled() bool {
	for _, s := range c.syncers {
		if s.Peers() != len(c.syncers) {
			return false
		}
		for _, b := range s.Set().Backends {
			if b.Grant() != b.Target() {
				return false
			}
		}
	}
	return true
}

// TestOutageDegradedSharesAtScale: four balancers share 400 backends through
// Redis; Redis dies. Within the TTL the grants stand. Past it every
// balancer serves on its DegradedShare, and the shares add up to exactly
// the limit on every backend. Redis comes back empty: the balancers hold
// their shares for a TTL, never summing past the limit at any sync, with
// requests in flight meanwhile, and then grow back to the whole limit.
func TestOutageDegradedSharesAtScale(t *testing.T) {
	c := newOutageCluster(t)
	c.converge(t, "before the outage", true)
	before := make([][]int64, len(c.syncers))
	for j, s := range c.syncers {
		for _, b := range s.Set().Backends {
			before[j] = append(before[j], b.Grant())
		}
	}

	c.srv.Stop()
	c.round(t, 500*time.Millisecond, "Redis down within the TTL")
	for j, s := range c.syncers {
		if s.StoreUp() {
			t.Fatalf("%s: store up with Redis stopped", c.ids[j])
		}
		for i, b := range s.Set().Backends {
			if b.Grant() != before[j][i] {
				t.Fatalf("%s on %s: grant %d within the TTL, want it to stand at %d", c.ids[j], b.ID, b.Grant(), before[j][i])
			}
		}
	}
	c.roundThenCheck(t, 600*time.Millisecond, "Redis down past the TTL")
	for j, s := range c.syncers {
		for i, b := range s.Set().Backends {
			if b.Grant() > before[j][i] {
				t.Fatalf("%s on %s: grant %d just past the TTL, raised from %d before the raise delay", c.ids[j], b.ID, b.Grant(), before[j][i])
			}
		}
	}
	c.roundThenCheck(t, RaiseDelay(25*time.Millisecond), "Redis down past the TTL and the raise delay")
	for i := range outageBackends {
		var sum int64
		for j, s := range c.syncers {
			b := s.Set().Backends[i]
			// Ranks are the balancers' places in id order: a, b, c, d.
			if want := DegradedShare(outageLimit, int64(len(c.syncers)), int64(j), int64(i)); b.Grant() != want {
				t.Fatalf("%s on %s: grant %d past the TTL, want its outage share %d", c.ids[j], b.ID, b.Grant(), want)
			}
			sum += b.Grant()
		}
		if sum != outageLimit {
			t.Fatalf("outage shares on backend %d sum to %d, want exactly the limit %d", i, sum, outageLimit)
		}
	}

	c.srv.Start()
	c.round(t, 25*time.Millisecond, "Redis back")
	for j, s := range c.syncers {
		if !s.StoreUp() {
			t.Fatalf("%s did not reach the restarted Redis", c.ids[j])
		}
	}
	// Within the hold: requests run on the shares, and no grant grows.
	for j, s := range c.syncers {
		for i, b := range s.Set().Backends {
			if i%5 == j && !b.TryAcquire() && b.Grant() > 0 {
				t.Fatalf("%s on %s: no request starts within grant %d", c.ids[j], b.ID, b.Grant())
			}
		}
	}
	for r := range 5 {
		c.round(t, 25*time.Millisecond, fmt.Sprintf("held round %d", r))
		for j, s := range c.syncers {
			for i, b := range s.Set().Backends {
				if share := DegradedShare(outageLimit, int64(len(c.syncers)), int64(j), int64(i)); b.Grant() > share {
					t.Fatalf("held round %d: %s's grant on %s grew to %d over its outage share %d", r, c.ids[j], b.ID, b.Grant(), share)
				}
			}
		}
	}
	c.now = c.now.Add(time.Second) // the hold (a TTL) is over
	c.converge(t, "after the hold", false)
	for j, s := range c.syncers {
		for i, b := range s.Set().Backends {
			if i%5 == j && b.Local() > 0 {
				b.Release()
			}
		}
	}
	c.converge(t, "requests done", true)
}

// TestOutageMovingToSharesKeepsLimit: past the TTL each balancer moves to
// its outage share at its next sync, raising a grant below its share at
// once and lowering one above it. The balancers do not move at one
// instant (each counts the TTL from its own last sync, up to an interval
// apart), so the grants must keep the limit after every single move, not
// only once all have moved.
func TestOutageMovingToSharesKeepsLimit(t *testing.T) {
	c := newOutageCluster(t)
	c.converge(t, "before the outage", true)
	c.srv.Stop()
	c.now = c.now.Add(1100 * time.Millisecond)
	worst, at := 0, ""
	for j, s := range c.syncers {
		s.Sync(t.Context())
		if n := c.over(); n > worst {
			worst, at = n, c.ids[j]
		}
	}
	if c.over() != 0 {
		t.Fatalf("once all moved to their shares, %d backends are over the limit", c.over())
	}
	if worst > 0 {
		t.Errorf("moving to the outage shares one balancer at a time: after %s moved, grants sum past the limit on %d of %d backends", at, worst, outageBackends)
	}
}
