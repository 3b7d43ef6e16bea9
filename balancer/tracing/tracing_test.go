package tracing

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"lbscale/internal/testenv/otlptest"
)

func lookupOf(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

func newTracer(t *testing.T, env map[string]string) *Tracer {
	t.Helper()
	tr, err := FromEnv(lookupOf(env))
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	if tr == nil {
		t.Fatal("FromEnv returned nil with an endpoint set")
	}
	return tr
}

func shutdown(t *testing.T, tr *Tracer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func attr(s *tracepb.Span, key string) *commonpb.AnyValue {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue()
		}
	}
	return nil
}

const (
	clientTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpanID  = "00f067aa0ba902b7"
)

// front is the balancer's request path in miniature: a server span per
// request, a measured queue wait, one upstream attempt through
// httputil.ReverseProxy with the attempt's traceparent injected. The backend
// records the traceparent it received.
type front struct {
	srv      *httptest.Server
	mu       sync.Mutex // guards traceIDs, backTP
	traceIDs []string
	backTP   []string
}

func newFront(t *testing.T, tr *Tracer, status int) *front {
	t.Helper()
	f := &front{}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.backTP = append(f.backTP, r.Header.Get("Traceparent"))
		f.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(backend.Close)
	target, _ := url.Parse(backend.URL)

	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived := time.Now()
		ctx, sp := tr.Request(r.Context(), r, "api")
		q := sp.Child("queue", arrived)
		q.End(time.Now())
		actx, at := sp.Attempt(ctx, target.Host, 1)
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				at.Inject(pr.Out.Header)
			},
			ModifyResponse: func(res *http.Response) error {
				at.SetStatus(res.StatusCode)
				return nil
			},
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r.WithContext(actx))
		at.End(time.Now())
		sp.SetStatus(rec.Code)
		sp.SetAttr("lbscale.outcome", "proxied")
		f.mu.Lock()
		f.traceIDs = append(f.traceIDs, sp.TraceID())
		f.mu.Unlock()
		sp.End(time.Now())
		w.WriteHeader(rec.Code)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *front) get(t *testing.T, traceparent string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/items/7", nil)
	if traceparent != "" {
		req.Header.Set("Traceparent", traceparent)
		req.Header.Set("Tracestate", "vendor=client")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
}

func (f *front) last() (traceID, backendTP string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.traceIDs[len(f.traceIDs)-1], f.backTP[len(f.backTP)-1]
}

func hexID(b []byte) string { return hex.EncodeToString(b) }

// A client's traceparent is continued: the server span is the child of the
// client's span in the client's trace, queue and attempt are its children,
// and the backend receives the attempt's span as its parent. The exporter
// compresses here (read by the SDK from the process environment), so the
// receiver's gzip path runs too.
func TestRequestContinuesClientTrace(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
	rc := otlptest.New(t)
	tr := newTracer(t, map[string]string{EnvEndpoint: rc.URL, EnvServiceName: "edge-test"})
	f := newFront(t, tr, http.StatusBadGateway)

	f.get(t, "00-"+clientTraceID+"-"+clientSpanID+"-01")
	traceID, backTP := f.last()
	shutdown(t, tr) // flushes the batch: no sleep or poll needed

	_, paths := rc.Got()
	if len(paths) == 0 || paths[0] != "/v1/traces" {
		t.Fatalf("export paths = %v, want /v1/traces", paths)
	}
	server := rc.Span(t, "GET api")
	if got := hexID(server.GetTraceId()); got != clientTraceID {
		t.Errorf("server trace id = %s, want the client's %s", got, clientTraceID)
	}
	if got := hexID(server.GetParentSpanId()); got != clientSpanID {
		t.Errorf("server parent = %s, want the client's span %s", got, clientSpanID)
	}
	if server.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
		t.Errorf("server kind = %v", server.GetKind())
	}
	if traceID != clientTraceID {
		t.Errorf("TraceID() = %q, want %s", traceID, clientTraceID)
	}
	if ts := server.GetTraceState(); ts != "vendor=client" {
		t.Errorf("server tracestate = %q, want the client's", ts)
	}
	for key, want := range map[string]string{
		"http.request.method": "GET",
		"url.path":            "/items/7",
		"server.address":      "127.0.0.1",
		"client.address":      "127.0.0.1",
		"lbscale.pool":        "api",
		"lbscale.outcome":     "proxied",
	} {
		if got := attr(server, key).GetStringValue(); got != want {
			t.Errorf("server %s = %q, want %q", key, got, want)
		}
	}
	if got := attr(server, "http.response.status_code").GetIntValue(); got != http.StatusBadGateway {
		t.Errorf("server status code = %d", got)
	}
	if server.GetStatus().GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("server status = %v, want error for a 502", server.GetStatus())
	}

	for _, name := range []string{"queue", "upstream 1"} {
		c := rc.Span(t, name)
		if !bytes.Equal(c.GetParentSpanId(), server.GetSpanId()) || !bytes.Equal(c.GetTraceId(), server.GetTraceId()) {
			t.Errorf("%s: trace %x parent %x, want trace %x parent %x", name,
				c.GetTraceId(), c.GetParentSpanId(), server.GetTraceId(), server.GetSpanId())
		}
	}
	up := rc.Span(t, "upstream 1")
	if up.GetKind() != tracepb.Span_SPAN_KIND_CLIENT {
		t.Errorf("attempt kind = %v, want client", up.GetKind())
	}
	if got := attr(up, "lbscale.attempt").GetIntValue(); got != 1 {
		t.Errorf("lbscale.attempt = %d", got)
	}
	if got := attr(up, "lbscale.backend").GetStringValue(); !strings.HasPrefix(got, "127.0.0.1:") {
		t.Errorf("lbscale.backend = %q", got)
	}
	want := "00-" + clientTraceID + "-" + hexID(up.GetSpanId()) + "-01"
	if backTP != want {
		t.Errorf("backend traceparent = %q, want %q (the attempt's span)", backTP, want)
	}

	var service string
	for _, kv := range rc.Resource() {
		if kv.GetKey() == "service.name" {
			service = kv.GetValue().GetStringValue()
		}
	}
	if service != "edge-test" {
		t.Errorf("service.name = %q, want OTEL_SERVICE_NAME", service)
	}
}

// Child spans carry the start the proxy measured, not the time they were
// created, and the end it passes.
func TestChildKeepsMeasuredTimes(t *testing.T) {
	rc := otlptest.New(t)
	tr := newTracer(t, map[string]string{EnvEndpoint: rc.URL})
	r := httptest.NewRequest(http.MethodPost, "http://shop.example:8080/cart", nil)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	_, sp := tr.Request(context.Background(), r, "shop")
	cold := sp.Child("cold start", t0)
	cold.End(t0.Add(1500 * time.Millisecond))
	sp.SetStatus(http.StatusNotFound)
	sp.End(t0.Add(2 * time.Second))
	shutdown(t, tr)

	c := rc.Span(t, "cold start")
	if c.GetStartTimeUnixNano() != uint64(t0.UnixNano()) ||
		c.GetEndTimeUnixNano() != uint64(t0.Add(1500*time.Millisecond).UnixNano()) {
		t.Errorf("cold start = [%d, %d], want [%d, +1.5s]", c.GetStartTimeUnixNano(), c.GetEndTimeUnixNano(), t0.UnixNano())
	}
	s := rc.Span(t, "POST shop")
	if len(s.GetParentSpanId()) != 0 {
		t.Errorf("server span without traceparent has parent %x", s.GetParentSpanId())
	}
	if got := attr(s, "server.address").GetStringValue(); got != "shop.example" {
		t.Errorf("server.address = %q, want host without port", got)
	}
	if s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
		t.Error("a 404 marked the server span as an error")
	}
}

// Without a traceparent, the default sampler (parentbased_always_on) starts a
// new sampled trace; always_off records nothing yet still propagates the
// trace context, flags 00, so the backend does not start a trace of its own.
func TestSampling(t *testing.T) {
	t.Run("new trace sampled", func(t *testing.T) {
		rc := otlptest.New(t)
		tr := newTracer(t, map[string]string{EnvEndpoint: rc.URL, EnvTracesSampler: "parentbased_always_on"})
		f := newFront(t, tr, http.StatusOK)
		f.get(t, "")
		traceID, backTP := f.last()
		shutdown(t, tr)

		server := rc.Span(t, "GET api")
		up := rc.Span(t, "upstream 1")
		if traceID == "" || traceID != hexID(server.GetTraceId()) {
			t.Errorf("TraceID() = %q, exported %x", traceID, server.GetTraceId())
		}
		if len(server.GetParentSpanId()) != 0 {
			t.Errorf("new trace's server span has parent %x", server.GetParentSpanId())
		}
		if want := "00-" + traceID + "-" + hexID(up.GetSpanId()) + "-01"; backTP != want {
			t.Errorf("backend traceparent = %q, want %q", backTP, want)
		}
		if server.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR {
			t.Error("a 200 marked the server span as an error")
		}
	})

	for _, tc := range []struct {
		name, client string
	}{
		{"always_off new trace", ""},
		{"always_off client trace", "00-" + clientTraceID + "-" + clientSpanID + "-01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := otlptest.New(t)
			tr := newTracer(t, map[string]string{EnvEndpoint: rc.URL, EnvTracesSampler: "always_off"})
			f := newFront(t, tr, http.StatusOK)
			f.get(t, tc.client)
			traceID, backTP := f.last()
			shutdown(t, tr)

			if spans, paths := rc.Got(); len(spans) != 0 || len(paths) != 0 {
				t.Errorf("always_off exported %d spans in %d requests", len(spans), len(paths))
			}
			if traceID != "" {
				t.Errorf("TraceID() = %q for an unsampled trace, want \"\"", traceID)
			}
			parts := strings.Split(backTP, "-")
			if len(parts) != 4 || parts[0] != "00" || parts[3] != "00" {
				t.Fatalf("backend traceparent = %q, want version 00 and flags 00", backTP)
			}
			if tc.client != "" && parts[1] != clientTraceID {
				t.Errorf("backend trace id = %s, want the client's %s", parts[1], clientTraceID)
			}
			if parts[2] == clientSpanID || parts[2] == "0000000000000000" {
				t.Errorf("backend parent span = %s, want the balancer's own span", parts[2])
			}
		})
	}
}

// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is the full URL, used as given.
func TestTracesEndpointUsedAsGiven(t *testing.T) {
	rc := otlptest.New(t)
	tr := newTracer(t, map[string]string{
		EnvTracesEndpoint: rc.URL + "/custom/traces",
		EnvEndpoint:       "http://unused.invalid:1",
	})
	_, sp := tr.Request(context.Background(), httptest.NewRequest(http.MethodGet, "/", nil), "p")
	sp.End(time.Now())
	shutdown(t, tr)
	if _, paths := rc.Got(); len(paths) != 1 || paths[0] != "/custom/traces" {
		t.Errorf("export paths = %v, want [/custom/traces]", paths)
	}
}

// The SDK only logs an unknown OTEL_TRACES_SAMPLER and falls back to its
// default; FromEnv refuses it, naming the variable.
func TestFromEnv(t *testing.T) {
	const ep = "http://127.0.0.1:4318"
	for _, tc := range []struct {
		name    string
		env     map[string]string
		on      bool
		errName string // the variable the error must name; "" for no error
	}{
		{"nothing set", nil, false, ""},
		{"sampler alone", map[string]string{EnvTracesSampler: "always_on"}, false, ""},
		{"endpoint", map[string]string{EnvEndpoint: ep}, true, ""},
		{"traces endpoint", map[string]string{EnvTracesEndpoint: ep + "/v1/traces"}, true, ""},
		{"exporter otlp alone", map[string]string{EnvTracesExporter: "otlp"}, true, ""},
		{"exporter none", map[string]string{EnvTracesExporter: "none", EnvEndpoint: ep}, false, ""},
		{"sdk disabled", map[string]string{EnvSDKDisabled: "TRUE", EnvEndpoint: ep}, false, ""},
		{"sdk enabled", map[string]string{EnvSDKDisabled: "false", EnvEndpoint: ep}, true, ""},
		{"ratio", map[string]string{EnvEndpoint: ep, EnvTracesSampler: "parentbased_traceidratio", EnvTracesSamplerArg: "0.25"}, true, ""},
		{"protocol http/protobuf", map[string]string{EnvEndpoint: ep, EnvProtocol: "http/protobuf"}, true, ""},
		{"bogus sampler", map[string]string{EnvEndpoint: ep, EnvTracesSampler: "bogus"}, false, EnvTracesSampler},
		{"ratio above 1", map[string]string{EnvEndpoint: ep, EnvTracesSampler: "traceidratio", EnvTracesSamplerArg: "2"}, false, EnvTracesSamplerArg},
		{"ratio not a number", map[string]string{EnvEndpoint: ep, EnvTracesSampler: "parentbased_traceidratio", EnvTracesSamplerArg: "half"}, false, EnvTracesSamplerArg},
		{"exporter zipkin", map[string]string{EnvTracesExporter: "zipkin"}, false, EnvTracesExporter},
		{"endpoint without scheme", map[string]string{EnvEndpoint: "collector:4318"}, false, EnvEndpoint},
		{"traces endpoint without host", map[string]string{EnvTracesEndpoint: "http:///v1/traces"}, false, EnvTracesEndpoint},
		{"grpc protocol", map[string]string{EnvEndpoint: ep, EnvTracesProtocol: "grpc"}, false, EnvTracesProtocol},
		{"sdk disabled typo", map[string]string{EnvSDKDisabled: "yes", EnvEndpoint: ep}, false, EnvSDKDisabled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := FromEnv(lookupOf(tc.env))
			if tc.errName != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errName) {
					t.Fatalf("err = %v, want one naming %s", err, tc.errName)
				}
				if tr != nil {
					t.Error("a Tracer returned with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if (tr != nil) != tc.on {
				t.Fatalf("tracing on = %v, want %v", tr != nil, tc.on)
			}
			shutdown(t, tr) // nothing was recorded: returns without dialling
		})
	}
}

// Off costs a nil check: no method of a nil Tracer or Span allocates.
func TestNilTracerAllocatesNothing(t *testing.T) {
	var tr *Tracer
	r := httptest.NewRequest(http.MethodGet, "http://a.example/x", nil)
	r.Header.Set("Traceparent", "00-"+clientTraceID+"-"+clientSpanID+"-01")
	h := http.Header{"Traceparent": {"00-" + clientTraceID + "-" + clientSpanID + "-01"}}
	ctx := context.Background()
	now := time.Now()
	allocs := testing.AllocsPerRun(1000, func() {
		c, sp := tr.Request(ctx, r, "api")
		q := sp.Child("queue", now)
		q.End(now)
		_, at := sp.Attempt(c, "10.0.0.1:80", 1)
		at.Inject(h)
		at.SetStatus(502)
		at.End(now)
		sp.SetAttr("k", "v")
		sp.SetStatus(200)
		if sp.TraceID() != "" {
			t.Fatal("nil span has a trace id")
		}
		sp.End(now)
		if err := tr.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("nil Tracer allocates %v per request, want 0", allocs)
	}
	if got := h.Get("Traceparent"); got != "00-"+clientTraceID+"-"+clientSpanID+"-01" {
		t.Errorf("nil span changed the client's traceparent to %q", got)
	}
}

// BenchmarkOff measures the proxy's per-request cost with tracing off.
func BenchmarkOff(b *testing.B) {
	var tr *Tracer
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	ctx := context.Background()
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		c, sp := tr.Request(ctx, r, "api")
		_, at := sp.Attempt(c, "b", 1)
		at.Inject(r.Header)
		at.End(now)
		sp.SetStatus(200)
		sp.End(now)
	}
}
