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
	"sync"
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

// scripted is a backend on a raw TCP listener: each connection reads
// requests and answers with what answer returns for the n-th request on
// it; close after the answer when hangUp says so.
type scripted struct {
	ln    net.Listener
	conns atomic.Int32
	wg    sync.WaitGroup
}

func newScripted(t *testing.T, answer func(conn, n int, req *http.Request) (resp string, hangUp bool)) *scripted {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{ln: ln}
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			id := int(s.conns.Add(1))
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 1; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					resp, hangUp := answer(id, n, req)
					if resp == "" { // hang: never answer
						_, _ = io.Copy(io.Discard, br)
						return
					}
					if _, err := io.WriteString(c, resp); err != nil || hangUp {
						return
					}
				}
			}()
		}
	}()
	return s
}

func (s *scripted) url() string { return "http://" + s.ln.Addr().String() + "/" }

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

func TestTransport(t *testing.T) {
	t.Run("keep-alive reuse on the lean path", func(t *testing.T) {
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

	t.Run("a kept-alive connection the backend closed: GET sent again, POST not", func(t *testing.T) {
		// Each connection answers once, then closes without saying so.
		srv := newScripted(t, func(int, int, *http.Request) (string, bool) { return okAnswer, true })
		tr, _ := newTransport(0)
		defer tr.CloseIdleConnections()
		if _, _, err := get(t, tr, http.MethodGet, srv.url(), nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // let the close arrive
		if _, body, err := get(t, tr, http.MethodGet, srv.url(), nil); err != nil || body != "ok" {
			t.Fatalf("GET on a stale connection: %q %v, want a retry on a new one", body, err)
		}
		time.Sleep(50 * time.Millisecond)
		if _, _, err := get(t, tr, http.MethodPost, srv.url(), nil); err == nil {
			t.Fatalf("POST on a stale connection succeeded: it must not be sent twice")
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

	t.Run("requests with a body, an upgrade or Expect go to the fallback", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			_, _ = w.Write(b)
		}))
		defer srv.Close()
		tr, fb := newTransport(0)
		defer tr.CloseIdleConnections()
		if _, body, err := get(t, tr, http.MethodPost, srv.URL, strings.NewReader("hello")); err != nil || body != "hello" {
			t.Fatalf("POST: %q %v", body, err)
		}
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Header.Set("Expect", "100-continue")
		if res, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		} else {
			res.Body.Close()
		}
		if n := fb.n.Load(); n != 2 {
			t.Errorf("%d fallbacks, want 2", n)
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
