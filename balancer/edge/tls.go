package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// tlsConn is a scanned connection whose bytes were decrypted by TLS. Its
// ConnectionState is how net/http learns, for a connection that is not a
// *tls.Conn, that the request came over TLS (Request.TLS, and so
// X-Forwarded-Proto: https).
type tlsConn struct {
	*conn
	tc *tls.Conn
}

func (c *tlsConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// scanned returns the scanner behind c, or nil for a connection that is not
// scanned (HTTP/2: Go's HTTP/2 server parses the frames itself).
func scanned(c net.Conn) *conn {
	switch c := c.(type) {
	case *conn:
		return c
	case *tlsConn:
		return c.conn
	}
	return nil
}

// tlsListener terminates TLS before handing connections to net/http. The
// scanner judges bytes as net/http reads them, so for HTTP/1.1 over TLS it
// has to sit between the TLS layer and net/http: the handshake is done here,
// and a connection that negotiated HTTP/1.1 (or no ALPN) comes out as a
// scanned conn around the *tls.Conn. One that negotiated h2 comes out as the
// *tls.Conn itself, so net/http sees it and hands it to its HTTP/2 server.
type tlsListener struct {
	inner  net.Listener
	cfg    *tls.Config
	lim    Limits
	log    *slog.Logger
	conns  chan net.Conn
	errs   chan error
	ctx    context.Context // cancelled by Close: handshakes in progress stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and the handshakes
	// mu guards started and closed, so the loop is started at most once
	// and never after Close has begun waiting for it.
	mu      sync.Mutex
	started bool
	closed  bool
}

// WrapTLS terminates TLS with cfg on the connections of l and scans the
// HTTP/1.1 ones. Serve it with a Server from NewServer whose TLSConfig
// offers "h2" (as cfg does), so that net/http sets up its HTTP/2 server for
// the h2 connections. A handshake must end within lim.HeaderTimeout.
func WrapTLS(l net.Listener, lim Limits, cfg *tls.Config, log *slog.Logger) net.Listener {
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &tlsListener{
		inner: l, cfg: cfg.Clone(), lim: lim, log: log,
		conns: make(chan net.Conn), errs: make(chan error), ctx: ctx, cancel: cancel,
	}
}

// ListenTLS is Listen with TLS: see WrapTLS.
func ListenTLS(addr string, lim Limits, cfg *tls.Config, log *slog.Logger) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return WrapTLS(l, lim, cfg, log), nil
}

// Accept returns the next connection whose handshake succeeded. The accept
// loop starts on the first call, after net/http has set up its server, and
// handshakes run concurrently so that a slow client holds up no other.
func (l *tlsListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	if !l.started && !l.closed {
		l.started = true
		l.wg.Add(1)
		go l.loop()
	}
	l.mu.Unlock()
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

func (l *tlsListener) loop() {
	defer l.wg.Done()
	for {
		raw, err := l.inner.Accept()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.ctx.Done():
				return
			}
			// A temporary error (too many open files) is passed on and
			// net/http backs off before it calls Accept again; any other
			// ends the loop.
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				continue
			}
			return
		}
		l.wg.Add(1)
		go l.handshake(raw)
	}
}

func (l *tlsListener) handshake(raw net.Conn) {
	defer l.wg.Done()
	tc := tls.Server(raw, l.cfg)
	ctx, cancel := context.WithTimeout(l.ctx, l.lim.HeaderTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		// As net/http does: plain HTTP sent to the TLS port gets a 400 that
		// says so, rather than a closed connection the client cannot explain.
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			_ = re.Conn.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		l.log.Debug("TLS handshake failed", "client", raw.RemoteAddr().String(), "err", err)
		_ = raw.Close()
		return
	}
	var c net.Conn = tc
	if tc.ConnectionState().NegotiatedProtocol != "h2" {
		c = &tlsConn{conn: &conn{Conn: tc, s: newScanner(l.lim)}, tc: tc}
	}
	select {
	case l.conns <- c:
	case <-l.ctx.Done():
		_ = raw.Close()
	}
}

func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// Close stops accepting, ends the handshakes in progress and waits for them.
func (l *tlsListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.cancel()
	err := l.inner.Close()
	l.wg.Wait()
	return err
}

func (l *tlsListener) Addr() net.Addr { return l.inner.Addr() }
