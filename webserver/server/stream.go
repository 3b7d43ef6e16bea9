package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Query parameters of /events.
const (
	// ParamIntervalMS is the time between two events, in milliseconds:
	// 1 to MaxEventIntervalMS, default 1000.
	ParamIntervalMS = "interval_ms"
	// ParamCount is how many events the stream sends before it ends: 0
	// (the default) for no end but the client's or the server's.
	ParamCount = "count"
)

// Bounds of /events' parameters. The interval has a floor so that a stream
// cannot turn into a busy loop, and a ceiling for the same reason as
// MaxCostMS: a typo must not make a stream that looks dead.
const (
	DefaultEventInterval = time.Second
	MaxEventIntervalMS   = 60000
	MaxEventCount        = 1_000_000
)

// byeEvent is the last event of a stream the server ends because it shuts
// down: the client can tell it from a broken connection and reconnect at
// once (through the balancer, to another container). An event needs a data
// line for an EventSource to dispatch it.
const byeEvent = "event: bye\ndata: shutting down\n\n"

// refuseWhileStopping answers 503 (closing the connection) once shutdown
// has begun: a long-lived connection opened now would only be closed
// again, and the refusal sends the client elsewhere at once.
func (s *Server) refuseWhileStopping(w http.ResponseWriter, r *http.Request) bool {
	if !s.shuttingDown.Load() {
		return false
	}
	w.Header().Set("Connection", "close")
	http.Error(w, r.URL.Path+": shutting down", http.StatusServiceUnavailable)
	return true
}

// openConn counts a long-lived connection in; the returned func counts it
// out. Add happens while net/http still tracks the request (before a
// hijack), which is what lets Serve wait on long after Shutdown.
func (s *Server) openConn() (closed func()) {
	s.long.Add(1)
	s.conns.Add(1)
	return func() {
		s.conns.Add(-1)
		s.long.Done()
	}
}

// serveUpgrade lets tests check that a balancer passes protocol upgrades
// (WebSocket) through, without a WebSocket library: it answers 101 with the
// requested protocol and then echoes raw bytes until the client closes, or
// until the server shuts down and closes the connection itself.
//
// The handshake takes a slot (waiting for one like any request); the open
// connection does not: it is counted in /load's conns, as an event-driven
// server holds a WebSocket as a socket, not as a worker. A thousand idle
// tunnels therefore leave CAPACITY to the requests.
func (s *Server) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	proto := r.Header.Get("Upgrade")
	if !httpguts.HeaderValuesContainsToken(r.Header.Values("Connection"), "upgrade") || proto == "" {
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Connection", "Upgrade")
		http.Error(w, "/upgrade needs Connection: Upgrade and an Upgrade header", http.StatusUpgradeRequired)
		return
	}
	if s.refuseWhileStopping(w, r) {
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "connection cannot be taken over", http.StatusInternalServerError)
		return
	}
	if !s.enter(r.Context()) {
		return
	}
	handshaking := true
	defer func() {
		if handshaking {
			s.leave()
		}
	}()
	closed := s.openConn()
	defer closed()
	conn, rw, err := hj.Hijack()
	if err != nil {
		s.log.Warn("upgrade: hijack", "err", err)
		return
	}
	defer conn.Close()
	// Closing the connection is what ends the echo at shutdown; when
	// shutdown has already begun, the connection is closed at once.
	stopClosing := context.AfterFunc(s.stopping, func() { _ = conn.Close() })
	defer stopClosing()
	_ = conn.SetDeadline(time.Time{}) // the server's header deadline must not cut the echo
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n%s: %s\r\n\r\n",
		proto, HeaderServerID, s.cfg.ServerID)
	err = rw.Flush()
	handshaking = false
	s.leave()
	if err != nil {
		return
	}
	s.served.Add(1)
	// rw.Reader first returns what the server had already buffered past
	// the request headers, then reads the connection.
	if _, err := io.Copy(conn, rw.Reader); err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("upgrade: echo ended", "err", err)
	}
}

// serveEvents streams server-sent events: "data: <n>" (n from 1) every
// interval_ms, until count events were sent, the client leaves, or the
// server shuts down (a last "bye" event, then the end of the response). It
// holds no slot: a stream is a socket and a timer, counted in /load's
// conns. FAULT does not touch it.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet) {
		return
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		http.Error(w, "malformed query: "+err.Error(), http.StatusBadRequest)
		return
	}
	interval, count, err := eventParams(q)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if s.refuseWhileStopping(w, r) {
		return
	}
	closed := s.openConn()
	defer closed()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	// The head goes out at once: a client waits for it to know the stream
	// is open, and may otherwise wait a whole interval or more.
	if rc.Flush() != nil {
		return
	}
	defer s.served.Add(1)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		if _, err := fmt.Fprintf(w, "data: %d\n\n", n); err != nil || rc.Flush() != nil {
			return
		}
		if count > 0 && n >= count {
			return
		}
		select {
		case <-tick.C:
		case <-r.Context().Done():
			return
		case <-s.stopping.Done():
			_, _ = io.WriteString(w, byeEvent)
			_ = rc.Flush()
			return
		}
	}
}

// eventParams reads interval_ms and count (each at most once).
func eventParams(q url.Values) (interval time.Duration, count int, err error) {
	interval = DefaultEventInterval
	if q.Has(ParamIntervalMS) {
		n, err := intParam(q, ParamIntervalMS, 1, MaxEventIntervalMS)
		if err != nil {
			return 0, 0, err
		}
		interval = time.Duration(n) * time.Millisecond
	}
	if q.Has(ParamCount) {
		if count, err = intParam(q, ParamCount, 0, MaxEventCount); err != nil {
			return 0, 0, err
		}
	}
	return interval, count, nil
}

func intParam(q url.Values, name string, lo, hi int) (int, error) {
	if len(q[name]) > 1 {
		return 0, fmt.Errorf("%s is given %d times; give it once", name, len(q[name]))
	}
	v := q.Get(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s=%q is not a whole number from %d to %d", name, v, lo, hi)
	}
	return n, nil
}
