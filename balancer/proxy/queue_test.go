package proxy

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"lbscale/balancer/pool"
)

func TestQueueFIFOAndHandOff(t *testing.T) {
	b := pool.New("w", "x:1", 1, 1)
	try := PickFunc(func() *pool.Backend {
		if b.TryAcquire() {
			return b
		}
		return nil
	})
	var demand atomic.Int32 // the queue signals demand outside its lock
	q := NewQueue(10, 5*time.Second, func() { demand.Add(1) })
	first, waited, err := q.Acquire(context.Background(), try)
	if err != nil || waited || first != b {
		t.Fatalf("free slot: %v %v %v", first, waited, err)
	}
	order := make(chan int, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, waited, err := q.Acquire(context.Background(), try)
			if err != nil || !waited || got != b {
				t.Errorf("waiter %d: %v %v %v", i, got, waited, err)
				return
			}
			order <- i
			b.Release()
			q.Dispatch()
		}()
		// Enqueue in a known order.
		for q.Depth() != int64(i+1) {
			time.Sleep(time.Millisecond)
		}
	}
	b.Release()
	q.Dispatch()
	wg.Wait()
	close(order)
	want := 0
	for i := range order {
		if i != want {
			t.Fatalf("served waiter %d, want %d (FIFO)", i, want)
		}
		want++
	}
	if demand.Load() != 3 {
		t.Fatalf("demand signalled %d times, want once per queued request", demand.Load())
	}
}

func TestQueueLimits(t *testing.T) {
	none := PickFunc(func() *pool.Backend { return nil })
	q := NewQueue(1, 50*time.Millisecond, nil)
	start := time.Now()
	done := make(chan error)
	go func() { _, _, err := q.Acquire(context.Background(), none); done <- err }()
	for q.Depth() != 1 {
		time.Sleep(time.Millisecond)
	}
	if _, _, err := q.Acquire(context.Background(), none); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("second waiter in a queue of 1: %v", err)
	}
	if err := <-done; !errors.Is(err, ErrQueueTimeout) || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("want timeout after 50ms: %v", err)
	}
	if q.Depth() != 0 {
		t.Fatalf("timed-out waiter left in the queue")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := q.Acquire(ctx, none); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled client: %v", err)
	}
}

// A slot released between a request's last failed try and its entry into the
// queue must still reach it. The try below fails, then frees the slot and
// runs Dispatch from another goroutine before returning: the moment the
// request is between "no slot" and "waiting".
func TestQueueNoLostWakeup(t *testing.T) {
	b := pool.New("w", "x:1", 1, 1)
	if !b.TryAcquire() {
		t.Fatal("setup: slot")
	}
	q := NewQueue(10, time.Second, nil)
	calls := 0
	try := PickFunc(func() *pool.Backend {
		calls++
		if b.TryAcquire() {
			return b
		}
		if calls == 2 { // the try under the queue's lock
			done := make(chan struct{})
			go func() { b.Release(); q.Dispatch(); close(done) }()
			select {
			case <-done: // Dispatch saw no waiter and left
			case <-time.After(50 * time.Millisecond): // Dispatch waits for the lock
			}
		}
		return nil
	})
	start := time.Now()
	got, _, err := q.Acquire(context.Background(), try)
	if err != nil || got != b {
		t.Fatalf("after %v: %v %v; the released slot was lost", time.Since(start), got, err)
	}
}

// AcquireIf fails at once with ErrNoBackend when no slot may come, and
// waits as Acquire does when one may.
func TestAcquireIfNothingComing(t *testing.T) {
	none := PickFunc(func() *pool.Backend { return nil })
	q := NewQueue(10, time.Second, nil)
	start := time.Now()
	_, waited, err := q.AcquireIf(context.Background(), none, func() bool { return false })
	if !errors.Is(err, ErrNoBackend) || waited || time.Since(start) > 100*time.Millisecond || q.Depth() != 0 {
		t.Fatalf("nothing coming: %v waited %v after %v, depth %d", err, waited, time.Since(start), q.Depth())
	}
	q = NewQueue(10, 50*time.Millisecond, nil)
	_, waited, err = q.AcquireIf(context.Background(), none, func() bool { return true })
	if !errors.Is(err, ErrQueueTimeout) || !waited {
		t.Fatalf("capacity may come: %v waited %v, want a wait until QUEUE_TIMEOUT", err, waited)
	}
}

// roomPicker takes b's slot only while room is set: a long-lived
// connection request waiting for MAX_CONNECTIONS room.
type roomPicker struct {
	b    *pool.Backend
	room *atomic.Bool
}

func (p roomPicker) Pick() *pool.Backend {
	if p.room.Load() && p.b.TryAcquire() {
		return p.b
	}
	return nil
}

func (roomPicker) WaitsForRoom() bool { return true }

// A waiter for room does not hold the line: requests queued behind it, and
// newcomers, take the slots it cannot use; it gets a slot once room comes.
func TestQueueRoomWaiterDoesNotHoldTheLine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := pool.New("w", "x:1", 1, 1)
		plain := PickFunc(func() *pool.Backend {
			if b.TryAcquire() {
				return b
			}
			return nil
		})
		q := NewQueue(10, 5*time.Second, nil)
		if got, _, _ := q.Acquire(context.Background(), plain); got != b {
			t.Fatal("the only slot was not free")
		}
		var room atomic.Bool
		conn := make(chan *pool.Backend, 1)
		go func() { got, _, _ := q.Acquire(context.Background(), roomPicker{b, &room}); conn <- got }()
		synctest.Wait()
		behind := make(chan *pool.Backend, 1)
		go func() { got, _, _ := q.Acquire(context.Background(), plain); behind <- got }()
		synctest.Wait()
		if q.Depth() != 2 {
			t.Fatalf("depth %d, want the connection and the request behind it", q.Depth())
		}

		b.Release()
		q.Dispatch()
		synctest.Wait()
		select {
		case got := <-behind:
			if got != b {
				t.Fatal("the request behind got no backend")
			}
		default:
			t.Fatal("the request behind the connection waiter was not served from the free slot")
		}

		// Only the room waiter is queued: a newcomer takes a free slot at once.
		b.Release()
		q.Dispatch()
		got, waited, err := q.Acquire(context.Background(), plain)
		if got != b || waited || err != nil {
			t.Fatalf("newcomer beside a room waiter: %v waited %v %v; want the slot at once", got, waited, err)
		}

		room.Store(true)
		b.Release()
		q.Dispatch()
		synctest.Wait()
		if got := <-conn; got != b || q.Depth() != 0 {
			t.Fatalf("room waiter got %v (depth %d) once room came", got, q.Depth())
		}
	})
}
