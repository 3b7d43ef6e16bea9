package proxy_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
	"lbscale/balancer/proxy"
	"lbscale/internal/testenv"
)

// newH2Front serves the balancer's handler over TLS with HTTP/2 in front of
// one plain HTTP/1.1 backend, and returns a client that multiplexes its
// requests as streams over one HTTP/2 connection.
func newH2Front(t *testing.T, backendURL string, limit int64, queueMax int) (*pool.Backend, *proxy.Queue, *httptest.Server, *http.Client) {
	t.Helper()
	b := pool.New("b", strings.TrimPrefix(backendURL, "http://"), 1, limit)
	pol, err := policy.New(policy.NameLeastConnections, policy.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	q := proxy.NewQueue(queueMax, 10*time.Second, nil)
	front := httptest.NewUnstartedServer(proxy.New(proxy.Options{
		Sets: fixedSet{&pool.Set{Backends: []*pool.Backend{b}, Version: 1}}, Policy: pol,
		Queue: q, UpstreamTimeout: 10 * time.Second,
	}))
	front.EnableHTTP2 = true
	front.StartTLS()
	t.Cleanup(front.Close)
	c := front.Client()
	c.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	c.Timeout = 10 * time.Second
	return b, q, front, c
}

// HTTP/2 streams are requests like any other: ten concurrent streams on one
// connection in front of a backend limited to two never put more than two
// on it; the rest wait in the queue and are all served.
func TestHTTP2StreamsKeepTheLimit(t *testing.T) {
	var now, peak atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		defer now.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		if r.ProtoMajor != 1 {
			t.Errorf("backend got %s, want HTTP/1.1", r.Proto)
		}
		time.Sleep(50 * time.Millisecond)
	}))
	defer backend.Close()
	b, q, front, c := newH2Front(t, backend.URL, 2, 100)

	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			res, err := c.Get(front.URL)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK || res.ProtoMajor != 2 {
				t.Errorf("status %d over %s, want 200 over HTTP/2", res.StatusCode, res.Proto)
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > 2 {
		t.Fatalf("the backend saw %d requests at once, limit 2", p)
	}
	if b.Local() != 0 || q.Depth() != 0 {
		t.Fatalf("after every stream ended: %d slots held, %d queued", b.Local(), q.Depth())
	}
}

// A client that resets an HTTP/2 stream (cancels the request) gives back
// what the request held: its place in the queue while it waits, its slot
// while the backend works on it; the backend's request is cancelled too.
// The connection itself stays up: the next request reuses it.
func TestHTTP2ResetStreamReleasesItsSlot(t *testing.T) {
	var cancelled atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fast" {
			return
		}
		select {
		case <-r.Context().Done():
			cancelled.Add(1)
		case <-time.After(10 * time.Second):
		}
	}))
	defer backend.Close()
	b, q, front, c := newH2Front(t, backend.URL, 1, 10)

	// Open the connection first, so both slow requests are streams on it.
	do(t, c, front.URL+"/fast")

	send := func() (context.CancelFunc, chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, front.URL+"/slow", nil)
			res, err := c.Do(req)
			if err == nil {
				res.Body.Close()
			}
			done <- err
		}()
		return cancel, done
	}
	cancelInFlight, inFlightDone := send()
	testenv.Eventually(t, 5*time.Second, "the first request holds the slot", func() bool { return b.Local() == 1 })
	cancelQueued, queuedDone := send()
	testenv.Eventually(t, 5*time.Second, "the second request waits in the queue", func() bool { return q.Depth() == 1 })

	cancelQueued()
	if err := <-queuedDone; err == nil {
		t.Fatal("the cancelled request got an answer")
	}
	testenv.Eventually(t, 5*time.Second, "the reset stream leaves the queue", func() bool { return q.Depth() == 0 })
	if b.Local() != 1 {
		t.Fatalf("%d slots held, want the in-flight request's 1", b.Local())
	}

	cancelInFlight()
	if err := <-inFlightDone; err == nil {
		t.Fatal("the cancelled request got an answer")
	}
	testenv.Eventually(t, 5*time.Second, "the reset stream's slot comes back", func() bool { return b.Local() == 0 })
	testenv.Eventually(t, 5*time.Second, "the backend's request is cancelled", func() bool { return cancelled.Load() == 1 })

	if reused := do(t, c, front.URL+"/fast"); !reused {
		t.Error("the next request opened a new connection: the reset closed the connection, not just the stream")
	}
	if b.Local() != 0 || q.Depth() != 0 {
		t.Fatalf("%d slots held, %d queued after the last request", b.Local(), q.Depth())
	}
}

// do sends a GET that must get 200 over HTTP/2, and reports whether it
// went over a connection used before.
func do(t *testing.T, c *http.Client, url string) (reused bool) {
	t.Helper()
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url, nil)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.ProtoMajor != 2 || res.TLS == nil || res.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("status %d over %s, want 200 over HTTP/2 and TLS", res.StatusCode, res.Proto)
	}
	return reused
}
