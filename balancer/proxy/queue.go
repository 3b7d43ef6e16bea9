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
//
// A waiter whose Picker waits for room of another kind (a RoomPicker: a
// long-lived connection waits for MAX_CONNECTIONS room as well as a slot)
// does not hold the line: while it finds no room, the requests behind it
// are served from the free slots, which it could not use anyway. Otherwise
// one WebSocket waiting for room would stall every request for up to
// QUEUE_TIMEOUT.
type Queue struct {
	max     int
	timeout time.Duration
	// demand is called when a request starts waiting: the balancer syncs at
	// once so the other balancers and the scaler learn of it.
	demand func()

	mu      sync.Mutex
	waiters []*waiter
	holding int // waiters that hold the line (not RoomPickers)
	depth   atomic.Int64
}

type waiter struct {
	ch  chan *pool.Backend
	try Picker
	// room: try is a RoomPicker that waits for room; it does not hold
	// back the waiters behind it.
	room bool
}

// Picker takes a free backend slot for one request, or returns nil when
// none is free. An interface rather than a func so that the request path
// passes its per-request state as it is, without a closure to allocate.
type Picker interface{ Pick() *pool.Backend }

// RoomPicker is a Picker that may find no backend for want of room other
// than a request slot. While WaitsForRoom is true, its waiter does not hold
// back the ones behind it (see Queue).
type RoomPicker interface {
	Picker
	WaitsForRoom() bool
}

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
	if q.holding == 0 {
		// Checked again under the lock: a slot freed since the first try
		// would otherwise be missed, as Dispatch found no waiter to give it to.
		// Waiters for room only do not hold the line: the newcomer may
		// take a slot they cannot use.
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
	if rp, ok := try.(RoomPicker); ok && rp.WaitsForRoom() {
		w.room = true
	} else {
		q.holding++
	}
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
			q.remove(i)
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
	for i := 0; i < len(q.waiters); {
		w := q.waiters[i]
		b := w.try.Pick()
		if b == nil {
			if !w.room {
				return
			}
			i++ // it waits for room, not a slot: the next may use the slot
			continue
		}
		q.remove(i)
		w.ch <- b
	}
}

// remove takes the i-th waiter out of line; q.mu is held.
func (q *Queue) remove(i int) {
	w := q.waiters[i]
	if i == 0 {
		q.waiters[0] = nil
		q.waiters = q.waiters[1:]
	} else {
		n := len(q.waiters) - 1
		copy(q.waiters[i:], q.waiters[i+1:])
		q.waiters[n] = nil
		q.waiters = q.waiters[:n]
	}
	if !w.room {
		q.holding--
	}
	q.depth.Add(-1)
}
