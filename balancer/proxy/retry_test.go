package proxy_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
	"lbscale/balancer/proxy"
)

func TestRetryLimit(t *testing.T) {
	cases := []struct {
		active  int64
		percent float64
		floor   int64
		want    int64
	}{
		{0, 20, 3, 3},
		{9, 20, 3, 3},
		{100, 20, 3, 20},
		{1000, 20, 3, 200},
		{19, 20, 0, 3},
		{4, 20, 0, 0},
		{100, 0, 3, 3},
		{100, 0, 0, 0},
		{100, 12.5, 3, 12},
		{7, 100, 3, 7},
	}
	for _, tc := range cases {
		if got := proxy.RetryLimit(tc.active, tc.percent, tc.floor); got != tc.want {
			t.Errorf("RetryLimit(%d, %g%%, %d) = %d, want %d", tc.active, tc.percent, tc.floor, got, tc.want)
		}
	}
}

// refusingDialer refuses every connection, but holds the dials so that the
// 100 first attempts fail together (100 requests in flight when each
// decides whether to retry) and every retry stays in progress until all
// requests have decided: the number of retries is then what the budget
// allowed at its tightest, not an accident of scheduling.
type refusingDialer struct {
	first    int64
	arrived  sync.WaitGroup
	release  chan struct{} // closed when every first attempt is dialing
	decided  chan struct{} // closed when every request decided on a retry
	dials    atomic.Int64
	held     atomic.Int64 // retries dialing now
	peakHeld atomic.Int64
}

func (d *refusingDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.dials.Add(1) <= d.first {
		d.arrived.Done()
		select {
		case <-d.release:
		case <-ctx.Done():
		}
	} else {
		n := d.held.Add(1)
		for p := d.peakHeld.Load(); n > p; p = d.peakHeld.Load() {
			if d.peakHeld.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-d.decided:
		case <-ctx.Done():
		}
		d.held.Add(-1)
	}
	return nil, &net.OpError{Op: "dial", Net: network, Addr: nil, Err: syscall.ECONNREFUSED}
}

// TestRetryBudgetWhenEveryBackendRefuses: 100 concurrent GETs over two
// backends that refuse every connection. With the default budget (20% of
// the requests in flight, at least 3) at most 20 are retried; without a
// budget (100%) each one is, doubling the load on a pool that is down.
func TestRetryBudgetWhenEveryBackendRefuses(t *testing.T) {
	const requests = 100
	for _, tc := range []struct {
		percent           float64
		least, most, peak int64
	}{
		{percent: 20, least: 3, most: 20, peak: 20},
		{percent: 100, least: requests, most: requests, peak: requests},
	} {
		d := &refusingDialer{first: requests, release: make(chan struct{}), decided: make(chan struct{})}
		d.arrived.Add(requests)
		bs := []*pool.Backend{pool.New("a", "192.0.2.1:80", 1, 1000), pool.New("b", "192.0.2.2:80", 1, 1000)}
		pol, err := policy.New(policy.NameRoundRobin, policy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		budget := proxy.NewRetryBudget(tc.percent, 3)
		front := httptest.NewServer(proxy.New(proxy.Options{
			Sets: fixedSet{&pool.Set{Backends: bs, Version: 1}}, Policy: pol,
			Queue: proxy.NewQueue(1000, 5*time.Second, nil), UpstreamTimeout: 5 * time.Second,
			RetryBudget: budget, Transport: &http.Transport{DialContext: d.dial},
		}))

		codes := make(chan int, requests)
		client := &http.Client{Timeout: 10 * time.Second}
		for range requests {
			go func() {
				res, err := client.Get(front.URL)
				if err != nil {
					codes <- 0
					return
				}
				res.Body.Close()
				codes <- res.StatusCode
			}()
		}
		d.arrived.Wait()
		close(d.release)
		deadline := time.Now().Add(5 * time.Second)
		for {
			retried, refused := budget.Stats()
			if retried+refused == requests {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%g%%: only %d retried + %d refused of %d requests decided", tc.percent, retried, refused, requests)
			}
			time.Sleep(time.Millisecond)
		}
		close(d.decided)
		for range requests {
			// A backend that cannot be reached is a gateway failure: 502
			// (docs/architecture.md, honest errors), retried or not.
			if c := <-codes; c != http.StatusBadGateway {
				t.Errorf("%g%%: status %d, want 502", tc.percent, c)
			}
		}
		front.Close()

		retried, refused := budget.Stats()
		t.Logf("budget %g%%: %d requests, %d retried (at most %d at once), %d refused; %d connection attempts",
			tc.percent, requests, retried, d.peakHeld.Load(), refused, d.dials.Load())
		if int64(retried) < tc.least || int64(retried) > tc.most || d.peakHeld.Load() > tc.peak {
			t.Errorf("%g%%: %d retries (peak %d at once), want %d to %d (peak at most %d)",
				tc.percent, retried, d.peakHeld.Load(), tc.least, tc.most, tc.peak)
		}
		if d.dials.Load() != requests+int64(retried) {
			t.Errorf("%g%%: %d connection attempts for %d requests and %d retries", tc.percent, d.dials.Load(), requests, retried)
		}
	}
}

// TestRetryWaitsForABusyBackend: a backend dies under a GET while the
// only other backend's slot is taken. The retry waits in line for that
// slot, as a new request would, instead of answering 502: one dead backend
// in a busy pool loses no idempotent request.
func TestRetryWaitsForABusyBackend(t *testing.T) {
	dead := newRawServer(t, func(_ int, c net.Conn) {
		_, _ = c.Read(make([]byte, 4096)) // the request, then a reset
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	})
	held := make(chan struct{}, 1)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	var served atomic.Int64
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if served.Add(1) == 1 {
			held <- struct{}{}
			<-release
		}
		_, _ = w.Write([]byte("ok"))
	}))
	defer busy.Close()
	defer unblock() // before busy.Close, which waits for the held request
	bs := []*pool.Backend{
		pool.New("dead", dead.ln.Addr().String(), 1, 1),
		pool.New("busy", busy.Listener.Addr().String(), 1, 1),
	}
	pol, err := policy.New(policy.NameRoundRobin, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	queue := proxy.NewQueue(100, 10*time.Second, nil)
	front := httptest.NewServer(proxy.New(proxy.Options{
		Sets: fixedSet{&pool.Set{Backends: bs, Version: 1}}, Policy: pol, Queue: queue,
		UpstreamTimeout: 5 * time.Second, RetryBudget: proxy.NewRetryBudget(20, 3),
	}))
	defer front.Close()

	get := func() chan int {
		ch := make(chan int, 1)
		go func() {
			res, err := http.Get(front.URL)
			if err != nil {
				ch <- 0
				return
			}
			res.Body.Close()
			ch <- res.StatusCode
		}()
		return ch
	}
	first := get() // on busy, directly or after dead reset it; held there
	<-held
	second := get() // busy is full: dead takes it, resets, and the retry waits
	deadline := time.Now().Add(5 * time.Second)
	for queue.Depth() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the retry is not waiting in line (depth %d)", queue.Depth())
		}
		time.Sleep(time.Millisecond)
	}
	unblock()
	if a, b := <-first, <-second; a != 200 || b != 200 {
		t.Fatalf("statuses %d and %d, want both 200 (the second retried on the busy backend once its slot freed)", a, b)
	}
}
