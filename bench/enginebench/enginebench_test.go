package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
)

// testBackend answers with its id, the request it saw and a counted
// number of accepted connections.
type testBackend struct {
	srv   *httptest.Server
	conns atomic.Int64
}

func newTestBackend(t *testing.T, id string) *testBackend {
	tb := &testBackend{}
	tb.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Server-Id", id)
		switch r.URL.Path {
		case "/missing":
			w.Header().Set("X-Why", "none")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, "no such thing")
			return
		case "/chunked":
			w.Write([]byte("part1"))
			w.(http.Flusher).Flush()
			w.Write([]byte("part2"))
			return
		}
		fmt.Fprintf(w, "%s %s host=%s xff=%s body=%s",
			r.Method, r.URL.RequestURI(), r.Host, strings.Join(r.Header.Values("X-Forwarded-For"), ", "), body)
	}))
	tb.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			tb.conns.Add(1)
		}
	}
	tb.srv.Start()
	t.Cleanup(tb.srv.Close)
	return tb
}

func startProxy(t *testing.T, mode string, backends ...*testBackend) string {
	t.Helper()
	var addrs []string
	for _, b := range backends {
		addrs = append(addrs, b.srv.Listener.Addr().String())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go serve(mode, ln, newBalancer(addrs))
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

var modes = []string{"nethttp", "nethttp-lean-transport", "raw"}

func TestModesProxy(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			a, b := newTestBackend(t, "a"), newTestBackend(t, "b")
			addr := startProxy(t, mode, a, b)
			tr := &http.Transport{MaxIdleConnsPerHost: 1}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}

			var newConns atomic.Int64
			ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{
				GotConn: func(i httptrace.GotConnInfo) {
					if !i.Reused {
						newConns.Add(1)
					}
				},
			})
			seen := map[string]int{}
			const n = 20
			for i := range n {
				req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+fmt.Sprintf("/p?i=%d", i), nil)
				req.Host = "example.test"
				req.Header.Set("X-Forwarded-For", "10.0.0.1")
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				want := fmt.Sprintf("GET /p?i=%d host=example.test xff=10.0.0.1, 127.0.0.1 body=", i)
				if resp.StatusCode != 200 || string(body) != want {
					t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, want)
				}
				if resp.ContentLength != int64(len(want)) {
					t.Fatalf("Content-Length %d, want %d", resp.ContentLength, len(want))
				}
				seen[resp.Header.Get("X-Server-Id")]++
			}
			if seen["a"] == 0 || seen["b"] == 0 {
				t.Fatalf("both backends should serve sequential requests: %v", seen)
			}
			if c := newConns.Load(); c != 1 {
				t.Fatalf("client opened %d connections to the proxy, want 1 (keep-alive)", c)
			}
			if c := a.conns.Load() + b.conns.Load(); c > 2 {
				t.Fatalf("proxy opened %d upstream connections for %d sequential requests, want ≤ 2 (reuse)", c, n)
			}

			// A body, a non-200 status with its headers, HEAD.
			resp, err := client.Post("http://"+addr+"/post", "text/plain", strings.NewReader("hello body"))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.HasPrefix(string(body), "POST /post ") || !strings.HasSuffix(string(body), "body=hello body") {
				t.Fatalf("POST: %q", body)
			}
			resp, err = client.Get("http://" + addr + "/missing")
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 404 || string(body) != "no such thing" || resp.Header.Get("X-Why") != "none" {
				t.Fatalf("404: %d %q %v", resp.StatusCode, body, resp.Header)
			}
			resp, err = client.Head("http://" + addr + "/h")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ContentLength <= 0 {
				t.Fatalf("HEAD: %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
			}

			// Chunked responses: relayed by net/http, refused by raw (502).
			resp, err = client.Get("http://" + addr + "/chunked")
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if mode == "raw" {
				if resp.StatusCode != 502 {
					t.Fatalf("raw, chunked: %d, want 502", resp.StatusCode)
				}
			} else if resp.StatusCode != 200 || string(body) != "part1part2" {
				t.Fatalf("chunked: %d %q", resp.StatusCode, body)
			}
		})
	}
}

// TestRawPipelineAndClose sends two pipelined requests, the second with
// Connection: close, on one raw TCP connection.
func TestRawPipelineAndClose(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			addr := startProxy(t, mode, newTestBackend(t, "a"))
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			br := bufio.NewReader(c)
			for i, want := range []string{"GET /1 ", "GET /2 "} {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d: %v", i+1, err)
				}
				body, _ := io.ReadAll(resp.Body)
				if !strings.HasPrefix(string(body), want) || resp.Close != (i == 1) {
					t.Fatalf("response %d: %q close=%v", i+1, body, resp.Close)
				}
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("after Connection: close the proxy should close, got %v", err)
			}
		})
	}
}

// TestRawNoAllocs checks that the raw engine allocates nothing per
// request in steady state. The backend and the client are hand-written and
// allocation-free too, since testing.AllocsPerRun counts the whole process.
func TestRawNoAllocs(t *testing.T) {
	const answer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Server-Id: a\r\n\r\nhello"
	answerBytes := []byte(answer)
	bln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bln.Close()
	go func() {
		for {
			c, err := bln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					for { // one request head, no body
						l, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(l) <= 2 {
							break
						}
					}
					if _, err := c.Write(answerBytes); err != nil {
						return
					}
				}
			}()
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serve("raw", ln, newBalancer([]string{bln.Addr().String()}))
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	want := len(answer)
	buf := make([]byte, 4096)
	do := func() {
		c.Write(req)
		for got := 0; got < want; {
			n, err := c.Read(buf[got:])
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	}
	do()
	if !strings.HasSuffix(string(buf[:want]), "\r\n\r\nhello") {
		t.Fatalf("answer: %q", buf[:want])
	}
	for range 100 {
		do()
	}
	if a := testing.AllocsPerRun(500, do); a > 0.1 {
		t.Fatalf("raw engine: %.2f allocations per request, want 0", a)
	}
}
