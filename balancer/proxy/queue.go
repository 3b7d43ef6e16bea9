package proxy

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"lbscale/balancer/pool"
)

// Reasons a request could not be placed; each becomes a 503 + Retry-After.
var (
	ErrQueueFull    = errors.New("every backend is at MAX_INFLIGHT and the queue is full")
	ErrQueueTimeout = errors.New("no backend slot freed within QUEUE_TIMEOUT")
	// ErrNoBackend: no backend could take the request and none may come
	// (see AcquireIf), so waiting would only delay the 503.
	ErrNoBackend = errors.New("no backend is up and none is on its way")
)

// Queue holds requests while every backend is at its limit, first in first
// out. A freed slot is handed to the head waiter by the goroutine that freed
// it (Dispatch), so a newcomer cannot overtake a request that waited.
type Queue struct {
	max     int
	timeout time.Duration
	// demand is called when a request starts waiting: the balancer syncs at
	// once so the other balancers and the scaler learn of it.
	demand func()

	mu      sync.Mutex
	waiters []*waiter
	depth   atomic.Int64
}

type waiter struct {
	ch  chan *pool.Backend
	try Picker
}

// Picker takes a free backend slot for one request, or returns nil when
// none is free. An interface rather than a func so that the request path
// passes its per-request state as it is, without a closure to allocate.
type Picker interface{ Pick() *pool.Backend }

// PickFunc adapts a function to Picker.
type PickFunc func() *pool.Backend

// Pick calls f.
func (f PickFunc) Pick() *pool.Backend { return f() }

// NewQueue returns a queue of at most max waiters, each waiting at most timeout.
func NewQueue(max int, timeout time.Duration, demand func()) *Queue {
	if demand == nil {
		demand = func() {}
	}
	return &Queue{max: max, timeout: timeout, demand: demand}
}

// Depth is the number of waiting requests.
func (q *Queue) Depth() int64 { return q.depth.Load() }

// Acquire returns a backend whose slot try took, waiting in line when try
// finds none. It reports whether the request waited.
func (q *Queue) Acquire(ctx context.Context, try Picker) (*pool.Backend, bool, error) {
	return q.AcquireIf(ctx, try, nil)
}

// AcquireIf is Acquire that waits only if mayWait (nil: always) reports
// that a slot may still come; otherwise it fails with ErrNoBackend at once.
// mayWait runs only when try found no slot, never on the fast path.
func (q *Queue) AcquireIf(ctx context.Context, try Picker, mayWait func() bool) (*pool.Backend, bool, error) {
	if q.depth.Load() == 0 {
		if b := try.Pick(); b != nil {
			return b, false, nil
		}
	}
	q.mu.Lock()
	// depth counts this request before the try under the lock: a slot
	// released after that try then finds depth > 0, so its Dispatch waits for
	// the lock and serves the waiter this request is about to become. Counted
	// after the try, the release could slip between the two, see depth 0 and
	// return, leaving the request waiting beside a free slot.
	q.depth.Add(1)
	if len(q.waiters) == 0 {
		// Checked again under the lock: a slot freed since the first try
		// would otherwise be missed, as Dispatch found no waiter to give it to.
		if b := try.Pick(); b != nil {
			q.depth.Add(-1)
			q.mu.Unlock()
			return b, false, nil
		}
	}
	if len(q.waiters) >= q.max {
		q.depth.Add(-1)
		q.mu.Unlock()
		return nil, false, ErrQueueFull
	}
	if mayWait != nil && !mayWait() {
		q.depth.Add(-1)
		q.mu.Unlock()
		return nil, false, ErrNoBackend
	}
	w := &waiter{ch: make(chan *pool.Backend, 1), try: try}
	q.waiters = append(q.waiters, w)
	q.mu.Unlock()
	q.demand()

	timer := time.NewTimer(q.timeout)
	defer timer.Stop()
	var err error
	select {
	case b := <-w.ch:
		return b, true, nil
	case <-timer.C:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	q.mu.Lock()
	for i, x := range q.waiters {
		if x == w {
			q.waiters = append(q.waiters[:i], q.waiters[i+1:]...)
			q.depth.Add(-1)
			q.mu.Unlock()
			// The head may have been this request, holding back others
			// whose try would succeed.
			q.Dispatch()
			return nil, true, err
		}
	}
	q.mu.Unlock()
	// Dispatch served us while we gave up: the slot is ours to use.
	return <-w.ch, true, nil
}

// Dispatch hands free slots to waiters in order. Call it whenever capacity
// may have appeared: a slot released, a grant raised, a backend added or
// healthy again.
func (q *Queue) Dispatch() {
	if q.depth.Load() == 0 {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.waiters) > 0 {
		w := q.waiters[0]
		b := w.try.Pick()
		if b == nil {
			return
		}
		q.waiters[0] = nil
		q.waiters = q.waiters[1:]
		q.depth.Add(-1)
		w.ch <- b
	}
}
