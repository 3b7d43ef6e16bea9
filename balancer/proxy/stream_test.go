package proxy_test

import (
	"bufio"
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
			set := &pool.Set{Backends: []*pool.Backend{pool.New("b", strings.TrimPrefix(backend.URL, "http://"), 1, 4)}, Version: 1}
			pol, _ := policy.New(policy.NameLeastConnections, policy.Options{Seed: 1})
			front := httptest.NewServer(proxy.New(proxy.Options{Sets: fixedSet{set}, Policy: pol, Queue: proxy.NewQueue(4, time.Second, nil), UpstreamTimeout: 5 * time.Second}))
			defer front.Close()

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
