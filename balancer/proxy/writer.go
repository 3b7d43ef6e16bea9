package proxy

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// bufferPool recycles ReverseProxy's copy buffers; without it every
// request allocates a fresh 32 KiB buffer.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

// statusWriter remembers the status code for metrics. It passes Flush and
// Hijack through (via Unwrap and http.ResponseController), so streaming and
// WebSocket upgrades work through it.
type statusWriter struct {
	http.ResponseWriter
	status     int
	n          int64 // body bytes written, for the access log
	tunnelIdle time.Duration
}

// Hijack hands ReverseProxy the client connection of an upgrade, closed
// after TunnelIdle without traffic either way.
func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err != nil || s.tunnelIdle <= 0 {
		return c, brw, err
	}
	return newIdleConn(c, s.tunnelIdle), brw, nil
}

// WriteHeader passes the status on. A final answer the backend sent
// without Content-Type goes without one: net/http would otherwise guess
// one from the body's first bytes, and a guess of text/html turns an
// untyped upload into a page a browser runs.
func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	if code >= 200 {
		if h := s.ResponseWriter.Header(); h != nil {
			if _, typed := h["Content-Type"]; !typed {
				h["Content-Type"] = nil
			}
		}
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(p)
	s.n += int64(n)
	return n, err
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}
