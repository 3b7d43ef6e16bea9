package proxy_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// rawServer is a backend on a raw TCP listener, so that a test controls
// every byte it sends (the transport's tests, the desync and fidelity
// tests). It hands each connection to serve on a goroutine of its own and
// counts them; at cleanup it closes the listener and every connection
// still open (the balancer keeps them alive), and waits for the
// goroutines.
type rawServer struct {
	ln    net.Listener
	conns atomic.Int32
	mu    sync.Mutex // guards open
	open  []net.Conn
	wg    sync.WaitGroup
}

func newRawServer(t testing.TB, serve func(id int, c net.Conn)) *rawServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			id := int(s.conns.Add(1))
			s.mu.Lock()
			s.open = append(s.open, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				serve(id, c)
			}()
		}
	}()
	return s
}

func (s *rawServer) addr() string { return s.ln.Addr().String() }
func (s *rawServer) url() string  { return "http://" + s.addr() + "/" }

// eachRequest reads the requests on c one at a time, each body read
// whole before answer sees it (its trailers too; the body can be read
// again), and hands answer the n-th (from 1) with its request line as
// sent, until answer returns false or the connection ends.
func eachRequest(c net.Conn, answer func(n int, line string, req *http.Request) bool) {
	br := bufio.NewReader(c)
	for n := 1; ; n++ {
		// The request line as it came, from what is buffered (Peek of
		// more would wait for bytes a short request never sends).
		if _, err := br.Peek(1); err != nil {
			return
		}
		buffered, _ := br.Peek(br.Buffered())
		line, _, _ := strings.Cut(string(buffered), "\r\n")
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		if !answer(n, line, req) {
			return
		}
	}
}
