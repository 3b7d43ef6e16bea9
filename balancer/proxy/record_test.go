package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mccutchen/go-httpbin/v2/httpbin"

	"lbscale/balancer/accesslog"
	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
	"lbscale/balancer/proxy"
	"lbscale/balancer/tracing"
	"lbscale/internal/testenv"
	"lbscale/internal/testenv/otlptest"
)

// syncBuffer is the access log's stdout in these tests.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logLine is an access-log line as JSON decodes it.
type logLine struct {
	RequestID   string  `json:"request_id"`
	Method      string  `json:"method"`
	Path        string  `json:"path"`
	Query       string  `json:"query"`
	Status      int     `json:"status"`
	BytesOut    int64   `json:"bytes_out"`
	BytesIn     int64   `json:"bytes_in"`
	QueueMs     float64 `json:"queue_ms"`
	ColdStartMs float64 `json:"cold_start_ms"`
	UpstreamMs  float64 `json:"upstream_ms"`
	DurationMs  float64 `json:"duration_ms"`
	Pool        string  `json:"pool"`
	Backend     string  `json:"backend"`
	Attempts    int     `json:"attempts"`
	RetryReason string  `json:"retry_reason"`
	UserAgent   string  `json:"user_agent"`
	TraceID     string  `json:"trace_id"`
}

// swapSets is a pool whose backends the test changes.
type swapSets struct{ p atomic.Pointer[pool.Set] }

func (s *swapSets) Set() *pool.Set { return s.p.Load() }

// comingAlways says capacity is on its way (a scaler owns the pool).
type comingAlways struct{}

func (comingAlways) Coming() bool { return true }

// logFront is a handler over sets with an access log in a buffer.
type logFront struct {
	srv   *httptest.Server
	out   *syncBuffer
	log   *accesslog.Logger
	queue *proxy.Queue
}

func newLogFront(t *testing.T, sets proxy.Sets, o proxy.Options) *logFront {
	t.Helper()
	f := &logFront{out: &syncBuffer{}}
	var err error
	if f.log, err = accesslog.Open(accesslog.Options{Dest: "stdout", Stdout: f.out}); err != nil {
		t.Fatal(err)
	}
	if o.Queue == nil {
		o.Queue = proxy.NewQueue(8, 3*time.Second, nil)
	}
	f.queue = o.Queue
	o.Sets, o.AccessLog, o.Pool = sets, f.log, "web"
	if o.Policy == nil {
		o.Policy = firstAvailable{}
	}
	if o.UpstreamTimeout == 0 {
		o.UpstreamTimeout = 5 * time.Second
	}
	f.srv = httptest.NewServer(proxy.New(o))
	t.Cleanup(f.srv.Close)
	return f
}

// lines closes the log (flushing it) and decodes every line.
func (f *logFront) lines(t *testing.T) []logLine {
	t.Helper()
	if err := f.log.Close(); err != nil {
		t.Fatal(err)
	}
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(f.out.String()))
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("access-log line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

func logGet(t *testing.T, url string, hdr map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

// The access log's fields for a plain request, a queued one, one that
// waited for a container to start, a retried one and a refused one: what
// only the balancer knows is in them.
func TestAccessLogFields(t *testing.T) {
	hello := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(200 * time.Millisecond)
		}
		_, _ = w.Write([]byte("hello"))
	}))
	defer hello.Close()
	addr := hello.Listener.Addr().String()

	t.Run("normal", func(t *testing.T) {
		sets := &swapSets{}
		sets.p.Store(&pool.Set{Backends: []*pool.Backend{pool.New("b0", addr, 1, 4)}, Version: 1})
		f := newLogFront(t, sets, proxy.Options{})
		res := logGet(t, f.srv.URL+"/items?token=secret", map[string]string{"User-Agent": "probe/1", "X-Request-Id": "req-1"})
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		ls := f.lines(t)
		if len(ls) != 1 {
			t.Fatalf("%d lines, want 1", len(ls))
		}
		l := ls[0]
		if l.RequestID != "req-1" || l.Method != "GET" || l.Path != "/items" || l.Query != "REDACTED" || l.Status != 200 ||
			l.BytesOut != 5 || l.Pool != "web" || l.Backend != "b0" || l.Attempts != 1 || l.UserAgent != "probe/1" ||
			l.QueueMs != 0 || l.ColdStartMs != 0 || l.RetryReason != "" || l.DurationMs <= 0 || l.UpstreamMs <= 0 {
			t.Fatalf("entry %+v", l)
		}
		if strings.Contains(f.out.String(), "secret") {
			t.Fatal("the query's token reached the log")
		}
	})

	t.Run("queued", func(t *testing.T) {
		sets := &swapSets{}
		sets.p.Store(&pool.Set{Backends: []*pool.Backend{pool.New("b0", addr, 1, 1)}, Version: 1})
		f := newLogFront(t, sets, proxy.Options{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); logGet(t, f.srv.URL+"/slow", map[string]string{"X-Request-Id": "first"}) }()
		testenv.Eventually(t, 3*time.Second, "the first request holds the slot", func() bool {
			return sets.Set().Backends[0].Local() == 1
		})
		logGet(t, f.srv.URL+"/", map[string]string{"X-Request-Id": "second"})
		wg.Wait()
		found := false
		for _, l := range f.lines(t) {
			if l.RequestID != "second" {
				continue
			}
			found = true
			if l.QueueMs < 50 || l.ColdStartMs != 0 || l.Status != 200 {
				t.Fatalf("queued entry %+v, want about 200 ms of queue and no cold start", l)
			}
		}
		if !found {
			t.Fatal("no entry for the queued request")
		}
	})

	t.Run("cold start", func(t *testing.T) {
		sets := &swapSets{}
		sets.p.Store(&pool.Set{Version: 1})
		q := proxy.NewQueue(8, 3*time.Second, nil)
		f := newLogFront(t, sets, proxy.Options{Queue: q, Prospects: comingAlways{}, ColdStartHeader: true})
		go func() {
			// The container "starts": ready 150 ms after the request came.
			for q.Depth() == 0 {
				time.Sleep(time.Millisecond)
			}
			time.Sleep(150 * time.Millisecond)
			b := pool.New("b0", addr, 1, 4)
			b.Since = time.Now()
			sets.p.Store(&pool.Set{Backends: []*pool.Backend{b}, Version: 2})
			q.Dispatch()
		}()
		res := logGet(t, f.srv.URL+"/", nil)
		if res.StatusCode != 200 || res.Header.Get(proxy.HeaderColdStart) == "" {
			t.Fatalf("status %d, %s %q", res.StatusCode, proxy.HeaderColdStart, res.Header.Get(proxy.HeaderColdStart))
		}
		l := f.lines(t)[0]
		if l.ColdStartMs < 100 || l.QueueMs < l.ColdStartMs || l.Backend != "b0" {
			t.Fatalf("cold-start entry %+v", l)
		}
	})

	t.Run("retried", func(t *testing.T) {
		dead := newRawServer(t, func(_ int, c net.Conn) {
			_, _ = c.Read(make([]byte, 4096))
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			c.Close()
		})
		sets := &swapSets{}
		sets.p.Store(&pool.Set{Backends: []*pool.Backend{pool.New("dead", dead.ln.Addr().String(), 1, 4), pool.New("b1", addr, 1, 4)}, Version: 1})
		f := newLogFront(t, sets, proxy.Options{})
		if res := logGet(t, f.srv.URL+"/", nil); res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		l := f.lines(t)[0]
		if l.Attempts != 2 || l.RetryReason != "reset" || l.Backend != "b1" || l.Status != 200 {
			t.Fatalf("retried entry %+v", l)
		}
	})

	t.Run("refused", func(t *testing.T) {
		sets := &swapSets{}
		sets.p.Store(&pool.Set{Version: 1})
		f := newLogFront(t, sets, proxy.Options{Prospects: neverComing{}})
		if res := logGet(t, f.srv.URL+"/", nil); res.StatusCode != 503 {
			t.Fatalf("status %d", res.StatusCode)
		}
		l := f.lines(t)[0]
		if l.Status != 503 || l.Attempts != 0 || l.Backend != "" || l.UpstreamMs != 0 {
			t.Fatalf("refused entry %+v", l)
		}
	})
}

// neverComing says no capacity is on its way.
type neverComing struct{}

func (neverComing) Coming() bool { return false }

// With tracing on, the backend receives the client's trace with the
// upstream attempt's span id, and the spans reach a real OTLP receiver as
// request → queue / upstream attempt.
func TestTracePropagatedAndExported(t *testing.T) {
	rc := otlptest.New(t)
	tr, err := tracing.FromEnv(func(k string) (string, bool) {
		if k == "OTEL_EXPORTER_OTLP_ENDPOINT" {
			return rc.URL, true
		}
		return "", false
	})
	if err != nil || tr == nil {
		t.Fatalf("FromEnv: %v %v", tr, err)
	}
	// go-httpbin, a server nobody here wrote, tells what headers it got.
	backend := httptest.NewServer(httpbin.New())
	defer backend.Close()
	sets := &swapSets{}
	sets.p.Store(&pool.Set{Backends: []*pool.Backend{pool.New("b0", backend.Listener.Addr().String(), 1, 4)}, Version: 1})
	f := newLogFront(t, sets, proxy.Options{Tracer: tr})
	const traceID, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	req, err := http.NewRequest(http.MethodGet, f.srv.URL+"/headers", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Traceparent", "00-"+traceID+"-"+clientSpan+"-01")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var echoed struct {
		Headers map[string][]string `json:"headers"`
	}
	err = json.NewDecoder(res.Body).Decode(&echoed)
	res.Body.Close()
	if err != nil || res.StatusCode != 200 || len(echoed.Headers["Traceparent"]) != 1 {
		t.Fatalf("go-httpbin /headers: %d %v %v", res.StatusCode, err, echoed.Headers)
	}
	tp := echoed.Headers["Traceparent"][0]
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || parts[1] != traceID || parts[2] == clientSpan {
		t.Fatalf("backend traceparent %q: want trace %s with a span of the balancer's", tp, traceID)
	}
	if err := tr.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	server := rc.Span(t, "GET web")
	up := rc.Span(t, "upstream 1")
	if hex.EncodeToString(server.GetTraceId()) != traceID || hex.EncodeToString(server.GetParentSpanId()) != clientSpan {
		t.Fatalf("server span trace %x parent %x", server.GetTraceId(), server.GetParentSpanId())
	}
	if !bytes.Equal(up.GetParentSpanId(), server.GetSpanId()) || hex.EncodeToString(up.GetSpanId()) != parts[2] {
		t.Fatalf("upstream span %x (parent %x), backend saw %s, server span %x", up.GetSpanId(), up.GetParentSpanId(), parts[2], server.GetSpanId())
	}
	if l := f.lines(t)[0]; l.TraceID != traceID {
		t.Fatalf("access log trace_id %q, want %s", l.TraceID, traceID)
	}
}

// BenchmarkObservability is BenchmarkHandler's whole request path with
// the access log and tracing off (the default), with the access log on
// (its writer draining to io.Discard) and with traces on (every request
// sampled, exported in batches to a real OTLP receiver): the cost per
// request of each, side by side (docs/performance.md).
func BenchmarkObservability(b *testing.B) {
	pol := func() policy.Policy { p, _ := policy.New("least-connections", policy.Options{Seed: 1}); return p }
	alog, err := accesslog.Open(accesslog.Options{Dest: "stdout", Stdout: io.Discard, Buffer: 1 << 16})
	if err != nil {
		b.Fatal(err)
	}
	defer alog.Close()
	rc := otlptest.New(b)
	tr, err := tracing.FromEnv(func(k string) (string, bool) {
		switch k {
		case "OTEL_EXPORTER_OTLP_ENDPOINT":
			return rc.URL, true
		case "OTEL_TRACES_SAMPLER":
			return "always_on", true
		}
		return "", false
	})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{
		{"off", policyHandler(pol())},
		{"access-log", policyHandler(pol(), func(o *proxy.Options) { o.AccessLog = alog })},
		{"traces", policyHandler(pol(), func(o *proxy.Options) { o.Tracer = tr })},
	} {
		b.Run(tc.name, func(b *testing.B) {
			w := &sink{h: http.Header{}}
			dropped := alog.Dropped()
			b.ReportAllocs()
			for b.Loop() {
				serveOne(tc.h, w)
			}
			b.ReportMetric(float64(alog.Dropped()-dropped)/float64(b.N), "dropped/op")
		})
	}
}
