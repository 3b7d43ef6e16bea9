package proxy_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
	"lbscale/balancer/proxy"
)

// A backend that breaks HTTP/1.1's framing must never make one client's
// answer reach another: bytes after the end of a response are not the
// next request's answer. These tests send requests that each carry a
// marker (?id=), through the balancer's whole request path, to a raw
// backend that misbehaves on purpose, and check that every answer a
// client gets carries its own request's marker.

// injected is a complete response a rogue backend slips in after a real
// one: whoever reads it as the answer to their own request got the wrong
// answer.
const injected = "HTTP/1.1 200 OK\r\nX-Injected: yes\r\nX-Marker: injected\r\nContent-Length: 7\r\n\r\nPWNED!!"

// okFor is a well-formed answer to the request marked id.
func okFor(id string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Marker: %s\r\nContent-Length: %d\r\n\r\n%s", id, len(id), id)
}

// misbehaviour is one way a backend breaks the framing of its answer.
type misbehaviour struct {
	name   string
	method string // of the request that triggers it
	status int    // the status the triggering client must see
	answer func(id string) string
}

var misbehaviours = []misbehaviour{
	{"body after HEAD", http.MethodHead, 200, func(id string) string {
		return "HTTP/1.1 200 OK\r\nX-Marker: " + id + "\r\nContent-Length: 77\r\n\r\n" + injected
	}},
	{"body after 204", http.MethodGet, 204, func(id string) string {
		return "HTTP/1.1 204 No Content\r\nX-Marker: " + id + "\r\n\r\n" + injected
	}},
	{"body after 304", http.MethodGet, 304, func(id string) string {
		return "HTTP/1.1 304 Not Modified\r\nX-Marker: " + id + "\r\n\r\n" + injected
	}},
	{"more bytes than Content-Length", http.MethodGet, 200, func(id string) string { return okFor(id) + injected }},
	{"a second answer nobody asked for", http.MethodGet, 200, func(id string) string { return okFor(id) + okFor("stray") }},
	{"bytes after the last chunk", http.MethodGet, 200, func(id string) string {
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Marker: %s\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", id, len(id), id) + injected
	}},
	{"body after 204, request with a body", http.MethodPost, 204, func(id string) string {
		return "HTTP/1.1 204 No Content\r\nX-Marker: " + id + "\r\n\r\n" + injected
	}},
	{"more bytes than Content-Length, request with a body", http.MethodPost, 200, func(id string) string { return okFor(id) + injected }},
	{"a second answer, request with a body", http.MethodPost, 200, func(id string) string { return okFor(id) + okFor("stray") }},
	{"a body on a 1xx answer", http.MethodGet, http.StatusBadGateway, func(id string) string {
		return "HTTP/1.1 103 Early Hints\r\nContent-Length: 7\r\n\r\nPWNED!!" + okFor(id)
	}},
}

// rogue is a backend on a raw TCP listener. Each request's ?m= names the
// misbehaviour (an index into misbehaviours) its answer has; without it
// the answer is okFor its ?id=. Every answer is one write, so the stray
// bytes reach the balancer's socket with the answer. A request with
// ?late=1 is answered well, and the injected answer follows once the
// test closes late.
type rogue struct {
	*rawServer
	late  chan struct{} // closed by the test: write the late stray answer
	wrote chan struct{} // closed by the backend once it has
}

func newRogue(t testing.TB) *rogue {
	r := &rogue{late: make(chan struct{}), wrote: make(chan struct{})}
	r.rawServer = newRawServer(t, func(_ int, c net.Conn) {
		eachRequest(c, func(_ int, _ string, req *http.Request) bool { return r.answer(c, req) })
	})
	return r
}

// answer writes the answer req asks for; false ends the connection.
func (r *rogue) answer(c net.Conn, req *http.Request) bool {
	q := req.URL.Query()
	id := q.Get("id")
	answer := okFor(id)
	if m := q.Get("m"); m != "" {
		var i int
		fmt.Sscan(m, &i)
		answer = misbehaviours[i].answer(id)
	}
	if _, err := io.WriteString(c, answer); err != nil {
		return false
	}
	if q.Get("late") != "" {
		<-r.late
		_, _ = io.WriteString(c, injected)
		close(r.wrote)
	}
	return true
}

// newDesyncFront is the balancer's request path as the balancer builds it
// (its default transport) in front of one backend.
func newDesyncFront(t testing.TB, backend string) *httptest.Server {
	set := &pool.Set{Backends: []*pool.Backend{pool.New("rogue", backend, 1, 1024)}, Version: 1}
	pol, _ := policy.New("least-connections", policy.Options{Seed: 1})
	h := proxy.New(proxy.Options{
		Sets: fixedSet{set}, Policy: pol, Queue: proxy.NewQueue(1024, 5*time.Second, nil),
		UpstreamTimeout: 5 * time.Second, MaxIdlePerHost: 64, BodyBuffer: 64 << 10, BodyTimeout: 5 * time.Second,
	})
	front := httptest.NewServer(h)
	t.Cleanup(front.Close)
	return front
}

// answer is what a client got for its request.
type answer struct {
	status int
	marker string
	body   string
	inject bool
	err    error
}

// send makes one request on a new client connection and reads the answer.
func send(c *http.Client, method, url string) answer {
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("payload")
	}
	req, _ := http.NewRequest(method, url, body)
	res, err := c.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return answer{status: res.StatusCode, marker: res.Header.Get("X-Marker"), body: string(b),
		inject: res.Header.Get("X-Injected") != "", err: err}
}

// wrong tells what is wrong with a, the answer to the request marked id
// that should have status want; "" if nothing. A 502 is allowed only where
// wanted: the balancer must not trade a wrong answer for a failure of the
// next client's request either.
func (a answer) wrong(id string, want int) string {
	switch {
	case a.err != nil:
		return "error: " + a.err.Error()
	case a.inject:
		return "got the injected answer"
	case a.status != want:
		return fmt.Sprintf("status %d, want %d", a.status, want)
	case want == http.StatusBadGateway:
		return ""
	case a.marker != id:
		return fmt.Sprintf("marker %q, want %q", a.marker, id)
	case want == 200 && a.body != id && a.body != "":
		return fmt.Sprintf("body %q, want %q", a.body, id)
	}
	return ""
}

// TestNoAnswerReachesTheWrongClient interleaves requests that make the
// backend misbehave, in every way listed, with well-behaved requests on
// both round-trip paths (GET without a body, written on the handler's
// goroutine; POST with one, written by a goroutine of its own), from many
// clients at once, each on a new connection, and checks every answer's
// marker: 0 wrong of 1,000, and no well-formed request failed.
func TestNoAnswerReachesTheWrongClient(t *testing.T) {
	backend := newRogue(t)
	front := newDesyncFront(t, backend.addr())
	const total, workers = 1000, 16
	var next atomic.Int64
	var mu sync.Mutex
	wrong := map[string]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				n := next.Add(1)
				if n > total {
					return
				}
				id := fmt.Sprintf("r%d", n)
				kind, method, want, query := "GET", http.MethodGet, 200, "?id="+id
				if n%2 == 0 { // every other request makes the backend misbehave
					i := rng.IntN(len(misbehaviours))
					m := misbehaviours[i]
					kind, method, want = m.name, m.method, m.status
					query += fmt.Sprintf("&m=%d", i)
				} else if rng.IntN(2) == 0 {
					kind, method = "POST", http.MethodPost
				}
				if why := send(c, method, front.URL+"/x"+query).wrong(id, want); why != "" {
					mu.Lock()
					if wrong[kind] < 3 {
						t.Errorf("%s %s (%s): %s", method, id, kind, why)
					}
					wrong[kind]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	n := 0
	for _, k := range wrong {
		n += k
	}
	t.Logf("%d wrong answers or failed well-formed requests of %d (%v); %d backend connections", n, total, wrong, backend.conns.Load())
}

// TestLateStrayAnswerIsNotTheNextOne: a backend answers, the connection
// goes back to the pool, and only then does the backend send an answer
// nobody asked for. The next request on that path must not get it, however
// soon it comes after the first (before, a connection idle under a second
// was reused unchecked).
func TestLateStrayAnswerIsNotTheNextOne(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			backend := newRogue(t)
			front := newDesyncFront(t, backend.addr())
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
			if why := send(c, method, front.URL+"/x?id=first&late=1").wrong("first", 200); why != "" {
				t.Fatalf("first request: %s", why)
			}
			close(backend.late)
			<-backend.wrote
			for i := range 3 {
				id := fmt.Sprintf("next%d", i)
				if why := send(c, method, front.URL+"/x?id="+id).wrong(id, 200); why != "" {
					t.Errorf("request %d after the stray answer: %s", i, why)
				}
			}
		})
	}
}

// FuzzStrayBytes: a backend answers a first request well, then sends
// whatever bytes the fuzzer chose in the same write. The property: the
// next request on the transport gets its own answer or an error, never
// bytes the backend sent before it was asked (which is all the fuzzer's
// bytes can be). method picks the first request's method: GET, POST
// (with a body) or HEAD; the next one has the same.
func FuzzStrayBytes(f *testing.F) {
	for _, seed := range []string{injected, "HTTP/1.1 200 OK\r\nX-Marker: next\r\nContent-Length: 4\r\n\r\nnext", "\r\n", "x",
		"HTTP/1.1 100 Continue\r\n\r\n", "0\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\n"} {
		for m := range byte(3) {
			f.Add([]byte(seed), m)
		}
	}
	var mu sync.Mutex
	var stray []byte
	srv := newRawServer(f, func(_ int, c net.Conn) {
		eachRequest(c, func(_ int, _ string, req *http.Request) bool {
			id := req.URL.Query().Get("id")
			answer := []byte(okFor(id))
			if req.Method == http.MethodHead {
				answer = []byte("HTTP/1.1 200 OK\r\nX-Marker: " + id + "\r\nContent-Length: 4\r\n\r\n")
			}
			if id == "first" {
				mu.Lock()
				answer = append(answer, stray...)
				mu.Unlock()
			}
			_, err := c.Write(answer)
			return err == nil
		})
	})
	url := srv.url()
	var n atomic.Int64
	f.Fuzz(func(t *testing.T, extra []byte, m byte) {
		mu.Lock()
		stray = extra
		mu.Unlock()
		method := []string{http.MethodGet, http.MethodPost, http.MethodHead}[m%3]
		tr, _ := newTransport(2 * time.Second)
		defer tr.CloseIdleConnections()
		roundTrip := func(id string) (marker string, body string, err error) {
			var rb io.Reader
			if method == http.MethodPost {
				rb = strings.NewReader("payload")
			}
			req, _ := http.NewRequest(method, url+"?id="+id, rb)
			res, err := tr.RoundTrip(req)
			if err != nil {
				return "", "", err
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			return res.Header.Get("X-Marker"), string(b), err
		}
		if marker, _, err := roundTrip("first"); err != nil || marker != "first" {
			t.Fatalf("first answer: marker %q, %v", marker, err)
		}
		id := fmt.Sprintf("v%d", n.Add(1))
		marker, body, err := roundTrip(id)
		if err != nil {
			return // an error is allowed; a wrong answer is not
		}
		if marker != id || method != http.MethodHead && body != id {
			t.Fatalf("%s after %q: got marker %q body %q, want %q", method, extra, marker, body, id)
		}
	})
}
