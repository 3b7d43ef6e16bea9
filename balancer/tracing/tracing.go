// Package tracing records the balancer's distributed traces with the
// OpenTelemetry SDK and exports them over OTLP/HTTP.
//
// Tracing is off unless the SDK's own environment variables ask for it, and
// off means a nil *Tracer: every method on a nil *Tracer or nil *Span is a nil
// check and nothing else, so the proxy calls them unconditionally on the hot
// path without paying for a feature it does not use.
package tracing

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Environment variables read through FromEnv's lookup. They are the SDK's
// own names (https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/)
// so an operator configures the balancer like any other instrumented service.
const (
	EnvSDKDisabled      = "OTEL_SDK_DISABLED"
	EnvTracesExporter   = "OTEL_TRACES_EXPORTER"
	EnvEndpoint         = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint   = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvProtocol         = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol   = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	EnvTracesSampler    = "OTEL_TRACES_SAMPLER"
	EnvTracesSamplerArg = "OTEL_TRACES_SAMPLER_ARG"
	EnvServiceName      = "OTEL_SERVICE_NAME"
)

// DefaultServiceName is the service.name of the balancer's spans when
// OTEL_SERVICE_NAME is unset.
const DefaultServiceName = "lbscale-balancer"

// tracerName is the instrumentation scope of every span this package starts.
const tracerName = "lbscale/balancer/tracing"

// Attribute keys: the HTTP and network ones follow the OpenTelemetry semantic
// conventions so trace backends render them natively; the lbscale.* ones
// carry what only the balancer knows.
const (
	attrMethod     = attribute.Key("http.request.method")
	attrURLPath    = attribute.Key("url.path")
	attrServerAddr = attribute.Key("server.address")
	attrClientAddr = attribute.Key("client.address")
	attrStatusCode = attribute.Key("http.response.status_code")
	attrPool       = attribute.Key("lbscale.pool")
	attrBackend    = attribute.Key("lbscale.backend")
	attrAttempt    = attribute.Key("lbscale.attempt")
)

// tracesPath is appended to OTEL_EXPORTER_OTLP_ENDPOINT, which names the
// collector's base URL for all signals; OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is
// used as given.
const tracesPath = "/v1/traces"

// Tracer starts the balancer's spans. A nil *Tracer is valid and means
// tracing is off: its methods return at once without allocating.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	prop     propagation.TraceContext
}

// FromEnv turns tracing on when the OpenTelemetry SDK's variables ask for it:
// OTEL_TRACES_EXPORTER=otlp, or OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set, and OTEL_SDK_DISABLED not "true".
// It returns (nil, nil) when tracing is off, and an error naming the variable
// when a value is invalid, so a typo stops the balancer at start instead of
// silently exporting nothing (the SDK itself only logs a bad sampler and
// falls back to its default).
//
// The endpoint, protocol, sampler (OTEL_TRACES_SAMPLER, _ARG; default
// parentbased_always_on) and service name (OTEL_SERVICE_NAME, default
// "lbscale-balancer") come from lookup. The exporter's finer settings —
// headers, compression, timeout, certificates, OTEL_BSP_* batching and
// OTEL_RESOURCE_ATTRIBUTES — are read by the SDK itself from the process
// environment.
func FromEnv(lookup func(string) (string, bool)) (*Tracer, error) {
	get := func(key string) string {
		v, _ := lookup(key)
		return strings.TrimSpace(v)
	}

	switch d := strings.ToLower(get(EnvSDKDisabled)); d {
	case "true":
		return nil, nil
	case "", "false":
	default:
		return nil, fmt.Errorf("%s=%q: want true or false", EnvSDKDisabled, d)
	}

	exporter := strings.ToLower(get(EnvTracesExporter))
	switch exporter {
	case "", "otlp":
	case "none":
		return nil, nil
	default:
		return nil, fmt.Errorf("%s=%q: want otlp or none", EnvTracesExporter, exporter)
	}

	var opts []otlptracehttp.Option
	if v := get(EnvTracesEndpoint); v != "" {
		u, err := endpointURL(EnvTracesEndpoint, v)
		if err != nil {
			return nil, err
		}
		opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
	} else if v := get(EnvEndpoint); v != "" {
		u, err := endpointURL(EnvEndpoint, v)
		if err != nil {
			return nil, err
		}
		u.Path = path.Join(u.Path, tracesPath)
		opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
	} else if exporter == "" {
		return nil, nil
	}

	for _, key := range []string{EnvTracesProtocol, EnvProtocol} {
		p := get(key)
		if p == "" {
			continue
		}
		switch p {
		case "http/protobuf":
			opts = append(opts, otlptracehttp.WithEncoding(otlptracehttp.EncodingProtobuf))
		case "http/json":
			opts = append(opts, otlptracehttp.WithEncoding(otlptracehttp.EncodingJSON))
		default:
			return nil, fmt.Errorf("%s=%q: want http/protobuf or http/json (grpc is not supported)", key, p)
		}
		break // the signal-specific variable wins over the general one
	}

	sampler, err := samplerFrom(get(EnvTracesSampler), get(EnvTracesSamplerArg))
	if err != nil {
		return nil, err
	}

	service := get(EnvServiceName)
	if service == "" {
		service = DefaultServiceName
	}
	// Merge over the default resource so OTEL_RESOURCE_ATTRIBUTES and the SDK's
	// telemetry.sdk.* attributes stay; the service name given here wins.
	res, err := resource.Merge(resource.Default(),
		resource.NewSchemaless(attribute.String("service.name", service)))
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}

	// New only builds the client; nothing is dialled until the first export,
	// so an unreachable collector never delays the balancer's start.
	exp, err := otlptracehttp.New(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sampler),
		sdktrace.WithResource(res),
	)
	return &Tracer{provider: tp, tracer: tp.Tracer(tracerName)}, nil
}

// endpointURL validates an OTLP endpoint: the scheme decides TLS, so it must
// be given.
func endpointURL(key, v string) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil {
		return nil, fmt.Errorf("%s=%q: %w", key, v, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%s=%q: want an http:// or https:// URL with a host", key, v)
	}
	return u, nil
}

// samplerFrom mirrors the SDK's reading of OTEL_TRACES_SAMPLER and
// OTEL_TRACES_SAMPLER_ARG, but returns an error where the SDK would only log
// one and fall back. An empty name is the SDK default, parentbased_always_on:
// a request whose client sampled its trace is recorded, one that did not is
// not, and one without a traceparent starts a sampled trace.
func samplerFrom(name, arg string) (sdktrace.Sampler, error) {
	ratio := func() (sdktrace.Sampler, error) {
		if arg == "" {
			return sdktrace.TraceIDRatioBased(1), nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return nil, fmt.Errorf("%s=%q: want a ratio from 0 to 1", EnvTracesSamplerArg, arg)
		}
		return sdktrace.TraceIDRatioBased(r), nil
	}
	switch strings.ToLower(name) {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		return ratio()
	case "parentbased_traceidratio":
		s, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(s), nil
	default:
		return nil, fmt.Errorf("%s=%q: want always_on, always_off, traceidratio, "+
			"parentbased_always_on, parentbased_always_off or parentbased_traceidratio", EnvTracesSampler, name)
	}
}

// Shutdown exports the spans still buffered and stops the exporter; call it
// once, after the proxy has stopped serving, with a deadline: an unreachable
// collector otherwise holds it for the exporter's timeout.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing shutdown: %w", err)
	}
	return nil
}

// Request starts the server span of an incoming request, named
// "<METHOD> <pool>" (a pool, not the raw path, so span names stay few). When
// the request carries a W3C traceparent (and tracestate) the span continues
// that trace as a child of the client's span. The returned context carries
// the span; the caller must End the span.
func (t *Tracer) Request(ctx context.Context, r *http.Request, pool string) (context.Context, *Span) {
	if t == nil {
		return ctx, nil
	}
	ctx = t.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
	ctx, sp := t.tracer.Start(ctx, r.Method+" "+pool,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attrMethod.String(r.Method),
			attrURLPath.String(r.URL.Path),
			attrServerAddr.String(hostOnly(r.Host)),
			attrPool.String(pool),
			attrClientAddr.String(hostOnly(r.RemoteAddr)),
		))
	return ctx, &Span{span: sp, t: t}
}

// hostOnly drops the port of host:port, keeping a bare host as it is.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// Span is one span of a request's trace. A nil *Span is valid (tracing off)
// and all its methods are no-ops.
type Span struct {
	span trace.Span
	t    *Tracer
}

// Child starts a child span that began at start, for a wait the proxy
// measures only once it is over (the time in the queue, a cold start); the
// caller ends it with End(now).
func (s *Span) Child(name string, start time.Time) *Span {
	if s == nil {
		return nil
	}
	ctx := trace.ContextWithSpan(context.Background(), s.span)
	_, sp := s.t.tracer.Start(ctx, name, trace.WithTimestamp(start))
	return &Span{span: sp, t: s.t}
}

// Attempt starts the client span of one upstream attempt, "upstream <n>"
// with n counted from 1, as a child of s whatever span ctx holds; ctx keeps
// its deadline and values. Inject the returned span into the outgoing
// request so the backend's spans hang under this attempt.
func (s *Span) Attempt(ctx context.Context, backend string, n int) (context.Context, *Span) {
	if s == nil {
		return ctx, nil
	}
	ctx, sp := s.t.tracer.Start(trace.ContextWithSpan(ctx, s.span), "upstream "+strconv.Itoa(n),
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attrBackend.String(backend), attrAttempt.Int(n)))
	return ctx, &Span{span: sp, t: s.t}
}

// Inject writes this span's traceparent (and tracestate, if any) into the
// headers of the outgoing request, replacing the ones copied from the client:
// the backend sees the same trace id with this span as its parent. An
// unsampled trace is propagated too, with flags 00, so the backend agrees not
// to record it instead of starting a trace of its own.
func (s *Span) Inject(h http.Header) {
	if s == nil {
		return
	}
	h.Del("traceparent")
	h.Del("tracestate")
	s.t.prop.Inject(trace.ContextWithSpan(context.Background(), s.span), propagation.HeaderCarrier(h))
}

// SetStatus records the response status; a 5xx marks the span as failed so
// trace backends flag it. A 4xx is the client's doing and is not an error of
// the balancer.
func (s *Span) SetStatus(code int) {
	if s == nil {
		return
	}
	s.span.SetAttributes(attrStatusCode.Int(code))
	if code >= 500 {
		s.span.SetStatus(codes.Error, http.StatusText(code))
	}
}

// SetAttr sets a string attribute, for what the proxy learns along the way
// (the outcome of a retry, why a request was shed).
func (s *Span) SetAttr(key, value string) {
	if s == nil {
		return
	}
	s.span.SetAttributes(attribute.String(key, value))
}

// End ends the span at the given time; the proxy passes its own clock's
// reading so span durations match its other measurements.
func (s *Span) End(at time.Time) {
	if s == nil {
		return
	}
	s.span.End(trace.WithTimestamp(at))
}

// TraceID returns the hex trace id for logs, or "" when the span is nil or
// its trace is not sampled: an unsampled id leads to nothing in the backend.
func (s *Span) TraceID() string {
	if s == nil {
		return ""
	}
	sc := s.span.SpanContext()
	if !sc.IsSampled() {
		return ""
	}
	return sc.TraceID().String()
}
