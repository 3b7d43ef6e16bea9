package proxy_test

import (
	"io"
	"net/http"
	"testing"
)

// BenchmarkTransport is one lean-path round trip over loopback to a raw
// backend, one request at a time on one kept-alive connection: the cost of
// the transport itself, including the check that a connection is clean
// before it is reused (scripts/bench prints it beside BenchmarkHandler).
func BenchmarkTransport(b *testing.B) {
	srv := newScripted(b, func(int, int, *http.Request) (string, bool) { return okAnswer, false })
	tr, _ := newTransport(0)
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, srv.url(), nil)
	buf := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		res, err := tr.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := res.Body.Read(buf); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
		res.Body.Close()
	}
	if n := srv.conns.Load(); n != 1 {
		b.Fatalf("%d backend connections, want 1 (one kept-alive connection)", n)
	}
}
