package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"lbscale/balancer/proxy"
)

// countingFallback counts what the lean path hands over.
type countingFallback struct {
	n  atomic.Int32
	rt http.RoundTripper
}

func (c *countingFallback) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}

func newTransport(timeout time.Duration) (*proxy.Transport, *countingFallback) {
	fb := &countingFallback{rt: &http.Transport{DisableCompression: true}}
	d := &net.Dialer{Timeout: 2 * time.Second}
	return &proxy.Transport{Fallback: fb, Dial: d.DialContext, ResponseHeaderTimeout: timeout, MaxIdlePerHost: 4, IdleTimeout: time.Minute}, fb
}

func get(t *testing.T, tr http.RoundTripper, method, url string, body io.Reader) (*http.Response, string, error) {
	t.Helper()
	req, _ := http.NewRequest(method, url, body)
	res, err := tr.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b), err
}

// newScripted is a backend that answers each request with what answer
// returns for the n-th request on connection conn, and closes after the
// answer when hangUp says so. An empty answer hangs (reads on, never
// answers); closeNow closes at once.
func newScripted(t testing.TB, answer func(conn, n int, req *http.Request) (resp string, hangUp bool)) *rawServer {
	return newRawServer(t, func(id int, c net.Conn) {
		eachRequest(c, func(n int, _ string, req *http.Request) bool {
			resp, hangUp := answer(id, n, req)
			switch resp {
			case "": // hang: never answer
				_, _ = io.Copy(io.Discard, c)
				return false
			case closeNow:
				return false
			}
			_, err := io.WriteString(c, resp)
			return err == nil && !hangUp
		})
	})
}

// closeNow, as an answer, closes the connection without one.
const closeNow = "close"

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

func TestTransport(t *testing.T) {
	t.Run("keep-alive reuse", func(t *testing.T) {
		srv := newScripted(t, func(int, int, *http.Request) (string, bool) { return okAnswer, false })
		tr, fb := newTransport(0)
		defer tr.CloseIdleConnections()
		for i := range 20 {
			if _, body, err := get(t, tr, http.MethodGet, srv.url(), nil); err != nil || body != "ok" {
				t.Fatalf("request %d: %q %v", i, body, err)
			}
		}
		if n := srv.conns.Load(); n != 1 || fb.n.Load() != 0 {
			t.Errorf("20 GETs took %d connections and %d fallbacks, want 1 and 0", n, fb.n.Load())
		}
	})

	t.Run("chunked answer read whole, connection reused", func(t *testing.T) {
		srv := newScripted(t, func(int, int, *http.Request) (string, bool) {
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", false
		})
		tr, _ := newTransport(0)
		defer tr.CloseIdleConnections()
		for range 3 {
			if _, body, err := get(t, tr, http.MethodGet, srv.url(), nil); err != nil || body != "abcde" {
				t.Fatalf("%q %v", body, err)
			}
		}
		if n := srv.conns.Load(); n != 1 {
			t.Errorf("%d connections, want 1", n)
		}
	})

	t.Run("Connection: close is honoured", func(t *testing.T) {
		srv := newScripted(t, func(int, int, *http.Request) (string, bool) {
			return "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", true
		})
		tr, _ := newTransport(0)
		defer tr.CloseIdleConnections()
		for range 3 {
			if _, body, err := get(t, tr, http.MethodGet, srv.url(), nil); err != nil || body != "ok" {
				t.Fatalf("%q %v", body, err)
			}
		}
		if n := srv.conns.Load(); n != 3 {
			t.Errorf("%d connections, want 3", n)
		}
	})

	t.Run("a kept-alive connection the backend closed is found before it is used", func(t *testing.T) {
		// Each connection answers once, then closes without saying so.
		srv := newScripted(t, func(int, int, *http.Request) (string, bool) { return okAnswer, true })
		tr, _ := newTransport(0)
		defer tr.CloseIdleConnections()
		for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPost} {
			time.Sleep(50 * time.Millisecond) // let the close arrive
			if _, body, err := get(t, tr, method, srv.url(), nil); err != nil || body != "ok" {
				t.Fatalf("%s after the backend closed the idle connection: %q %v", method, body, err)
			}
		}
		if n := srv.conns.Load(); n != 3 {
			t.Errorf("%d connections for 3 requests, want 3 (each sent once, on a new one)", n)
		}
	})

	t.Run("a connection that dies under a request: GET sent again, POST not", func(t *testing.T) {
		// The second request on each connection is read, then the
		// connection closes without an answer: the request may have been
		// acted on, so only an idempotent one goes again.
		srv := newScripted(t, func(_, n int, _ *http.Request) (string, bool) {
			if n == 2 {
				return closeNow, true
			}
			return okAnswer, false
		})
		tr, _ := newTransport(0)
		defer tr.CloseIdleConnections()
		for _, tc := range []struct {
			method string
			sent   bool
		}{{http.MethodGet, true}, {http.MethodPost, false}} {
			tr.CloseIdleConnections()
			if _, _, err := get(t, tr, http.MethodGet, srv.url(), nil); err != nil {
				t.Fatal(err)
			}
			_, body, err := get(t, tr, tc.method, srv.url(), nil)
			if tc.sent && (err != nil || body != "ok") {
				t.Errorf("%s on a connection that died: %q %v, want a retry on a new one", tc.method, body, err)
			}
			if !tc.sent && err == nil {
				t.Errorf("%s on a connection that died succeeded: it must not be sent twice", tc.method)
			}
		}
	})

	t.Run("a backend that closed every idle connection: each GET still served", func(t *testing.T) {
		// The backend answers once per connection, then closes it without
		// saying so: as a restarted backend, or a new one on the old one's
		// address, leaves every kept-alive connection dead.
		srv := newScripted(t, func(int, int, *http.Request) (string, bool) { return okAnswer, true })
		tr, _ := newTransport(0)
		defer tr.CloseIdleConnections()
		var res []*http.Response
		for range 3 { // three connections at once, then all idle
			req, _ := http.NewRequest(http.MethodGet, srv.url(), nil)
			r, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			res = append(res, r)
		}
		for _, r := range res {
			_, _ = io.ReadAll(r.Body)
			r.Body.Close()
		}
		time.Sleep(50 * time.Millisecond) // let the closes arrive
		for i := range 3 {
			if _, body, err := get(t, tr, http.MethodGet, srv.url(), nil); err != nil || body != "ok" {
				t.Fatalf("GET %d after the backend closed its connections: %q %v", i, body, err)
			}
		}
	})

	t.Run("requests with a body on the transport's own path, upgrades and Expect on the fallback", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			_, _ = w.Write(b)
		}))
		defer srv.Close()
		tr, fb := newTransport(0)
		defer tr.CloseIdleConnections()
		for range 3 {
			if _, body, err := get(t, tr, http.MethodPost, srv.URL, strings.NewReader("hello")); err != nil || body != "hello" {
				t.Fatalf("POST: %q %v", body, err)
			}
		}
		for _, h := range []string{"Expect", "Upgrade"} {
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			req.Header.Set(h, map[string]string{"Expect": "100-continue", "Upgrade": "websocket"}[h])
			if res, err := tr.RoundTrip(req); err != nil {
				t.Fatal(err)
			} else {
				res.Body.Close()
			}
		}
		if n := fb.n.Load(); n != 2 {
			t.Errorf("%d fallbacks, want 2 (the upgrade and the Expect)", n)
		}
	})

	t.Run("a chunked body and its trailers", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			_, _ = w.Write([]byte(string(b) + "|" + r.Trailer.Get("X-Sum")))
		}))
		defer srv.Close()
		tr, _ := newTransport(0)
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodPost, srv.URL, io.MultiReader(strings.NewReader("ab"), strings.NewReader("cd")))
		req.ContentLength = -1
		req.Trailer = http.Header{"X-Sum": {"42"}}
		res, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != "abcd|42" {
			t.Errorf("backend read %q, want the body and its trailer %q", b, "abcd|42")
		}
	})

	t.Run("an answer before the whole body was read closes the connection", func(t *testing.T) {
		// The backend answers 413 after the headers and reads nothing
		// more: the write of a large body cannot finish, and the
		// connection, whose framing is lost, must not be reused.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		var conns atomic.Int32
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				conns.Add(1)
				go func() {
					br := bufio.NewReader(c)
					if _, err := http.ReadRequest(br); err != nil {
						c.Close()
						return
					}
					_, _ = io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\n\r\nbig")
					time.Sleep(time.Second) // reads nothing more, then leaves
					c.Close()
				}()
			}
		}()
		tr, _ := newTransport(0)
		defer tr.CloseIdleConnections()
		url := "http://" + ln.Addr().String() + "/"
		for i := range 2 {
			res, body, err := get(t, tr, http.MethodPost, url, strings.NewReader(strings.Repeat("x", 8<<20)))
			if err != nil || res.StatusCode != 413 || body != "big" {
				t.Fatalf("POST %d: %v %q %v, want the early 413", i, res, body, err)
			}
		}
		if n := conns.Load(); n != 2 {
			t.Errorf("%d connections for 2 requests, want 2", n)
		}
	})

	t.Run("response header timeout", func(t *testing.T) {
		srv := newScripted(t, func(int, int, *http.Request) (string, bool) { return "", false })
		tr, _ := newTransport(100 * time.Millisecond)
		defer tr.CloseIdleConnections()
		_, _, err := get(t, tr, http.MethodGet, srv.url(), nil)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("hung backend: %v, want a timeout", err)
		}
	})

	t.Run("with a body, the header timeout counts from the body's end", func(t *testing.T) {
		// A body sent over 300 ms to a backend that answers at once after
		// it: a 100 ms timeout from the start of the write would cut it.
		srv := newScripted(t, func(int, int, *http.Request) (string, bool) { return okAnswer, false })
		tr, _ := newTransport(100 * time.Millisecond)
		defer tr.CloseIdleConnections()
		pr, pw := io.Pipe()
		go func() {
			for range 3 {
				time.Sleep(100 * time.Millisecond)
				_, _ = pw.Write([]byte("x"))
			}
			pw.Close()
		}()
		if _, body, err := get(t, tr, http.MethodPost, srv.url(), pr); err != nil || body != "ok" {
			t.Fatalf("slow body: %q %v", body, err)
		}
		// A backend that reads the body and never answers times out.
		hung := newScripted(t, func(int, int, *http.Request) (string, bool) { return "", false })
		_, _, err := get(t, tr, http.MethodPost, hung.url(), strings.NewReader("body"))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("hung backend after a body: %v, want a timeout", err)
		}
	})

	t.Run("a client that leaves unblocks the wait", func(t *testing.T) {
		srv := newScripted(t, func(int, int, *http.Request) (string, bool) { return "", false })
		tr, _ := newTransport(0)
		defer tr.CloseIdleConnections()
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.url(), nil)
		done := make(chan error, 1)
		go func() { _, err := tr.RoundTrip(req); done <- err }()
		time.Sleep(50 * time.Millisecond)
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("got %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the round trip did not return after the client left")
		}
	})

	t.Run("103 Early Hints reach the trace, then the answer", func(t *testing.T) {
		srv := newScripted(t, func(int, int, *http.Request) (string, bool) {
			return "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + okAnswer, false
		})
		tr, _ := newTransport(0)
		defer tr.CloseIdleConnections()
		var hints []string
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			hints = append(hints, h.Get("Link"))
			return nil
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, srv.url(), nil)
		res, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || string(b) != "ok" || len(hints) != 1 || hints[0] != "</a.css>; rel=preload" {
			t.Errorf("status %d body %q hints %q", res.StatusCode, b, hints)
		}
	})

	t.Run("a body closed before its end closes the connection", func(t *testing.T) {
		srv := newScripted(t, func(int, int, *http.Request) (string, bool) {
			return "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", false
		})
		tr, _ := newTransport(0)
		defer tr.CloseIdleConnections()
		for range 2 {
			req, _ := http.NewRequest(http.MethodGet, srv.url(), nil)
			res, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = res.Body.Read(make([]byte, 3))
			res.Body.Close()
		}
		if n := srv.conns.Load(); n != 2 {
			t.Errorf("%d connections, want 2 (a half-read answer leaves its connection unusable)", n)
		}
	})
}
