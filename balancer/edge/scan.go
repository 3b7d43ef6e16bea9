package edge

import (
	"bytes"
	"net/http"
	"strconv"
)

// Verdict is the scanner's judgement of one request's header block: Code 0
// lets it through; anything else is answered with that status and the
// connection closed.
type Verdict struct {
	Code   int
	Reason string
}

// Scanner states.
const (
	stHead      = iota // request line and header lines
	stBody             // Content-Length body bytes
	stChunkSize        // a chunk-size line
	stChunkData        // chunk bytes
	stChunkEnd         // the CRLF after chunk bytes
	stTrailer          // trailer lines after the last chunk
	stOff              // lost or gave up: no more verdicts
)

// keepLine is how much of a line the scanner keeps to read a header's name
// and value; longer lines are only counted. The fields it reads
// (Content-Length, Transfer-Encoding) are short when valid.
const keepLine = 256

// maxPending bounds the verdicts of pipelined requests not yet handled.
const maxPending = 64

// scanner follows the framing of the HTTP/1.1 requests on one connection as
// Go's server will parse them (request line, headers, then a Content-Length
// or chunked body), and judges each header block on the raw bytes, before
// net/http normalises them away: net/http drops Content-Length when
// Transfer-Encoding is present, ignores Transfer-Encoding on HTTP/1.0 and
// joins obs-folded lines, so a handler cannot see these smuggling signs.
//
// It errs to silence, never to a false refusal: on any framing it cannot
// follow (an invalid Content-Length or chunk line, which net/http refuses
// too) it stops judging the connection.
type scanner struct {
	lim Limits

	st        int
	line      []byte // the current line's first keepLine bytes
	lineLen   int    // the current line's full length
	lastCR    bool   // the current line's last byte so far is CR
	tail      []byte // the last bytes of the request line (its version)
	remaining int64

	// the header block being read
	started             bool
	total               int
	old                 bool // HTTP/1.0
	cls, tes            []string
	bad                 Verdict
	verdicts            []Verdict
	requestLineFinished bool
}

func newScanner(lim Limits) *scanner {
	return &scanner{lim: lim, line: make([]byte, 0, keepLine)}
}

// feed scans p, the next bytes read from the connection.
func (s *scanner) feed(p []byte) {
	for len(p) > 0 && s.st != stOff {
		switch s.st {
		case stBody, stChunkData:
			n := int64(len(p))
			if n > s.remaining {
				n = s.remaining
			}
			p = p[n:]
			s.remaining -= n
			if s.remaining == 0 {
				if s.st == stBody {
					s.st = stHead
				} else {
					s.st, s.remaining = stChunkEnd, 2
				}
			}
		case stChunkEnd:
			// Go's chunked reader wants exactly CRLF after the data.
			want := "\r\n"[2-s.remaining:]
			if p[0] != want[0] {
				s.st = stOff
				return
			}
			p = p[1:]
			s.remaining--
			if s.remaining == 0 {
				s.st = stChunkSize
			}
		default:
			i := bytes.IndexByte(p, '\n')
			chunk := p
			if i >= 0 {
				chunk = p[:i]
				p = p[i+1:]
			} else {
				p = nil
			}
			s.lineLen += len(chunk)
			if len(chunk) > 0 {
				s.lastCR = chunk[len(chunk)-1] == '\r'
			}
			if room := keepLine - len(s.line); room > 0 {
				s.line = append(s.line, chunk[:min(room, len(chunk))]...)
			}
			if s.st == stHead && !s.requestLineFinished {
				s.tail = append(s.tail, chunk...)
				if len(s.tail) > 16 {
					s.tail = s.tail[len(s.tail)-16:]
				}
			}
			if i >= 0 {
				s.endLine()
				s.line, s.lineLen, s.lastCR = s.line[:0], 0, false
			}
		}
	}
}

func trimCR(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == '\r' {
		return b[:len(b)-1]
	}
	return b
}

func (s *scanner) fail(code int, reason string) {
	if s.bad.Code == 0 {
		s.bad = Verdict{Code: code, Reason: reason}
	}
}

func (s *scanner) endLine() {
	line := trimCR(s.line)
	full := s.lineLen // without the line's CRLF
	if s.lastCR {
		full--
	}
	switch s.st {
	case stChunkSize:
		if full >= 4096 { // Go's chunked reader refuses longer lines
			s.st = stOff
			return
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		line = bytes.TrimRight(line, " \t")
		n, err := strconv.ParseUint(string(line), 16, 63)
		if err != nil || len(line) == 0 {
			s.st = stOff
			return
		}
		if n == 0 {
			s.st = stTrailer
			return
		}
		s.st, s.remaining = stChunkData, int64(n)
		return
	case stTrailer:
		if len(line) == 0 {
			s.st = stHead
		}
		return
	}
	// stHead
	if !s.started {
		if len(line) == 0 && full == 0 {
			return // a blank line before a request
		}
		s.started = true
		s.total = 0
		if full > s.lim.RequestLineBytes {
			s.fail(http.StatusRequestURITooLong, "request line longer than MAX_REQUEST_LINE_BYTES")
		}
		tail := string(trimCR(s.tail))
		s.old = len(tail) >= 8 && tail[len(tail)-8:] == "HTTP/1.0"
		s.requestLineFinished = true
		s.total += full + 2
		return
	}
	s.total += full + 2
	if len(line) == 0 && full == 0 {
		s.endBlock()
		return
	}
	if line[0] == ' ' || line[0] == '\t' {
		s.fail(http.StatusBadRequest, "obsolete line folding in a header")
		return
	}
	if full > s.lim.HeaderLineBytes {
		s.fail(http.StatusRequestHeaderFieldsTooLarge, "header line longer than MAX_HEADER_LINE_BYTES")
		return
	}
	name, value, ok := bytes.Cut(line, []byte{':'})
	if !ok {
		return // net/http refuses it with 400
	}
	value = bytes.Trim(value, " \t")
	switch {
	case asciiEqualFold(name, "Content-Length"):
		s.cls = append(s.cls, string(value))
	case asciiEqualFold(name, "Transfer-Encoding"):
		s.tes = append(s.tes, string(value))
	}
}

// endBlock judges the header block just ended and sets up its body.
func (s *scanner) endBlock() {
	if s.total > s.lim.HeaderBytes {
		s.fail(http.StatusRequestHeaderFieldsTooLarge, "headers larger than MAX_HEADER_BYTES")
	}
	switch {
	case len(s.tes) > 0 && s.old:
		s.fail(http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request")
	case len(s.tes) > 0 && len(s.cls) > 0:
		s.fail(http.StatusBadRequest, "both Content-Length and Transfer-Encoding")
	}
	v, cls, tes := s.bad, s.cls, s.tes
	s.started, s.requestLineFinished, s.tail = false, false, s.tail[:0]
	s.cls, s.tes, s.bad = s.cls[:0], s.tes[:0], Verdict{}
	if len(s.verdicts) >= maxPending {
		s.st = stOff
		return
	}
	s.verdicts = append(s.verdicts, v)
	if v.Code != 0 {
		s.st = stOff // answered and closed: nothing after it is served
		return
	}
	switch {
	case len(tes) > 0:
		if len(tes) != 1 || !asciiEqualFold([]byte(tes[0]), "chunked") {
			s.st = stOff // net/http answers 501 and closes
			return
		}
		s.st = stChunkSize
	case len(cls) > 0:
		n, err := strconv.ParseUint(cls[0], 10, 63)
		for _, c := range cls[1:] {
			if c != cls[0] {
				err = strconv.ErrSyntax
			}
		}
		if err != nil {
			s.st = stOff // net/http answers 400 and closes
			return
		}
		if n > 0 {
			s.st, s.remaining = stBody, int64(n)
		}
	}
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
