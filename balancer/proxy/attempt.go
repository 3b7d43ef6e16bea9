package proxy

import (
	"context"
	mrand "math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"
	"unsafe"

	"lbscale/balancer/pool"
	"lbscale/balancer/tracing"
)

type ctxKey struct{}

// attempt is one request's state from ServeHTTP to the ReverseProxy hooks:
// which backend holds its slot, and what a retry needs. It is also the
// request's context (Value answers ctxKey with the attempt itself), the
// policy's Picker, and it holds the status writer and the request id's
// bytes, so that lbscale's own code makes one allocation per request here
// and one more for the request copy WithContext makes (TestHandlerAllocs).
type attempt struct {
	context.Context // the client request's
	h               *Handler

	backend *pool.Backend
	start   time.Time // when this attempt was placed, for Observer
	served  time.Time // when the first attempt was placed: service time runs from here
	retried bool
	// canRetry: the request may be sent twice (idempotent, no body).
	canRetry bool
	// next is the slot modifyResponse took for a retry on a status in
	// RetryOn; errorHandler moves it to backend at once.
	next *pool.Backend
	// w and in are what the policy sees when it picks (ReverseProxy hands
	// modifyResponse only the response): the client's writer and request
	// until the slot is taken, then sw and the request bound to this
	// context.
	w    http.ResponseWriter
	in   *http.Request
	sw   statusWriter
	id   string      // X-Request-Id, for the logs
	body *clientBody // the streamed rest of the body (nil: none)

	// idv is the X-Request-Id header value, shared by the response and
	// the request sent on (header values are never written in place, so
	// one slice serves both); idBuf holds a generated id's bytes.
	idv   [1]string
	idBuf [16]byte

	// longLived: the request asks for a long-lived connection (wantsConn),
	// so it is placed by connection room (pickConn), not by the policy.
	longLived bool
	// phase is phaseRequest, phaseConn or phaseEnded (see conn.go): the one
	// word that decides, whichever goroutine gets there first, whether the
	// request slot or the connection is given back, and that each is
	// given back once.
	phase atomic.Int32
	// streamAt is when a response body still open becomes a stream
	// (StreamAfter after its headers); resBody wraps that body, here so
	// that wrapping allocates nothing; timer, set for bodies of unknown
	// length only, converts one that stalls with no byte to read.
	streamAt time.Time
	resBody  respBody
	timer    *time.Timer

	// What the access log and the trace record: the queue wait and the
	// part of it spent waiting for a container to start, the attempts
	// made, the backend last tried, and the request's spans (nil: off).
	queue, cold time.Duration
	attempts    int
	tried       string
	why         RetryReason
	span        *tracing.Span
	upSpan      *tracing.Span

	// The forwarding headers' values (see forward), held here so that
	// setting them allocates nothing; fwdBuf holds the Forwarded element's
	// bytes when they fit.
	xff, xfh, xfp, fwd [1]string
	fwdBuf             [96]byte
}

// Value answers ctxKey with the attempt; every other key goes to the
// client request's context.
func (a *attempt) Value(key any) any {
	if key == (ctxKey{}) {
		return a
	}
	return a.Context.Value(key)
}

// Pick takes a slot for the request's first attempt: the queue calls it.
func (a *attempt) Pick() *pool.Backend { return a.h.pickFor(a, a.w, a.in, nil) }

// WaitsForRoom tells the queue that a long-lived request under
// MAX_CONNECTIONS may find no backend for want of connection room, while
// slots are free for the requests behind it.
func (a *attempt) WaitsForRoom() bool { return a.longLived && a.h.o.MaxConnections > 0 }

// newID makes a request id: 64 random bits in hex. Unique is what it must
// be, not secret, so it comes from the runtime's fast generator rather than
// from the kernel (a system call per request). The string's bytes live in
// the attempt, which is never written again, so it costs no allocation.
func (a *attempt) newID() string {
	v := mrand.Uint64()
	const digits = "0123456789abcdef"
	for i := range a.idBuf {
		a.idBuf[i] = digits[(v>>(60-4*i))&0xf]
	}
	return unsafe.String(&a.idBuf[0], len(a.idBuf))
}
