package proxy

import (
	"io"
	"net/http"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"lbscale/balancer/pool"
)

// Long-lived connections: a WebSocket (or any upgrade), a server-sent-event
// stream, a body still being copied STREAM_AFTER after its headers. Each
// is placed like a request, on a request slot, and keeps it while the
// backend works on the answer; once the answer shows what it is, the
// attempt converts: the slot goes back (and the queue is dispatched), the
// backend's connection count goes up, and its service time stops there.
// Otherwise a handful of open sockets would take every MAX_INFLIGHT slot of
// a backend that is doing no work, and the scaler would read a tunnel's
// hours as service time and start containers for them.
//
// Conversion may be noticed by the request's goroutine (modifyResponse,
// respBody.Read) or by the stream timer's, while the request may end at the
// same moment, by a panic too. phase settles it: request → converted →
// ended, or request → ended, each step one atomic operation, so the slot is
// given back exactly once and CloseConn follows OpenConn exactly once.

// The phases of an attempt.
const (
	phaseRequest int32 = iota // holds a request slot on backend
	phaseConn                 // converted: slot given back, counted by OpenConn
	phaseEnded                // ended; nothing more to give back
)

// convert turns the attempt into a long-lived connection, unless it is one
// already or has ended. Safe from any goroutine: what it reads of the
// attempt was written before the response it converts arrived.
func (a *attempt) convert() {
	if !a.phase.CompareAndSwap(phaseRequest, phaseConn) {
		return
	}
	h, b := a.h, a.backend
	// Counted before the slot goes back: a connection request that the
	// release dispatches must see this one.
	b.OpenConn()
	h.o.Metrics.Conns.Inc()
	b.AddBusy(time.Since(a.start))
	h.o.Flow.Done(time.Since(a.served))
	h.o.RetryBudget.end() // no longer a request in flight
	h.release(b)
}

// end gives back what the attempt holds when the request is over: its
// slot, with its service time counted, or its connection. The stream timer
// stops; should it fire all the same, phase makes it do nothing.
func (a *attempt) end() {
	h := a.h
	if a.timer != nil {
		a.timer.Stop()
	}
	if a.phase.Swap(phaseEnded) == phaseConn {
		a.backend.CloseConn()
		h.o.Metrics.Conns.Dec()
		// A connection request may be waiting for the room this one
		// leaves.
		h.o.Queue.Dispatch()
		return
	}
	if a.backend != nil {
		a.backend.AddBusy(time.Since(a.start))
		h.release(a.backend)
	}
	h.o.RetryBudget.end()
	h.o.Flow.Done(time.Since(a.served))
}

// watch looks at an answer about to be copied to the client: a 101 or an
// event stream converts now; any other body is wrapped so that it converts
// once it is still open StreamAfter from now.
func (h *Handler) watch(a *attempt, res *http.Response) {
	if res.StatusCode == http.StatusSwitchingProtocols || isEventStream(res.Header) {
		a.convert()
		return
	}
	if h.o.StreamAfter <= 0 || res.Body == nil || res.Body == http.NoBody {
		return
	}
	a.streamAt = time.Now().Add(h.o.StreamAfter)
	a.resBody = respBody{ReadCloser: res.Body, a: a}
	res.Body = &a.resBody
	// A body of unknown length is the shape of a long poll or a stream
	// that may send its headers and then nothing for minutes: no read
	// returns to notice the time, so a timer converts it. It costs two
	// allocations, which only such bodies pay; a body of known length
	// is checked at each read as its bytes come.
	if res.ContentLength < 0 {
		a.timer = time.AfterFunc(h.o.StreamAfter, a.convert)
	}
}

// respBody is a backend's response body as ReverseProxy copies it: a read
// that returns with the body still open at streamAt converts the attempt.
type respBody struct {
	io.ReadCloser
	a *attempt
}

func (b *respBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == nil && b.a.phase.Load() == phaseRequest && !time.Now().Before(b.a.streamAt) {
		b.a.convert()
	}
	return n, err
}

// wantsConn reports whether r asks for a long-lived connection: an upgrade
// (Upgrade, with upgrade among Connection's tokens, as ReverseProxy reads
// it) or an event stream (Accept names text/event-stream). It allocates
// nothing.
func wantsConn(r *http.Request) bool {
	if up := r.Header["Upgrade"]; len(up) > 0 && up[0] != "" && httpguts.HeaderValuesContainsToken(r.Header["Connection"], "upgrade") {
		return true
	}
	for _, v := range r.Header["Accept"] {
		if containsFold(v, "text/event-stream") {
			return true
		}
	}
	return false
}

// containsFold reports whether sub is in s, ignoring ASCII case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// isEventStream reports whether the Content-Type is text/event-stream,
// parameters aside (as ReverseProxy decides to flush at once).
func isEventStream(h http.Header) bool {
	const es = "text/event-stream"
	ct := strings.TrimLeft(h.Get("Content-Type"), " \t")
	if len(ct) < len(es) || !strings.EqualFold(ct[:len(es)], es) {
		return false
	}
	rest := ct[len(es):]
	return rest == "" || rest[0] == ';' || rest[0] == ' ' || rest[0] == '\t'
}

// pickFor places attempt a: by connection room when it asks for a
// long-lived connection, by the policy otherwise.
func (h *Handler) pickFor(a *attempt, w http.ResponseWriter, r *http.Request, exclude *pool.Backend) *pool.Backend {
	if a.longLived {
		return h.pickConn(exclude)
	}
	return h.pick(w, r, exclude)
}

// pickConn takes a slot for a request that asks for a long-lived
// connection: on the backend with the fewest connections cluster-wide
// among those with room under MaxConnections and a free slot, whatever the
// policy. A connection's cost is its life, not its start, so the policies'
// request counts say nothing about it: least connections is what HAProxy
// recommends for WebSockets. Ties go to the first from a start that turns
// with each pick. Nil: no backend has room and a slot (the request waits).
func (h *Handler) pickConn(exclude *pool.Backend) *pool.Backend {
	set := h.o.Sets.Set()
	n := len(set.Backends)
	if n == 0 {
		return nil
	}
	for range 4 { // a lost race for the slot picks again
		first := int(h.connTurn.Add(1) % uint64(n))
		var best *pool.Backend
		var fewest int64
		for i := range n {
			b := set.Backends[(first+i)%n]
			if b == exclude || !b.Available() {
				continue
			}
			c := b.ClusterConns()
			if h.o.MaxConnections > 0 && c >= h.o.MaxConnections {
				continue
			}
			if best == nil || c < fewest {
				best, fewest = b, c
			}
		}
		if best == nil {
			return nil
		}
		if best.TryAcquire() {
			return best
		}
	}
	return nil
}
