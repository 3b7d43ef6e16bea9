package control

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"lbscale/internal/state"
)

// leaseFake is a lease store for one scaler: every acquire succeeds unless
// a failure is queued.
type leaseFake struct {
	mu       sync.Mutex
	fails    int // the next this many acquires fail
	acquires int
	released bool
}

func (s *leaseFake) AcquireLease(_ context.Context, holder string, ttl time.Duration) (state.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acquires++
	if s.fails > 0 {
		s.fails--
		return state.Lease{}, errCut
	}
	return state.Lease{Holder: holder, Left: ttl}, nil
}

func (s *leaseFake) ReleaseLease(context.Context, string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.released = true
	return nil
}

func (s *leaseFake) failNext(n int) {
	s.mu.Lock()
	s.fails = n
	s.mu.Unlock()
}

// The lease loop alone, on fake time: with a TTL of 1.2 s it renews every
// 400 ms and retries a failed renewal after 200 ms. A failure at t leaves
// 800 ms of lease (> 3 × 200 ms): retried, the term goes on. A second in a
// row leaves 600 ms, not more than the margin: the term ends.
func TestLeaseRetriesOnceThenEndsTheTerm(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		st := &leaseFake{}
		var begun, ended atomic.Int32
		log := testLogger(t)
		l := newLease(st, "a", 1200*time.Millisecond, time.Now, log, newReporter(time.Now, log, newMetrics(pool)),
			func(context.Context) func() {
				begun.Add(1)
				return func() { ended.Add(1) }
			})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { l.run(ctx); close(done) }()

		synctest.Wait()
		if begun.Load() != 1 {
			t.Fatalf("terms begun %d, want 1 after the first acquire", begun.Load())
		}
		st.failNext(1)
		time.Sleep(2 * time.Second)
		if ended.Load() != 0 {
			t.Fatal("one failed renewal ended the term")
		}
		st.failNext(2)
		time.Sleep(time.Second) // the failure, its retry
		if ended.Load() != 1 {
			t.Fatalf("terms ended %d after two failures in a row, want 1", ended.Load())
		}
		time.Sleep(time.Second) // a campaign succeeds
		if begun.Load() != 2 {
			t.Fatalf("terms begun %d, want 2 once the store answers", begun.Load())
		}
		if d := time.Since(l.lastRound()); d > 400*time.Millisecond {
			t.Fatalf("last round %s ago, want within a renewal period", d)
		}
		cancel()
		<-done
		if ended.Load() != 2 || !st.released {
			t.Fatalf("after run: terms ended %d, released %v; want 2, true", ended.Load(), st.released)
		}
	})
}
