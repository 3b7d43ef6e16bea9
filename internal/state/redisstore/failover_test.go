package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"lbscale/internal/state"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv/statetest"
)

// opLog records every store operation of a failover run: who did it, when
// it ended, and how.
type opLog struct {
	mu  sync.Mutex // guards ops
	ops []opResult
}

type opResult struct {
	actor, op string
	at        time.Time     // when it returned
	took      time.Duration // how long it blocked its loop
	err       error
}

func (l *opLog) add(actor, op string, took time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops = append(l.ops, opResult{actor: actor, op: op, at: time.Now(), took: took, err: err})
}

func (l *opLog) snapshot() []opResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]opResult(nil), l.ops...)
}

// firstOK is when the first success of actor that started at or after
// since returned (zero if none yet).
func firstOK(ops []opResult, actor string, since time.Time) time.Time {
	for _, o := range ops {
		if o.actor == actor && o.err == nil && !o.at.Add(-o.took).Before(since) {
			return o.at
		}
	}
	return time.Time{}
}

// errorKind sorts a store error into what a reader of the docs cares about:
// the server gone (refused, reset, EOF), no answer (timeout), a replica
// still read-only, the Sentinels not answering, or the message itself with
// addresses and numbers blanked.
func errorKind(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF (server closed the connection)"
	case strings.Contains(msg, "READONLY"):
		return "READONLY (write to a replica)"
	case strings.Contains(msg, "LOADING"):
		return "LOADING"
	case strings.Contains(msg, "sentinels"):
		return "no Sentinel answer"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout (context)"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout (i/o)"
	}
	return digits.ReplaceAllString(msg, "N")
}

var digits = regexp.MustCompile(`[0-9]+`)

// TestStoreSentinelFailover: two balancers' syncs and a leading scaler's
// lease, registry writes and load reads run against a Sentinel group
// through the failover URL while the primary is SIGKILLed. Operations fail
// only between the kill and the promotion of the replica, every actor
// writes again afterwards (on the promoted replica), the scaler still
// holds its lease, and the figures are logged for docs/reliability.md.
func TestStoreSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("a failover takes seconds")
	}
	g := statetest.StartSentinelGroup(t, "lbscale-store")
	const pool = "failover"
	open := func() *redisstore.Store {
		s, err := redisstore.New(g.URL(), pool)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if err := s.Ping(context.Background()); err != nil {
			t.Fatalf("ping through the sentinels: %v", err)
		}
		return s
	}

	var log opLog
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	// op runs one store call with its own deadline, as the balancer's sync
	// loop and the scaler's control loop do.
	op := func(actor, name string, f func(context.Context) error) {
		octx, ocancel := context.WithTimeout(ctx, 2*time.Second)
		defer ocancel()
		start := time.Now()
		err := f(octx)
		if ctx.Err() == nil {
			log.add(actor, name, time.Since(start), err)
		}
	}
	every := func(d time.Duration, f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(d)
			defer tick.Stop()
			for {
				f()
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	backends := []string{"w1", "w2"}
	for _, id := range []string{"b1", "b2"} {
		s := open()
		every(25*time.Millisecond, func() {
			op(id, "sync", func(ctx context.Context) error {
				req := state.SyncRequest{Balancer: id, Queued: 1, TTL: time.Second, Interval: 25 * time.Millisecond}
				for _, b := range backends {
					req.Slots = append(req.Slots, state.SlotUse{ID: b, Local: 1, Floor: 1, Limit: 4})
				}
				_, err := s.Sync(ctx, req)
				return err
			})
		})
	}
	const leader, leaseTTL = "scaler-1", 3 * time.Second
	scaler := open()
	every(200*time.Millisecond, func() {
		op("scaler", "lease", func(ctx context.Context) error {
			l, err := scaler.AcquireLease(ctx, leader, leaseTTL)
			if err == nil && !l.HeldBy(leader) {
				err = fmt.Errorf("lease held by %q", l.Holder)
			}
			return err
		})
		op("scaler", "register", func(ctx context.Context) error {
			return scaler.PutBackend(ctx, state.Backend{ID: "w1", Addr: "127.0.0.1:9001", State: state.Ready})
		})
		op("scaler", "load", func(ctx context.Context) error {
			_, err := scaler.ClusterLoad(ctx)
			return err
		})
	})

	actors := []string{"b1", "b2", "scaler"}
	waitAll := func(what string, since time.Time, timeout time.Duration) time.Time {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for {
			ops := log.snapshot()
			var last time.Time
			done := true
			for _, a := range actors {
				at := firstOK(ops, a, since)
				done = done && !at.IsZero()
				last = maxTime(last, at)
			}
			if done {
				return last
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not every actor succeeded within %v", what, timeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	steady := waitAll("before the kill", time.Now(), 10*time.Second).Add(time.Second)
	for time.Now().Before(steady) {
		time.Sleep(20 * time.Millisecond)
	}

	killed := time.Now()
	old := g.KillPrimary()
	promoted := g.WaitFailover(old, 30*time.Second)
	promotedAt := time.Now()
	const bound = 30 * time.Second
	recovered := waitAll("after the failover", killed, bound)
	end := recovered.Add(2 * time.Second)
	for time.Now().Before(end) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()

	if promoted != g.Replica.Addr() {
		t.Fatalf("the sentinels promoted %s, not the replica %s", promoted, g.Replica.Addr())
	}
	ops := log.snapshot()
	kinds := map[string]int{}
	var failed, total int
	var lastErr time.Time
	var slowest opResult
	for _, o := range ops {
		total++
		if o.took > slowest.took {
			slowest = o
		}
		if o.err == nil {
			continue
		}
		failed++
		kinds[o.op+": "+errorKind(o.err)]++
		lastErr = maxTime(lastErr, o.at)
		if o.at.Before(killed) {
			t.Errorf("%s %s failed before the kill: %v", o.actor, o.op, o.err)
		}
		if o.at.After(recovered.Add(time.Second)) {
			t.Errorf("%s %s failed %v after every actor had recovered: %v", o.actor, o.op, o.at.Sub(recovered), o.err)
		}
	}
	t.Logf("sentinel failover of the store: primary SIGKILLed, replica %s promoted after %v", promoted, promotedAt.Sub(killed).Round(time.Millisecond))
	for _, a := range actors {
		t.Logf("  %-6s first success after the kill: %v", a, firstOK(ops, a, killed).Sub(killed).Round(time.Millisecond))
	}
	t.Logf("  all recovered after %v (bound %v); last error %v after the kill", recovered.Sub(killed).Round(time.Millisecond), bound,
		max(0, lastErr.Sub(killed)).Round(time.Millisecond))
	t.Logf("  slowest operation: %s %s blocked %v (err %v)", slowest.actor, slowest.op, slowest.took.Round(time.Millisecond), slowest.err)
	t.Logf("  %d of %d operations failed, by kind:", failed, total)
	var lines []string
	for k, n := range kinds {
		lines = append(lines, fmt.Sprintf("    %4d  %s", n, k))
	}
	sort.Strings(lines)
	for _, l := range lines {
		t.Log(l)
	}
	if d := recovered.Sub(killed); d > bound {
		t.Errorf("recovery took %v > %v", d, bound)
	}

	// The scaler leads on the new primary: its lease is there, under its
	// name, renewed through the failover.
	after := open()
	l, err := after.AcquireLease(context.Background(), "scaler-2", leaseTTL)
	if err != nil || l.Holder != leader {
		t.Errorf("after the failover the lease is %+v (%v), want held by %s", l, err, leader)
	}
	rdb := redis.NewClient(&redis.Options{Addr: g.Replica.Addr()})
	defer rdb.Close()
	keys := state.NewKeys(pool)
	if v, err := rdb.Get(context.Background(), keys.Leader()).Result(); err != nil || v != leader {
		t.Errorf("lease on the promoted replica: %q, %v", v, err)
	}
	if n, err := rdb.Exists(context.Background(), keys.Balancer("b1"), keys.Balancer("b2")).Result(); err != nil || n != 2 {
		t.Errorf("balancers' hashes on the promoted replica: %d of 2, %v", n, err)
	}
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
