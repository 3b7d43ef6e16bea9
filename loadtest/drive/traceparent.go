package drive

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"

	"lbscale/loadtest/measure"
)

// TraceparentHeader is the W3C trace-context header (www.w3.org/TR/trace-context),
// in net/http's canonical spelling so it can index an http.Header directly.
const TraceparentHeader = "Traceparent"

// traceparentLen is the length of a version-00 value:
// "00-" + 32 hex digits + "-" + 16 hex digits + "-01".
const traceparentLen = 55

// traceparents makes the traceparent values of one requester. Each has its
// own generator, so workers share no lock; ids need to be unique, not
// unpredictable, so a PCG seeded from math/rand/v2 does.
type traceparents struct {
	rng rand.PCG
	buf [traceparentLen]byte
}

func newTraceparents() *traceparents {
	t := &traceparents{}
	t.rng.Seed(rand.Uint64(), rand.Uint64())
	return t
}

// next returns a fresh header value and the trace id in it. The value's
// string is the one allocation: an http.Header holds strings.
func (t *traceparents) next() (string, measure.TraceID) {
	var id measure.TraceID
	hi, lo := t.rng.Uint64(), t.rng.Uint64()
	if hi|lo == 0 {
		lo = 1 // all zeros is invalid
	}
	binary.BigEndian.PutUint64(id[:8], hi)
	binary.BigEndian.PutUint64(id[8:], lo)
	parent := t.rng.Uint64()
	if parent == 0 {
		parent = 1 // likewise
	}
	return formatTraceparent(&t.buf, id, parent), id
}

// formatTraceparent writes a version-00 traceparent with the sampled flag
// (01), so a tracing backend that honours the caller's decision records the
// request's spans: a trace id that nobody recorded cannot be looked up.
func formatTraceparent(buf *[traceparentLen]byte, id measure.TraceID, parent uint64) string {
	copy(buf[0:3], "00-")
	hex.Encode(buf[3:35], id[:])
	buf[35] = '-'
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], parent)
	hex.Encode(buf[36:52], p[:])
	copy(buf[52:], "-01")
	return string(buf[:])
}
