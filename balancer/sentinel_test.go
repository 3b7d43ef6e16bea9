package main_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv/statetest"
)

// TestBalancersThroughSentinelFailover: two real balancers share their
// state through a Sentinel group (REDIS_URL is the failover URL) under
// closed-loop load, and the primary is SIGKILLed. No request fails: while
// the store is unreachable they serve on their grants, then on their
// outage shares, and they resync on the promoted replica by themselves.
// The cluster-wide MAX_INFLIGHT holds on each web server throughout.
func TestBalancersThroughSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("a failover takes seconds")
	}
	g := statetest.StartSentinelGroup(t, "lbscale-balancers")
	const limit = 4
	addrs := []string{web(t, "s1", "SLEEP_MS=5"), web(t, "s2", "SLEEP_MS=5")}
	env := []string{"BACKENDS=" + strings.Join(addrs, ","), redisstore.EnvRedisURL + "=" + g.URL(), "POOL=sentinel", "MAX_INFLIGHT=4", "LOG_LEVEL=info"}
	a, b := balancer(t, append(env, "BALANCER_ID=a")...), balancer(t, append(env, "BALANCER_ID=b")...)
	waitReplicas(t, a.admin, 2)
	waitReplicas(t, b.admin, 2)
	// Each sees the other once both have synced: the first sync of the
	// balancer that started first may precede the other's.
	for _, bal := range []lb{a, b} {
		deadline := time.Now().Add(10 * time.Second)
		for st := status(t, bal.admin); !st.StoreUp || st.Balancers != 2; st = status(t, bal.admin) {
			if time.Now().After(deadline) {
				t.Fatalf("before the kill %s: store up %v, %d balancers", bal.admin, st.StoreUp, st.Balancers)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	var r result
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	closedLoop(ctx, &wg, &r, a.proxy+"/", 6)
	closedLoop(ctx, &wg, &r, b.proxy+"/", 2)
	time.Sleep(time.Second) // connections open, grants settle
	for _, addr := range addrs {
		resetLoad(t, addr)
	}

	killed := time.Now()
	okAtKill := r.ok.Load()
	old := g.KillPrimary()
	promoted := g.WaitFailover(old, 30*time.Second)
	promotedAfter := time.Since(killed)
	// Each balancer's store goes down (its sync fails) and comes back up on
	// the promoted replica; the admin status says which.
	const bound = 30 * time.Second
	bals := []lb{a, b}
	sawDown := make([]bool, len(bals))
	backAt := make([]time.Duration, len(bals))
	// grantsDown are the distinct grant vectors each balancer showed while
	// its store was down: its last grants, then its outage shares.
	grantsDown := make([][]string, len(bals))
	for {
		done := true
		for i, bal := range bals {
			if backAt[i] != 0 {
				continue
			}
			switch st := status(t, bal.admin); {
			case !st.StoreUp:
				sawDown[i] = true
				done = false
				var gs []string
				for _, be := range st.Backends {
					gs = append(gs, strconv.FormatInt(be.Grant, 10))
				}
				if v := strings.Join(gs, "/"); !slices.Contains(grantsDown[i], v) {
					grantsDown[i] = append(grantsDown[i], v)
				}
			case sawDown[i] || time.Since(killed) > promotedAfter+time.Second:
				// Up again; or never seen down, its syncs having blocked on
				// the dead primary through the outage (a blocked sync
				// leaves the status as the last one set it).
				backAt[i] = time.Since(killed)
			default:
				done = false
			}
		}
		if done {
			break
		}
		if time.Since(killed) > bound {
			t.Fatalf("balancers not back on the store %v after the kill (seen down: %v)", bound, sawDown)
		}
		time.Sleep(20 * time.Millisecond)
	}
	back := max(backAt[0], backAt[1])
	down := 0
	for _, d := range sawDown {
		if d {
			down++
		}
	}
	okDuringOutage := r.ok.Load() - okAtKill
	time.Sleep(2 * time.Second) // both resynced: grants settle again
	cancel()
	wg.Wait()

	if promoted != g.Replica.Addr() {
		t.Errorf("the sentinels promoted %s, not the replica %s", promoted, g.Replica.Addr())
	}
	if r.failed.Load() != 0 {
		codes := map[string]int64{}
		r.codes.Range(func(k, v any) bool { codes[k.(string)] = v.(*atomic.Int64).Load(); return true })
		t.Errorf("%d requests failed around the failover: %v", r.failed.Load(), codes)
	}
	for _, bal := range bals {
		if st := status(t, bal.admin); !st.StoreUp || st.Balancers != 2 {
			t.Errorf("after the failover %s: store up %v, %d balancers", bal.admin, st.StoreUp, st.Balancers)
		}
	}
	for _, addr := range addrs {
		p := load(t, addr).PeakInflight
		if p > limit+1 {
			t.Errorf("web server %s peaked at %d in flight around the failover, limit %d (+1 tolerated)", addr, p, limit)
		}
		t.Logf("web server %s peak in flight around the failover: %d (limit %d)", addr, p, limit)
	}
	t.Logf("balancers through a Sentinel failover: replica promoted %v after the SIGKILL, both balancers synced on it again %v after (bound %v); store seen down by %d of 2",
		promotedAfter.Round(time.Millisecond), back.Round(time.Millisecond), bound, down)
	t.Logf("grants per backend while the store was down: a %v, b %v (MAX_INFLIGHT %d over 2 balancers)", grantsDown[0], grantsDown[1], limit)
	t.Logf("requests: %d served until both resynced, %d in all, %d failed", okDuringOutage, r.ok.Load(), r.failed.Load())
}
