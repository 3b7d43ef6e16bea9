package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"time"
)

// Transport carries HTTP/1.1 requests to their backends on the handler's
// own goroutine, over a pool of idle connections per backend. Upgrades
// (WebSocket and the like), Expect: 100-continue and anything but plain
// http go to Fallback, an http.Transport.
//
// Why: http.Transport hands each request to a writeLoop goroutine and gets
// the answer back from a readLoop goroutine, so a round trip parks and wakes
// three goroutines. Measured side by side (docs/engine-prototype.md), that
// hand-off is about a quarter of the balancer's CPU per request. Parsing and
// writing stay net/http's (Request.Write, http.ReadResponse). A request
// with a body is written by a goroutine of its own while the answer is
// read, as a backend may answer before it has read the whole body.
//
// Why requests with a body do not go to http.Transport: it puts a
// connection back in its pool before its readLoop has looked for bytes
// the backend sent past the end of the answer, so a request that takes the
// connection in that window gets a stray answer, or a 502 (measured: 10 to
// 14 of 1,000 in TestNoAnswerReachesTheWrongClient). Here the check that a
// connection is clean and its reuse happen on the goroutine that owns it.
type Transport struct {
	// Fallback carries what this transport does not.
	Fallback http.RoundTripper
	// Dial opens a connection to a backend.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// ResponseHeaderTimeout bounds the wait for the response's headers,
	// counted from the start of the write for a request without a body,
	// and from the end of the body's write for one with a body, as
	// http.Transport counts it (0: none).
	ResponseHeaderTimeout time.Duration
	// MaxIdlePerHost bounds the idle connections kept per backend.
	MaxIdlePerHost int
	// IdleTimeout closes a connection idle for this long.
	IdleTimeout time.Duration

	mu        sync.Mutex
	idle      map[string][]*upConn
	lastSweep time.Time
}

// upConn is one connection to a backend, with its buffers.
type upConn struct {
	net.Conn
	host      string
	br        *bufio.Reader
	bw        *bufio.Writer
	probe     *probe
	idleSince time.Time
}

// own reports whether the request is carried here rather than by Fallback.
func own(r *http.Request) bool {
	return r.URL.Scheme == "http" && r.Method != http.MethodConnect &&
		r.Header.Get("Upgrade") == "" && r.Header.Get("Expect") == ""
}

// hasBody reports whether the request has a body to write.
func hasBody(r *http.Request) bool { return r.Body != nil && r.Body != http.NoBody }

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if !own(r) {
		return t.Fallback.RoundTrip(r)
	}
	for try := 0; ; try++ {
		// The retry of a stale connection dials: the other idle ones to
		// that backend were dropped with it.
		c, reused, err := t.get(r.Context(), r.URL.Host, try == 0)
		if err != nil {
			if hasBody(r) {
				r.Body.Close() // RoundTrip closes the body, even on errors
			}
			return nil, err
		}
		res, err := t.exchange(c, r)
		if err == nil {
			return res, nil
		}
		c.Close()
		// A kept-alive connection the backend closed while it was idle
		// fails before any byte of an answer: the request, if it has no
		// body, goes again on a new connection once, as http.Transport
		// does, if it is idempotent or the backend cannot have read it. A
		// body was read as it was written, and cannot be sent again.
		// The backend closed its other idle connections too, most likely
		// (it restarted, or a new one took over its address), so they go.
		var stale *staleError
		if reused && errors.As(err, &stale) {
			t.dropIdle(r.URL.Host)
			if try == 0 && !hasBody(r) && (!stale.sent || idempotent(r.Method)) {
				continue
			}
		}
		return nil, err
	}
}

// idempotent: RFC 9110's idempotent methods, safe to send twice.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// max1xx bounds the informational answers before the final one, as
// http.Transport does: a backend cannot hold a request with an endless
// stream of them.
const max1xx = 5

// aLongTimeAgo is a deadline in the past: it makes any blocked I/O return.
var aLongTimeAgo = time.Unix(1, 0)

// exchange writes r on c and reads the answer's head. A *staleError is a
// connection that failed before any byte of an answer came, neither by a
// timeout nor by the client's leaving.
func (t *Transport) exchange(c *upConn, r *http.Request) (res *http.Response, err error) {
	ctx := r.Context()
	// A client that leaves, or a per-try timeout, unblocks the I/O through
	// the connection's deadline (no goroutine waits on it).
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(aLongTimeAgo) })
	var wrote chan error // a body's write: its outcome, once
	fail := func(err error) (*http.Response, error) {
		stop()
		if wrote != nil {
			// The writer may wait on a backend that reads no more: with
			// the connection closed, it returns (or at its next read of
			// the client's body, which it must not be waited for). Its
			// error, if it came, says more than the read's.
			c.Close()
			select {
			case werr := <-wrote:
				if werr != nil {
					err = werr
				}
			default:
			}
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	staleIf := func(err error, sent bool) error {
		if isTimeout(err) {
			return err
		}
		return &staleError{err: err, sent: sent}
	}
	if hasBody(r) {
		wrote = make(chan error, 1)
		go t.write(c, r, wrote)
	} else {
		if t.ResponseHeaderTimeout > 0 {
			_ = c.SetDeadline(time.Now().Add(t.ResponseHeaderTimeout))
		}
		if err := r.Write(c.bw); err != nil {
			return fail(staleIf(err, false))
		}
		if err := c.bw.Flush(); err != nil {
			return fail(staleIf(err, false))
		}
	}
	if _, err := c.br.Peek(1); err != nil {
		return fail(staleIf(err, true))
	}
	for n1xx := 0; ; n1xx++ {
		if n1xx > max1xx {
			return fail(fmt.Errorf("backend sent more than %d 1xx answers", max1xx))
		}
		res, err = http.ReadResponse(c.br, r)
		if err != nil {
			return fail(err)
		}
		// 1xx answers before the final one (103 Early Hints): passed to
		// ReverseProxy's trace, which sends them on to the client. 101
		// is final, and only follows an upgrade, which is not sent here.
		if res.StatusCode < 100 || res.StatusCode > 199 || res.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(res.StatusCode, textproto.MIMEHeader(res.Header)); err != nil {
				return fail(err)
			}
		}
	}
	if t.ResponseHeaderTimeout > 0 {
		_ = c.SetReadDeadline(time.Time{})
		if wrote == nil {
			_ = c.SetWriteDeadline(time.Time{})
		}
	}
	if ctx.Err() != nil { // the deadline just cleared may have been the client's
		return fail(ctx.Err())
	}
	res.Body = &upBody{rc: res.Body, t: t, c: c, stop: stop, wrote: wrote, reuse: !res.Close && !r.Close}
	return res, nil
}

// write sends r with its body on c and reports the outcome on wrote. The
// wait for the answer's headers starts once the body is sent. A failed
// write ends the read too (it fails, unless the answer already came).
func (t *Transport) write(c *upConn, r *http.Request, wrote chan<- error) {
	err := r.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		_ = c.SetReadDeadline(aLongTimeAgo)
	} else if t.ResponseHeaderTimeout > 0 {
		_ = c.SetReadDeadline(time.Now().Add(t.ResponseHeaderTimeout))
	}
	wrote <- err
}

// staleError is a connection that failed before any byte of an answer;
// sent tells whether the request had been written whole.
type staleError struct {
	err  error
	sent bool
}

func (e *staleError) Error() string {
	return "backend connection failed before any answer: " + e.err.Error()
}
func (e *staleError) Unwrap() error { return e.err }

// upBody returns its connection to the pool once the body was read to its
// end, and closes it otherwise.
type upBody struct {
	rc    io.ReadCloser
	t     *Transport
	c     *upConn
	stop  func() bool
	wrote chan error // the body's write, for a request with one (else nil)
	reuse bool
	done  bool
}

func (b *upBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.finish(true)
	}
	return n, err
}

func (b *upBody) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

// finish ends the answer: the connection goes back to the pool only when
// the body was read to the end its framing gives, nothing more came with
// it, the request was written whole, and both sides may keep it. (A
// backend that answered before reading the whole body may never read the
// rest: its connection is closed, which also ends the write.) A byte past
// the end (a body after HEAD,
// 204 or 304, more than Content-Length, an answer nobody asked for) would
// otherwise be read as the answer to the next request on the connection,
// another client's. get checks again for bytes that come later.
func (b *upBody) finish(whole bool) {
	b.done = true
	// stop reports false once the client's context fired: the deadline it
	// set makes the connection useless.
	if b.stop() && whole && b.reuse && b.c.br.Buffered() == 0 && b.written() {
		b.t.put(b.c)
		return
	}
	b.c.Close()
}

// written reports whether the request's body, if any, was written whole.
func (b *upBody) written() bool {
	if b.wrote == nil {
		return true
	}
	select {
	case err := <-b.wrote:
		return err == nil
	default:
		return false
	}
}

// get takes the newest clean idle connection to host (when reuse allows),
// or dials one. Clean: open, and nothing came from the backend since its
// last answer ended. A backend has nothing to say before it is asked, so
// a byte waiting here is stray (a late answer nobody asked for) and would
// become the next client's answer; a connection the backend closed (a
// stopped container, or its address taken by a new one) is found here and
// not by a failed request. The check is a peek that must not wait: one
// system call per reuse, made on every reuse, however short the idle.
func (t *Transport) get(ctx context.Context, host string, reuse bool) (*upConn, bool, error) {
	for reuse {
		c := t.pop(host)
		if c == nil {
			break
		}
		if c.br.Buffered() == 0 && c.probe.alive() {
			return c, true, nil
		}
		c.Close()
	}
	nc, err := t.Dial(ctx, "tcp", host)
	if err != nil {
		return nil, false, err
	}
	return &upConn{Conn: nc, host: host, br: bufio.NewReaderSize(nc, 4<<10), bw: bufio.NewWriterSize(nc, 4<<10), probe: newProbe(nc)}, false, nil
}

// pop takes the newest idle connection to host that is not past
// IdleTimeout, closing those that are; nil if none.
func (t *Transport) pop(host string) *upConn {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	list := t.idle[host]
	for len(list) > 0 {
		c := list[len(list)-1]
		list[len(list)-1] = nil
		list = list[:len(list)-1]
		if now.Sub(c.idleSince) < t.IdleTimeout {
			t.idle[host] = list
			return c
		}
		c.Close()
	}
	delete(t.idle, host)
	return nil
}

// dropIdle closes every idle connection to host.
func (t *Transport) dropIdle(host string) {
	t.mu.Lock()
	list := t.idle[host]
	delete(t.idle, host)
	t.mu.Unlock()
	for _, c := range list {
		c.Close()
	}
}

// put keeps c for the next request to its backend. Now and then it also
// closes connections idle past IdleTimeout, so that backends gone from the
// pool do not keep theirs.
func (t *Transport) put(c *upConn) {
	now := time.Now()
	c.idleSince = now
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.idle == nil {
		t.idle = map[string][]*upConn{}
	}
	if now.Sub(t.lastSweep) > t.IdleTimeout/2 {
		t.lastSweep = now
		for host, list := range t.idle {
			keep := list[:0]
			for _, x := range list {
				if now.Sub(x.idleSince) < t.IdleTimeout {
					keep = append(keep, x)
				} else {
					x.Close()
				}
			}
			clear(list[len(keep):])
			if len(keep) == 0 {
				delete(t.idle, host)
			} else {
				t.idle[host] = keep
			}
		}
	}
	if len(t.idle[c.host]) >= t.MaxIdlePerHost {
		c.Close()
		return
	}
	t.idle[c.host] = append(t.idle[c.host], c)
}

// CloseIdleConnections closes every idle connection, the fallback's too.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	for host, list := range t.idle {
		for _, c := range list {
			c.Close()
		}
		delete(t.idle, host)
	}
	t.mu.Unlock()
	if ci, ok := t.Fallback.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}
