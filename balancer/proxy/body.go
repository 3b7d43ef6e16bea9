package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// readBody reads a body of at most BodyBuffer bytes whole, within
// BodyTimeout, before the request takes a backend slot: a client that
// stalls mid-body then holds a goroutine and a socket, not a slot every
// other request needs. A longer body is streamed after the slot is taken;
// the returned clientBody then bounds each of its reads by BodyTimeout.
// The error is the client's (a stall, a malformed chunk, a hang-up).
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) (*clientBody, error) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil, nil
	}
	rc := http.NewResponseController(w)
	// deadline sets the connection's read deadline d from now; 0 clears it.
	// A negative d expires it: after a body failed, net/http would
	// otherwise wait for the rest of the body (it drains an unread body
	// before closing) for as long as the client stays silent.
	deadline := func(d time.Duration) {
		t := time.Time{}
		switch {
		case d < 0:
			t = time.Now()
		case d > 0 && h.o.BodyTimeout > 0:
			t = time.Now().Add(d)
		case d > 0:
			return
		}
		_ = rc.SetReadDeadline(t) // not supported (a test recorder): no limit
	}
	var head []byte
	if h.o.BodyBuffer > 0 && r.ContentLength <= h.o.BodyBuffer {
		deadline(h.o.BodyTimeout)
		buf := bytes.NewBuffer(make([]byte, 0, max(r.ContentLength, 512)))
		_, err := buf.ReadFrom(io.LimitReader(r.Body, h.o.BodyBuffer+1))
		if err != nil {
			deadline(-1)
			return nil, err
		}
		deadline(0)
		if int64(buf.Len()) <= h.o.BodyBuffer {
			r.Body = io.NopCloser(bytes.NewReader(buf.Bytes()))
			// A body with trailers stays chunked, the only framing that
			// carries them; any other goes with its length.
			if len(r.Trailer) == 0 {
				r.ContentLength = int64(buf.Len())
				r.TransferEncoding = nil
				r.Header.Del("Transfer-Encoding")
			}
			return nil, nil
		}
		head = buf.Bytes() // a chunked body longer than the buffer: stream the rest
	}
	b := &clientBody{head: head, rest: r.Body, deadline: deadline, timeout: h.o.BodyTimeout}
	b.n.Store(int64(len(head)))
	r.Body = b
	return b, nil
}

// clientBody is the part of a request body streamed to the backend. Each
// read must make progress within the body timeout (nginx's
// client_body_timeout), and its error is kept so that the proxy answers it
// as the client's fault, not the backend's.
type clientBody struct {
	head     []byte
	rest     io.ReadCloser
	deadline func(time.Duration)
	timeout  time.Duration

	n atomic.Int64 // bytes read from the client, head included, for the access log

	mu   sync.Mutex // guards err, done, and the connection's deadline
	err  error
	done bool // the handler returned: the connection is no longer ours to touch
}

func (b *clientBody) Read(p []byte) (int, error) {
	if len(b.head) > 0 {
		n := copy(p, b.head)
		b.head = b.head[n:]
		return n, nil
	}
	b.mu.Lock()
	if b.done {
		b.mu.Unlock()
		return 0, http.ErrBodyReadAfterClose
	}
	b.deadline(b.timeout)
	b.mu.Unlock()
	n, err := b.rest.Read(p)
	b.n.Add(int64(n))
	if err != nil {
		b.mu.Lock()
		if err == io.EOF {
			if !b.done {
				b.deadline(0)
			}
		} else if b.err == nil {
			b.err = err
			if !b.done {
				b.deadline(-1)
			}
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *clientBody) Close() error { return b.rest.Close() }

// Err is the error the client's body failed with, if any (nil-safe).
func (b *clientBody) Err() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// finish clears the read deadline while the handler still owns the
// connection; reads after it (the transport may still be copying) touch
// no deadline.
func (b *clientBody) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done && b.err == nil {
		b.deadline(0)
	}
	b.done = true
}

// clientError answers a request whose body failed on the client's side:
// 408 after a stall, 400 otherwise (malformed chunked encoding, a body cut
// short), and closes the connection, whose framing is lost.
func (h *Handler) clientError(w http.ResponseWriter, id string, err error) int {
	code := http.StatusBadRequest
	var ne net.Error
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		code = http.StatusRequestTimeout
	}
	h.o.Log.Info("client body failed", "request_id", id, "status", code, "err", err)
	h.o.Metrics.Rejected.WithLabelValues("client_body").Inc()
	w.Header().Set("Connection", "close")
	http.Error(w, http.StatusText(code), code)
	h.o.Metrics.observe(code, 0)
	return code
}

// idleConn is the client side of an upgraded tunnel: a read gives up once
// neither direction has carried a byte for timeout.
type idleConn struct {
	net.Conn
	timeout time.Duration
	last    atomic.Int64 // unix nanoseconds of the last byte either way
}

func newIdleConn(c net.Conn, timeout time.Duration) *idleConn {
	ic := &idleConn{Conn: c, timeout: timeout}
	ic.last.Store(time.Now().UnixNano())
	return ic
}

func (c *idleConn) Read(p []byte) (int, error) {
	for {
		_ = c.Conn.SetReadDeadline(time.Unix(0, c.last.Load()).Add(c.timeout))
		n, err := c.Conn.Read(p)
		if n > 0 {
			c.last.Store(time.Now().UnixNano())
		}
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && n == 0 &&
			time.Since(time.Unix(0, c.last.Load())) < c.timeout {
			continue // the other direction was busy: not idle
		}
		return n, err
	}
}

func (c *idleConn) Write(p []byte) (int, error) {
	// A client that reads nothing for timeout is as idle as a silent one.
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// CloseWrite keeps ReverseProxy's half-close when the backend ends first.
func (c *idleConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
