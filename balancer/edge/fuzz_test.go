package edge

import (
	"slices"
	"testing"
)

// FuzzScanner feeds arbitrary connection bytes to the scanner whole and cut
// into pieces every `every` bytes (as reads could deliver them). It must not
// panic, must reach the same verdicts however the bytes arrive, and may
// only answer with the statuses it documents.
func FuzzScanner(f *testing.F) {
	get := "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
	for _, s := range []string{
		get + get,
		"POST / HTTP/1.1\r\nContent-Length: 27\r\n\r\n" + get,
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1b;x=y\r\n" + get + "\r\n0\r\nT: 1\r\n\r\n" + get,
		"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"GET / HTTP/1.1\r\nX-A: 1\r\n\t2\r\n\r\n",
		"\r\n\r\n" + get,
		"GET / HTTP/1.1\r\n\r\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
	} {
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(7))
	}
	f.Fuzz(func(t *testing.T, raw []byte, every uint8) {
		whole := newScanner(testLimits)
		whole.feed(raw)
		cut := newScanner(testLimits)
		step := max(int(every), 1)
		for i := 0; i < len(raw); i += step {
			cut.feed(raw[i:min(i+step, len(raw))])
		}
		if !slices.Equal(whole.verdicts, cut.verdicts) {
			t.Fatalf("%q: whole %v, in %d-byte pieces %v", raw, whole.verdicts, step, cut.verdicts)
		}
		if len(whole.verdicts) > maxPending {
			t.Fatalf("%d pending verdicts", len(whole.verdicts))
		}
		for _, v := range whole.verdicts {
			switch v.Code {
			case 0, 400, 414, 431:
			default:
				t.Fatalf("%q: verdict %+v", raw, v)
			}
			if (v.Code == 0) != (v.Reason == "") {
				t.Fatalf("%q: verdict %+v", raw, v)
			}
		}
	})
}
