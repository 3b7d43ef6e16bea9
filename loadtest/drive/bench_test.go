package drive

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"lbscale/loadtest/measure"
)

// BenchmarkRequests measures the cost of one request through the driver's
// requester and recorder against a trivial local server, with 32 clients
// keeping it busy: ok/s is the most this machine can push (server included).
// The open-loop dispatcher adds one timer wake-up per batch of due requests.
func BenchmarkRequests(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(ServerIDHeader, "bench")
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	h := NewHTTP(HTTPConfig{Targets: []string{srv.URL}, Timeout: 10 * time.Second, KeepAlive: true, Conns: 32})
	defer h.Close()
	start := time.Now()
	rec := measure.New(measure.Config{Start: start, Targets: []string{srv.URL}})
	c := &Closed{Users: 32, Pick: func() int { return 0 }, New: h.Requester, Rec: rec, Limit: int64(b.N)}
	b.ReportAllocs()
	b.ResetTimer()
	c.Run(context.Background())
	b.StopTimer()
	b.ReportMetric(float64(rec.Report().Totals.OK)/time.Since(start).Seconds(), "ok/s")
}

// BenchmarkRecorder is the cost of recording one dispatched and completed
// request, the driver's per-request bookkeeping.
func BenchmarkRecorder(b *testing.B) {
	start := time.Now()
	rec := measure.New(measure.Config{Start: start, Targets: []string{"a"}})
	out := measure.Outcome{Kind: measure.OK, Status: 200, Backend: "web-1"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			due := time.Now()
			rec.Dispatched(due, 50*time.Microsecond, 0, false)
			rec.Done(0, due, due.Add(time.Millisecond), out)
		}
	})
}
