package measure

import (
	"encoding/hex"
	"time"
)

// TraceID is a W3C trace-context trace id, sent in a request's traceparent
// header. The zero value means "not traced": the specification forbids an
// all-zero id, so no traced request carries it.
type TraceID [16]byte

// IsZero reports whether the request was not traced.
func (id TraceID) IsZero() bool { return id == TraceID{} }

// String is the id as it appears in the header and in trace stores: 32
// lower-case hex digits.
func (id TraceID) String() string { return hex.EncodeToString(id[:]) }

// SlowestKept is how many of the slowest traced requests a Recorder keeps,
// overall and per target: enough to see what a p99 is made of past a single
// outlier, few enough that keeping them costs one comparison per request.
const SlowestKept = 10

// slowReq is a traced request as the recorder keeps it, raw: formatting
// waits for Report so that recording allocates nothing.
type slowReq struct {
	trace   TraceID
	latency time.Duration
	due     time.Time
	target  int
	status  int
	key     ErrKey
	backend string
}

// slowest keeps the n slowest requests offered to it, slowest first. Its
// slice is allocated once at n; once full, a request no slower than the
// fastest kept (nearly every request of a long run) costs one comparison,
// and a slower one a shift of at most n entries. Of equal latencies the
// first offered stays ahead, so the result does not depend on luck.
type slowest struct {
	n    int
	reqs []slowReq
}

func newSlowest(n int) slowest { return slowest{n: n, reqs: make([]slowReq, 0, n)} }

func (s *slowest) offer(r slowReq) {
	if s.n <= 0 {
		return
	}
	if len(s.reqs) == s.n {
		if r.latency <= s.reqs[s.n-1].latency {
			return
		}
		s.reqs = s.reqs[:s.n-1]
	}
	i := len(s.reqs)
	for i > 0 && s.reqs[i-1].latency < r.latency {
		i--
	}
	s.reqs = append(s.reqs, slowReq{})
	copy(s.reqs[i+1:], s.reqs[i:])
	s.reqs[i] = r
}

// SlowRequest is one of the slowest traced requests of a run, with what a
// trace store needs to find it (TraceID) and what the reader needs to judge
// it without the trace store.
type SlowRequest struct {
	TraceID   string  `json:"trace_id"`
	LatencyMS float64 `json:"latency_ms"` // from the intended send time, as the percentiles
	// Status is the HTTP status, 0 when no response came (then Outcome says
	// why: timeout, connection, refused, other).
	Status  int    `json:"status"`
	Outcome string `json:"outcome"` // "ok", "status_503", "timeout", …
	Target  string `json:"target"`
	Backend string `json:"backend,omitempty"` // X-Server-Id of the answer
	// At is the intended send time; At + latency is when the answer ended.
	At time.Time `json:"at"`
}

// report formats the kept requests; nil when none was traced, so a run
// without tracing has no slowest list at all.
func (s *slowest) report(urls []string) []SlowRequest {
	if len(s.reqs) == 0 {
		return nil
	}
	out := make([]SlowRequest, len(s.reqs))
	for i, r := range s.reqs {
		out[i] = SlowRequest{
			TraceID:   r.trace.String(),
			LatencyMS: float64(r.latency) / float64(time.Millisecond),
			Status:    r.status,
			Outcome:   r.key.String(),
			Target:    urls[r.target],
			Backend:   r.backend,
			At:        r.due,
		}
	}
	return out
}
