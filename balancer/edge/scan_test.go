package edge

import (
	"strings"
	"testing"
)

var testLimits = Limits{RequestLineBytes: 100, HeaderLineBytes: 80, HeaderBytes: 300}

// TestScanner feeds raw request streams whole and one byte at a time and
// checks the verdicts: one per header block, in order, and none past a
// refusal or framing the scanner cannot follow.
func TestScanner(t *testing.T) {
	get := "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
	cases := []struct {
		name string
		raw  string
		want []int
	}{
		{"one get", get, []int{0}},
		{"pipelined gets", get + get + get, []int{0, 0, 0}},
		{"bare LF lines", "GET / HTTP/1.1\nHost: h\n\n" + get, []int{0, 0}},
		{"content-length body skipped", "POST / HTTP/1.1\r\nContent-Length: 27\r\n\r\n" + get + get, []int{0, 0}},
		{"chunked body skipped", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1b;x=y\r\n" + get + "\r\n0\r\nT: 1\r\n\r\n" + get, []int{0, 0}},
		{"CL and TE", "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get, []int{400}},
		{"CL and TE with a leading blank", "POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding:  chunked\r\n\r\n", []int{400}},
		{"CL and TE with a tab", "POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding:\tchunked\r\n\r\n", []int{400}},
		{"CL and TE with a trailing blank", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked \r\nContent-Length: 4\r\n\r\n", []int{400}},
		{"TE folded", "POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", []int{400}},
		{"any obs-fold", "GET / HTTP/1.1\r\nX-A: 1\r\n\t2\r\n\r\n", []int{400}},
		{"HTTP/1.0 with TE", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", []int{400}},
		{"long request line", "GET /" + strings.Repeat("a", 100) + " HTTP/1.1\r\n\r\n", []int{414}},
		{"long header line", "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 80) + "\r\n\r\n", []int{431}},
		{"headers too large", "GET / HTTP/1.1\r\n" + strings.Repeat("X-A: 1234567890\r\n", 20) + "\r\n", []int{431}},
		{"bad content-length: gives up", "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc" + get, []int{0}},
		{"bad chunk: gives up", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n" + get, []int{0}},
	}
	for _, tc := range cases {
		for _, split := range []bool{false, true} {
			s := newScanner(testLimits)
			if split {
				for i := range len(tc.raw) {
					s.feed([]byte{tc.raw[i]})
				}
			} else {
				s.feed([]byte(tc.raw))
			}
			var got []int
			for _, v := range s.verdicts {
				got = append(got, v.Code)
			}
			if !equal(got, tc.want) {
				t.Errorf("%s (byte by byte %v): verdicts %v, want %v", tc.name, split, got, tc.want)
			}
		}
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
