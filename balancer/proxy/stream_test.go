package proxy_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
	"lbscale/balancer/proxy"
)

// A response of unknown length (server-sent events, long polls, chunked
// progress) must reach the client as the backend writes it, not when it
// ends: the backend here holds its second event until the client has read
// the first through the balancer.
func TestStreamingPassesThroughAtOnce(t *testing.T) {
	for _, ct := range []string{"text/event-stream", "text/plain"} {
		t.Run(ct, func(t *testing.T) {
			got1 := make(chan struct{})
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ct)
				_, _ = w.Write([]byte("data: one\n\n"))
				w.(http.Flusher).Flush()
				select {
				case <-got1:
				case <-time.After(5 * time.Second):
				case <-r.Context().Done():
				}
				_, _ = w.Write([]byte("data: two\n\n"))
			}))
			defer backend.Close()
			_, front := newFront(t, backend.URL, 4, time.Second, 5*time.Second)

			start := time.Now()
			res, err := http.Get(front.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			lines := make(chan string)
			go func() {
				sc := bufio.NewScanner(res.Body)
				for sc.Scan() {
					if sc.Text() != "" {
						lines <- sc.Text()
					}
				}
				close(lines)
			}()
			select {
			case l := <-lines:
				if l != "data: one" {
					t.Fatalf("first line %q", l)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("first event not delivered while the backend was still writing: the proxy buffers streams")
			}
			// The backend holds the rest for 5 s: a buffering proxy delivers
			// the first event (or even the headers) only then.
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("first event took %v: the proxy buffers streams", d)
			}
			close(got1)
			if l := <-lines; l != "data: two" {
				t.Fatalf("second line %q", l)
			}
		})
	}
}

// A response cut off mid-body makes ReverseProxy abort the handler with a
// panic (http.ErrAbortHandler); the backend's slot must come back anyway.
func TestSlotReleasedWhenBodyIsCutOff(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100000")
		_, _ = w.Write([]byte("only the start"))
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close() // the backend dies mid-body
		}
	}))
	defer backend.Close()
	b, front := newFront(t, backend.URL, 4, time.Second, 5*time.Second)
	for range 6 { // more than the limit of 4: a leak would show as a 503
		res, err := http.Get(front.URL)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for b.Local() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := b.Local(); n != 0 {
		t.Fatalf("%d slots still held after every request ended", n)
	}
}

// A retry never waits in the queue holding the failed slot: with the only
// backend timing out, the answer is a 504 at once, not after QUEUE_TIMEOUT
// spent blocking the slot that other requests need.
func TestRetryDoesNotQueueHoldingTheFailedSlot(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer backend.Close()
	b, front := newFront(t, backend.URL, 1, 5*time.Second, 200*time.Millisecond)
	start := time.Now()
	res, err := http.Get(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if d := time.Since(start); res.StatusCode != http.StatusGatewayTimeout || d > 2*time.Second {
		t.Fatalf("status %d after %v, want 504 soon after the 200ms upstream timeout", res.StatusCode, d)
	}
	if n := b.Local(); n != 0 {
		t.Fatalf("%d slots held after the request ended", n)
	}
}

// newFront serves a balancer handler over one backend at backendURL with the
// given in-flight limit, queue timeout and upstream timeout, for the test's
// lifetime.
func newFront(t *testing.T, backendURL string, limit int64, queueTimeout, upstream time.Duration) (*pool.Backend, *httptest.Server) {
	t.Helper()
	b := pool.New("b", strings.TrimPrefix(backendURL, "http://"), 1, limit)
	pol, err := policy.New(policy.NameLeastConnections, policy.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(proxy.New(proxy.Options{
		Sets: fixedSet{&pool.Set{Backends: []*pool.Backend{b}, Version: 1}}, Policy: pol,
		Queue: proxy.NewQueue(4, queueTimeout, nil), UpstreamTimeout: upstream,
	}))
	t.Cleanup(front.Close)
	return b, front
}
