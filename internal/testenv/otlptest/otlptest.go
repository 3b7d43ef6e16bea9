// Package otlptest is an OTLP/HTTP trace receiver for tests: a real HTTP
// endpoint that decodes what an OpenTelemetry exporter posts (protobuf,
// gzip or not), exactly as a collector would, and keeps the spans for
// the test to read.
package otlptest

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	collectorpb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Receiver is a running OTLP/HTTP trace endpoint; URL is its base (the
// exporter's OTEL_EXPORTER_OTLP_ENDPOINT).
type Receiver struct {
	URL string

	mu    sync.Mutex // guards spans, paths, res
	spans []*tracepb.Span
	paths []string
	res   []*commonpb.KeyValue
}

// New starts a receiver, stopped when the test ends.
func New(t testing.TB) *Receiver {
	t.Helper()
	rc := &Receiver{}
	srv := httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(srv.Close)
	rc.URL = srv.URL
	return rc
}

func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want POST of application/x-protobuf", http.StatusUnsupportedMediaType)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = gz
	}
	raw, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var req collectorpb.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	rc.paths = append(rc.paths, r.URL.Path)
	for _, rs := range req.GetResourceSpans() {
		rc.res = append(rc.res, rs.GetResource().GetAttributes()...)
		for _, ss := range rs.GetScopeSpans() {
			rc.spans = append(rc.spans, ss.GetSpans()...)
		}
	}
	rc.mu.Unlock()
	out, _ := proto.Marshal(&collectorpb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// Got returns the spans received so far and the paths they were posted to.
func (rc *Receiver) Got() ([]*tracepb.Span, []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]*tracepb.Span(nil), rc.spans...), append([]string(nil), rc.paths...)
}

// Resource returns the resource attributes of every export so far.
func (rc *Receiver) Resource() []*commonpb.KeyValue {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]*commonpb.KeyValue(nil), rc.res...)
}

// Span returns the first span received with name, failing the test when
// there is none.
func (rc *Receiver) Span(t testing.TB, name string) *tracepb.Span {
	t.Helper()
	spans, _ := rc.Got()
	for _, s := range spans {
		if s.GetName() == name {
			return s
		}
	}
	t.Fatalf("no exported span %q among %d", name, len(spans))
	return nil
}
