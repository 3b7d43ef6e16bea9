package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
	"lbscale/balancer/proxy"
)

// What a client sends reaches the backend as it was meant, and what the
// backend answers reaches the client as it was sent: the request line,
// the forwarding headers by one rule, the request id, trailers, and an
// answer's missing Content-Type. Raw sockets on both sides, so that
// nothing a Go client or server would add or normalise hides a change.

// recorded is one request as the raw backend read it.
type recorded struct {
	line    string // the request line as sent
	header  http.Header
	body    string
	trailer http.Header
}

// recordingBackend answers every request with answer, and keeps what it read.
type recordingBackend struct {
	*rawServer
	mu  sync.Mutex // guards got
	got []recorded
}

func newRecordingBackend(t *testing.T, answer string) *recordingBackend {
	b := &recordingBackend{}
	b.rawServer = newRawServer(t, func(_ int, c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		eachRequest(c, func(_ int, line string, req *http.Request) bool {
			body, _ := io.ReadAll(req.Body)
			b.mu.Lock()
			b.got = append(b.got, recorded{line: line, header: req.Header, body: string(body), trailer: req.Trailer})
			b.mu.Unlock()
			_, err := io.WriteString(c, answer)
			return err == nil
		})
	})
	return b
}

func (b *recordingBackend) last(t *testing.T) recorded {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.got) == 0 {
		t.Fatal("no request reached the backend")
	}
	return b.got[len(b.got)-1]
}

// newFidelityFront is the request path in front of one backend, buffering
// bodies up to 64 KiB as the balancer does by default.
func newFidelityFront(t *testing.T, backend string, trust bool) string {
	set := &pool.Set{Backends: []*pool.Backend{pool.New("b", backend, 1, 64)}, Version: 1}
	pol, _ := policy.New("round-robin", policy.Options{Seed: 1})
	h := proxy.New(proxy.Options{
		Sets: fixedSet{set}, Policy: pol, Queue: proxy.NewQueue(64, 5*time.Second, nil),
		UpstreamTimeout: 5 * time.Second, BodyBuffer: 64 << 10, BodyTimeout: 5 * time.Second, TrustForwarded: trust,
	})
	front := httptest.NewUnstartedServer(h)
	front.Config.DisableGeneralOptionsHandler = true // as the balancer's server: OPTIONS * is the backend's
	front.Start()
	t.Cleanup(front.Close)
	return strings.TrimPrefix(front.URL, "http://")
}

// rawRequest sends raw bytes to addr and reads one answer.
func rawRequest(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("answer to %q: %v", raw, err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(body)
}

const plainOK = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

func TestAnswerWithoutContentTypeGetsNone(t *testing.T) {
	for _, tc := range []struct{ name, answer string }{
		{"html-looking body", "HTTP/1.1 200 OK\r\nContent-Length: 26\r\n\r\n<html><script>x</script>.."},
		{"chunked body", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n<html\r\n0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			front := newFidelityFront(t, newRecordingBackend(t, tc.answer).addr(), false)
			res, body := rawRequest(t, front, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
			if ct, ok := res.Header["Content-Type"]; ok || res.StatusCode != 200 || !strings.HasPrefix(body, "<html") {
				t.Errorf("status %d, Content-Type %q (present %v), body %q: want 200, no Content-Type, the body", res.StatusCode, ct, ok, body)
			}
		})
	}
	t.Run("a typed answer keeps its type", func(t *testing.T) {
		front := newFidelityFront(t, newRecordingBackend(t, plainOK).addr(), false)
		if res, _ := rawRequest(t, front, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"); res.Header.Get("Content-Type") != "text/plain" {
			t.Errorf("Content-Type %q, want text/plain", res.Header.Get("Content-Type"))
		}
	})
}

func TestRequestLineAsSent(t *testing.T) {
	backend := newRecordingBackend(t, plainOK)
	front := newFidelityFront(t, backend.addr(), false)
	for _, tc := range []struct{ sent, want string }{
		{"OPTIONS * HTTP/1.1", "OPTIONS * HTTP/1.1"},
		{"OPTIONS /x HTTP/1.1", "OPTIONS /x HTTP/1.1"},
		{"GET /a%2Fb?q=1 HTTP/1.1", "GET /a%2Fb?q=1 HTTP/1.1"},
		{"GET /* HTTP/1.1", "GET /* HTTP/1.1"},
	} {
		if res, _ := rawRequest(t, front, tc.sent+"\r\nHost: h\r\n\r\n"); res.StatusCode != 200 {
			t.Errorf("%q: status %d", tc.sent, res.StatusCode)
			continue
		}
		if got := backend.last(t).line; got != tc.want {
			t.Errorf("client sent %q, backend read %q, want %q", tc.sent, got, tc.want)
		}
	}
}

// TestForwardingHeaders: the four headers follow one rule (forward's doc
// comment, and TRUST_FORWARDED_FOR in docs/configuration.md).
func TestForwardingHeaders(t *testing.T) {
	const spoof = "Forwarded: for=6.6.6.6;proto=https\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n"
	for _, tc := range []struct {
		name    string
		trust   bool
		request string
		want    map[string]string // header -> value; "" means absent
	}{
		{"edge: a client's claims are replaced", false, "GET / HTTP/1.1\r\nHost: shop.example\r\n" + spoof + "\r\n", map[string]string{
			"Forwarded": "for=127.0.0.1;host=shop.example;proto=http", "X-Forwarded-For": "127.0.0.1",
			"X-Forwarded-Host": "shop.example", "X-Forwarded-Proto": "http",
		}},
		{"edge: none sent", false, "GET / HTTP/1.1\r\nHost: shop.example:8443\r\n\r\n", map[string]string{
			"Forwarded": `for=127.0.0.1;host="shop.example:8443";proto=http`, "X-Forwarded-For": "127.0.0.1",
			"X-Forwarded-Host": "shop.example:8443", "X-Forwarded-Proto": "http",
		}},
		{"edge: HTTP/1.0 without Host", false, "GET / HTTP/1.0\r\n\r\n", map[string]string{
			"Forwarded": "for=127.0.0.1;proto=http", "X-Forwarded-For": "127.0.0.1",
			"X-Forwarded-Host": "", "X-Forwarded-Proto": "http",
		}},
		{"trusted: the proxy's headers kept, this hop appended", true, "GET / HTTP/1.1\r\nHost: shop.example\r\n" + spoof + "\r\n", map[string]string{
			"Forwarded": "for=6.6.6.6;proto=https, for=127.0.0.1;host=shop.example;proto=http", "X-Forwarded-For": "6.6.6.6, 127.0.0.1",
			"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
		}},
		{"trusted: none sent", true, "GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n", map[string]string{
			"Forwarded": "for=127.0.0.1;host=shop.example;proto=http", "X-Forwarded-For": "127.0.0.1",
			"X-Forwarded-Host": "shop.example", "X-Forwarded-Proto": "http",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backend := newRecordingBackend(t, plainOK)
			front := newFidelityFront(t, backend.addr(), tc.trust)
			if res, _ := rawRequest(t, front, tc.request); res.StatusCode != 200 {
				t.Fatalf("status %d", res.StatusCode)
			}
			h := backend.last(t).header
			for name, want := range tc.want {
				got, present := h[name]
				switch {
				case want == "" && present:
					t.Errorf("%s: %q, want none", name, got)
				case want != "" && strings.Join(got, ", ") != want:
					t.Errorf("%s: %q, want %q", name, got, want)
				}
			}
		})
	}
}

func TestLongRequestIDReplaced(t *testing.T) {
	backend := newRecordingBackend(t, plainOK)
	front := newFidelityFront(t, backend.addr(), false)
	for _, tc := range []struct {
		id   string
		kept bool
	}{{strings.Repeat("a", 128), true}, {strings.Repeat("b", 129), false}, {strings.Repeat("c", 4000), false}} {
		res, _ := rawRequest(t, front, "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: "+tc.id+"\r\n\r\n")
		sent, answered := backend.last(t).header.Get("X-Request-Id"), res.Header.Get("X-Request-Id")
		if res.StatusCode != 200 || sent != answered || (sent == tc.id) != tc.kept || len(sent) > 128 || sent == "" {
			t.Errorf("id of %d bytes: status %d, backend saw %d bytes, client got %d bytes (same %v); want 200, kept %v",
				len(tc.id), res.StatusCode, len(sent), len(answered), sent == answered, tc.kept)
		}
	}
}

// TestRequestTrailers: a chunked body's trailers reach the backend, for a
// body read whole before a slot is taken and for one streamed after.
func TestRequestTrailers(t *testing.T) {
	backend := newRecordingBackend(t, plainOK)
	front := newFidelityFront(t, backend.addr(), false)
	for _, size := range []int{10, 100 << 10} {
		body := strings.Repeat("x", size)
		raw := "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n" +
			strconv.FormatInt(int64(size), 16) + "\r\n" + body + "\r\n0\r\nX-Checksum: abc123\r\n\r\n"
		if res, _ := rawRequest(t, front, raw); res.StatusCode != 200 {
			t.Fatalf("%d bytes: status %d", size, res.StatusCode)
		}
		got := backend.last(t)
		if len(got.body) != size || got.trailer.Get("X-Checksum") != "abc123" {
			t.Errorf("%d-byte chunked body: backend read %d bytes and trailers %v, want the trailer X-Checksum: abc123", size, len(got.body), got.trailer)
		}
	}
}
