package measure

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
)

// Kind is what became of a request that was sent.
type Kind uint8

// Kinds of outcome. Status keeps the HTTP code beside it (see Outcome), so
// "503 from the balancer's queue" and "502 from a dead backend" stay apart.
const (
	OK         Kind = iota // 2xx or 3xx
	Status                 // an HTTP response with status >= 400
	Timeout                // no complete answer within --timeout
	Connection             // reset, closed early, DNS: no HTTP answer
	Canceled               // the run was stopped while it was in flight
	Other                  // anything else (a bug in the tool, most likely)
	// Refused: nothing listened (ECONNREFUSED). Kept apart from Connection
	// because such a request never reached a server: a balancer that is
	// down refuses, one that drops requests it accepted resets.
	Refused
)

// Outcome is the result of one request as the driver saw it.
type Outcome struct {
	Kind   Kind
	Status int // HTTP status; 0 when there was no response
	// Backend is the X-Server-Id header of the response, "" when absent
	// (e.g. a 503 the balancer produced itself).
	Backend string
	Bytes   int64
	// Trace is the trace id the request carried in its traceparent header;
	// zero when it was sent without one.
	Trace TraceID
}

// Classify maps an HTTP status and a transport error to a Kind.
func Classify(status int, err error) Kind {
	if err == nil {
		if status >= 200 && status < 400 {
			return OK
		}
		return Status
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return Timeout
	case errors.Is(err, context.Canceled):
		return Canceled
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return Connection
	}
	var op *net.OpError
	var dns *net.DNSError
	if errors.As(err, &op) || errors.As(err, &dns) || strings.Contains(err.Error(), serverClosedIdle) {
		return Connection
	}
	return Other
}

// serverClosedIdle is the text of net/http's unexported error for a
// connection the peer closed before any request on it was answered. A
// client sees it on a fresh connection that was accepted and then closed
// at once, which is what a dead server behind a TCP proxy (Docker's
// userland proxy on a published port) looks like; it is a lost
// connection, not a tool bug.
const serverClosedIdle = "server closed idle connection"

// ErrKey names one kind of failure in the error table.
type ErrKey struct {
	Kind   Kind
	Status int
}

// String is the key used in summaries and CSV: "status_503", "timeout",
// "connection", "refused", "canceled", "other".
func (k ErrKey) String() string {
	switch k.Kind {
	case Status:
		return "status_" + strconv.Itoa(k.Status)
	case Timeout:
		return "timeout"
	case Connection:
		return "connection"
	case Refused:
		return "refused"
	case Canceled:
		return "canceled"
	case OK:
		return "ok"
	}
	return "other"
}
