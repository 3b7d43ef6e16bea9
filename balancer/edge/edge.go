// Package edge is the balancer's client-facing HTTP/1.1 front: the server's
// timeouts and header limits, and a scanner on each raw connection that
// judges every request's header block before net/http normalises it, so that
// a request net/http would accept yet a peer on the path may frame
// differently (request smuggling) is refused with 400 and the connection
// closed.
//
// The scanner lives in the connection's Read (see Listen); Guard, the
// handler wrapper, answers each request with its verdict. Requests arrive in
// the order their header blocks were read, and net/http either calls the
// handler for a request or closes the connection, so the verdicts line up.
package edge

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Limits bound what one client may send; the zero value is not useful (see
// the balancer's config for the defaults and why).
type Limits struct {
	// RequestLineBytes: a longer request line (mostly its URI) gets 414.
	RequestLineBytes int
	// HeaderLineBytes: a longer header line gets 431.
	HeaderLineBytes int
	// HeaderBytes bounds the request line and headers together: 431. It
	// is also net/http's MaxHeaderBytes, which answers 431 itself past it
	// (plus its 4 KiB of slack) before the scanner's verdict is asked.
	HeaderBytes int
	// HeaderTimeout bounds the wait for a request's headers.
	HeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection with no request for this long.
	IdleTimeout time.Duration
}

type connKey struct{}

// conn scans what net/http reads from the client.
type conn struct {
	net.Conn
	mu sync.Mutex // guards s: the handler pops verdicts while a background read feeds
	s  *scanner   // nil once hijacked (an upgraded tunnel carries no requests)
}

func (c *conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if c.s != nil {
			c.s.feed(p[:n])
		}
		c.mu.Unlock()
	}
	return n, err
}

// next pops the verdict of the oldest request not yet handled; a connection
// the scanner gave up on yields passes.
func (c *conn) next() Verdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s == nil || len(c.s.verdicts) == 0 {
		return Verdict{}
	}
	v := c.s.verdicts[0]
	c.s.verdicts = c.s.verdicts[1:]
	return v
}

func (c *conn) stop() {
	c.mu.Lock()
	c.s = nil
	c.mu.Unlock()
}

type listener struct {
	net.Listener
	lim Limits
}

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, s: newScanner(l.lim)}, nil
}

// Listen returns a TCP listener on addr whose connections are scanned; serve
// it with a Server from NewServer.
func Listen(addr string, lim Limits) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return Wrap(l, lim), nil
}

// Wrap scans the connections of l (for tests that bring their own listener).
func Wrap(l net.Listener, lim Limits) net.Listener { return listener{Listener: l, lim: lim} }

// NewServer returns the client-facing server for h: h is wrapped in Guard,
// the timeouts and header limit are set, and net/http's own answer to
// "OPTIONS *" is turned off so that every request reaches Guard (a request
// answered by net/http itself would put the verdicts out of step).
func NewServer(addr string, h http.Handler, lim Limits, log *slog.Logger) *http.Server {
	return &http.Server{
		Addr:                         addr,
		Handler:                      Guard(h, log),
		ReadHeaderTimeout:            lim.HeaderTimeout,
		IdleTimeout:                  lim.IdleTimeout,
		MaxHeaderBytes:               lim.HeaderBytes,
		DisableGeneralOptionsHandler: true,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ec := scanned(c); ec != nil {
				return context.WithValue(ctx, connKey{}, ec)
			}
			return ctx
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			if ec := scanned(c); ec != nil && st == http.StateHijacked {
				ec.stop()
			}
		},
	}
}

// Guard answers a request the scanner refused with its status, a generic
// body and Connection: close, and passes every other request to next.
func Guard(next http.Handler, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := r.Context().Value(connKey{}).(*conn); ok {
			if v := c.next(); v.Code != 0 {
				log.Info("request refused at the edge", "status", v.Code, "reason", v.Reason,
					"client", r.RemoteAddr, "method", r.Method, "proto", r.Proto)
				Refuse(w, v.Code)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Refuse answers code with a generic body and closes the connection after
// it. The read deadline is expired first: net/http drains an unread body
// before closing, and a refused request's body is not worth waiting for.
func Refuse(w http.ResponseWriter, code int) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	w.Header().Set("Connection", "close")
	http.Error(w, http.StatusText(code), code)
}

// CloseWrite half-closes the connection when the underlying one can, so an
// upgraded tunnel still passes a half-close on.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
