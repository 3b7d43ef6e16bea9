// Package proxy is the balancer's request path: place the request on a
// backend slot (or queue it), proxy it with httputil.ReverseProxy, report
// each outcome to the outlier detector, retry an idempotent request once
// elsewhere when an attempt fails or answers a status in RETRY_ON (within
// the retry budget), and answer 503 + Retry-After when it cannot be placed.
//
// A long-lived connection (an upgrade, an event stream, a body still open
// STREAM_AFTER after its headers) gives its request slot back as soon as
// it is one and counts against the backend's MAX_CONNECTIONS instead (see
// conn.go).
package proxy

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync/atomic"
	"time"

	"lbscale/balancer/accesslog"
	"lbscale/balancer/flow"
	"lbscale/balancer/outlier"
	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
	"lbscale/balancer/tracing"
)

// Sets gives the current pool; cluster.Syncer implements it.
type Sets interface{ Set() *pool.Set }

// Prospects tells whether capacity may still come to a pool in which no
// backend can take a request: a container is starting, or a scaler owns the
// pool and may start one (scale from zero). cluster.Syncer implements it.
type Prospects interface{ Coming() bool }

// Options configure a Handler.
type Options struct {
	Sets   Sets
	Policy policy.Policy
	Queue  *Queue
	// UpstreamTimeout bounds each attempt's wait for the backend's response
	// headers: the per-try timeout (Envoy's per_try_timeout, HAProxy's
	// timeout server). An idempotent request that times out is retried once
	// on another backend, so a client waits at most twice this (plus the
	// queue and the connects) for a backend that hangs.
	UpstreamTimeout time.Duration
	// RetryOn lists the statuses after which an idempotent request is sent
	// once more to another backend, in place of the answer (RETRY_ON; nil:
	// none). Codes outside 500-599 are ignored: a 4xx is the client's.
	RetryOn []int
	// RetryAfter is the Retry-After value of 503 answers.
	RetryAfter time.Duration
	// MaxIdlePerHost sizes the keep-alive pool per backend (the in-flight
	// limit is the most connections one backend ever needs).
	MaxIdlePerHost int
	// Flow counts arrivals and service times for the scaler (nil: not counted).
	Flow *flow.Counter
	// Prospects, when set, lets a request wait in the queue only while a
	// slot may come: some backend is up (full, or not yet granted slots)
	// or Prospects.Coming. Otherwise it gets 503 at once. Nil: always wait.
	Prospects Prospects
	// BodyBuffer is the largest request body read whole before a backend
	// slot is taken (0: none), so that a client that sends its body slowly,
	// or not at all, holds no slot while it does. Longer bodies stream.
	BodyBuffer int64
	// BodyTimeout bounds the wait for the buffered body, and each read of
	// a streamed one (0: no limit): a stalled body gets 408.
	BodyTimeout time.Duration
	// TunnelIdle closes an upgraded connection (WebSocket and the like) on
	// which neither side sent a byte for this long (0: never), so an
	// abandoned tunnel does not hold its backend connection for good.
	TunnelIdle time.Duration
	// MaxConnections bounds each backend's long-lived connections, summed
	// over all balancers (MAX_CONNECTIONS; 0: no limit). A request that
	// asks for one is placed only where ClusterConns is below it. The
	// bound is soft: this balancer's count is exact, the others' as they
	// reported it about a second ago. Connections are admitted rarely
	// compared with requests and a few too many cost a backend memory, not
	// correctness, so they are not divided through the store's script as
	// the request slots are. A handshake counts from the backend's answer
	// on, so the bound may also be passed by the handshakes in flight,
	// which request slots bound.
	MaxConnections int64
	// StreamAfter turns a response whose body is still being copied this
	// long after its headers into a long-lived connection (STREAM_AFTER;
	// 0: never). The time after the headers is transfer, not processing:
	// a body still open a second later is a stream, a download or a long
	// poll, whose life would otherwise hold a request slot and be read by
	// the scaler as service time.
	StreamAfter time.Duration
	// TrustForwarded believes the forwarding headers a client sends
	// (Forwarded, X-Forwarded-For, -Host and -Proto): set when every client
	// reaches the balancer through a proxy of one's own that sets them
	// (TRUST_FORWARDED_FOR). See forward for the rule.
	TrustForwarded bool
	// BackendHeader adds X-Lbscale-Backend (the backend's id) to responses:
	// for debugging only, as it tells clients about the pool.
	BackendHeader bool
	// Outlier ejects backends that keep failing (nil: none are ejected).
	Outlier *outlier.Detector
	// RetryBudget bounds retries (nil: NewRetryBudget(20, 3), Envoy's
	// defaults).
	RetryBudget *RetryBudget
	// Transport carries requests to backends (nil: a Transport over an
	// http.Transport, sized by MaxIdlePerHost and UpstreamTimeout); tests
	// inject failures.
	Transport http.RoundTripper
	Metrics   *Metrics
	Log       *slog.Logger
	// Pool is the pool's name, for the access log and traces.
	Pool string
	// AccessLog receives one entry per request (nil: none).
	AccessLog *accesslog.Logger
	// Tracer records a span per request, with children for the queue
	// wait, the cold start and each upstream attempt, and propagates the
	// trace to the backend (nil: tracing off; the client's traceparent
	// then passes through as any header).
	Tracer *tracing.Tracer
	// ColdStartHeader adds X-Lbscale-Cold-Start (ms) to an answer whose
	// request waited for a container to start.
	ColdStartHeader bool
}

// Handler is the proxy's http.Handler.
type Handler struct {
	o        Options
	proxy    *httputil.ReverseProxy
	observer policy.Observer // the policy, if it learns from responses
	// wait is mayWait as a func value, made once (nil without Prospects):
	// a method value taken per request would allocate.
	wait func() bool
	// retryOn is RetryOn as a bit set of status-500, so a check costs a
	// shift, not a scan.
	retryOn [2]uint64
	// connTurn rotates where pickConn starts its scan, so that backends
	// tied on connections take turns instead of the first always winning.
	connTurn atomic.Uint64
}

// errRetryStatus is what modifyResponse returns to make ReverseProxy drop
// an answer in RetryOn and call errorHandler, which sends the request to
// the backend whose slot modifyResponse took.
var errRetryStatus = errors.New("answer in RETRY_ON: retried on another backend")

// New returns a Handler.
func New(o Options) *Handler {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Flow == nil {
		o.Flow = &flow.Counter{}
	}
	if o.RetryBudget == nil {
		o.RetryBudget = NewRetryBudget(20, 3)
	}
	if o.Transport == nil {
		dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
		o.Transport = &Transport{
			Fallback: &http.Transport{
				Proxy:                 nil, // never send backend traffic through an environment proxy
				DialContext:           dialer.DialContext,
				MaxIdleConns:          0,
				MaxIdleConnsPerHost:   max(o.MaxIdlePerHost, 16),
				IdleConnTimeout:       90 * time.Second,
				ResponseHeaderTimeout: o.UpstreamTimeout,
				ExpectContinueTimeout: time.Second,
				// Never add Accept-Encoding: gzip to a request that did not
				// ask for it (the transport would then unzip the answer).
				DisableCompression: true,
			},
			Dial:                  dialer.DialContext,
			ResponseHeaderTimeout: o.UpstreamTimeout,
			MaxIdlePerHost:        max(o.MaxIdlePerHost, 16),
			IdleTimeout:           90 * time.Second,
		}
	}
	h := &Handler{o: o}
	for _, code := range o.RetryOn {
		if code >= 500 && code <= 599 {
			h.retryOn[(code-500)/64] |= 1 << ((code - 500) % 64)
		}
	}
	h.observer, _ = o.Policy.(policy.Observer)
	if o.Prospects != nil {
		h.wait = h.mayWait
	}
	h.proxy = &httputil.ReverseProxy{
		Rewrite:        h.rewrite,
		Transport:      o.Transport,
		FlushInterval:  0, // ReverseProxy still streams at once text/event-stream and bodies of unknown length
		ModifyResponse: h.modifyResponse,
		ErrorHandler:   h.errorHandler,
		BufferPool:     bufferPool{},
		ErrorLog:       slog.NewLogLogger(o.Log.Handler(), slog.LevelWarn),
	}
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	a := &attempt{Context: r.Context(), h: h, w: w, in: r}
	if h.o.Tracer != nil {
		a.Context, a.span = h.o.Tracer.Request(r.Context(), r, h.o.Pool)
	}
	if r.Method == http.MethodConnect {
		// Any other method token is proxied; Allow lists the common ones.
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE")
		http.Error(w, "CONNECT is not proxied", http.StatusMethodNotAllowed)
		h.record(a, r, start, http.StatusMethodNotAllowed)
		return
	}
	// The client's request id travels on, unless it is longer than
	// maxRequestID: then it is replaced, as if none had come, so that logs
	// and headers stay bounded and the request is still served.
	id := r.Header.Get("X-Request-Id")
	if id == "" || len(id) > maxRequestID {
		id = a.newID()
	}
	a.id, a.idv[0] = id, id
	w.Header()["X-Request-Id"] = a.idv[:]

	body, err := h.readBody(w, r)
	if err != nil {
		h.record(a, r, start, h.clientError(w, id, err))
		return
	}
	if body != nil {
		defer body.finish()
	}
	h.o.Flow.Arrive()
	a.longLived = wantsConn(r)
	b, queued, err := h.o.Queue.AcquireIf(r.Context(), a, h.wait)
	served := time.Now()
	if queued {
		a.queue = served.Sub(start)
		h.o.Metrics.QueueWait.Observe(a.queue.Seconds())
		a.span.Child("queue", start).End(served)
	}
	if err != nil {
		if r.Context().Err() != nil {
			h.o.Metrics.Rejected.WithLabelValues("client_gone").Inc()
			h.record(a, r, start, statusClientGone)
			return // the client left; nobody to answer
		}
		h.unavailable(w, id, err)
		h.record(a, r, start, http.StatusServiceUnavailable)
		return
	}
	if queued && b.Since.After(start) {
		// It became ready while this request waited: the request waited
		// for its start (from arrival, or from the queue's start).
		a.cold = b.Since.Sub(start)
		a.span.Child("cold start", start).End(b.Since)
	}
	a.sw = statusWriter{ResponseWriter: w, tunnelIdle: h.o.TunnelIdle}
	a.backend, a.start, a.served, a.canRetry, a.w, a.body = b, served, served, retryable(r), &a.sw, body
	a.in = r.WithContext(a)
	h.o.RetryBudget.begin()
	// Deferred: ReverseProxy panics with http.ErrAbortHandler when the copy
	// of a response body fails (client gone mid-body, backend reset), and a
	// slot (or connection) not given back here would be lost to every
	// balancer for good.
	defer func() {
		a.end()
		if a.next != nil {
			h.release(a.next) // a panic between modifyResponse and errorHandler
		}
		h.o.Metrics.observe(a.sw.code(), time.Since(start))
		h.record(a, r, start, a.sw.code())
	}()
	h.proxy.ServeHTTP(&a.sw, a.in)
}

// pick chooses a backend with the policy and takes its slot; a lost race
// (another request took the last slot) picks again, then any free backend
// but exclude will do.
func (h *Handler) pick(w http.ResponseWriter, r *http.Request, exclude *pool.Backend) *pool.Backend {
	set := h.o.Sets.Set()
	for range 4 {
		b := h.o.Policy.Pick(set, w, r)
		if b == nil {
			return nil
		}
		if b == exclude {
			break
		}
		if b.TryAcquire() {
			return b
		}
	}
	for _, b := range set.Backends {
		if b != exclude && b.TryAcquire() {
			return b
		}
	}
	return nil
}

// mayWait reports whether a request that found no slot should queue: some
// backend is up (its slot may free, or a grant may come), or more capacity
// is on its way. With none, a wait would end in 503 after QUEUE_TIMEOUT.
func (h *Handler) mayWait() bool {
	for _, b := range h.o.Sets.Set().Backends {
		if b.Routable() {
			return true
		}
	}
	return h.o.Prospects.Coming()
}

func (h *Handler) release(b *pool.Backend) {
	b.Release()
	h.o.Queue.Dispatch()
}

func (h *Handler) unavailable(w http.ResponseWriter, id string, err error) {
	reason := "queue_timeout"
	switch {
	case errors.Is(err, ErrQueueFull):
		reason = "queue_full"
	case errors.Is(err, ErrNoBackend):
		reason = "no_backend"
	}
	h.o.Metrics.Rejected.WithLabelValues(reason).Inc()
	h.o.Log.Info("request not placed", "request_id", id, "reason", reason, "err", err)
	w.Header().Set("Retry-After", strconv.Itoa(int(max(1, h.o.RetryAfter.Round(time.Second)/time.Second))))
	http.Error(w, "503 Service Unavailable", http.StatusServiceUnavailable)
	h.o.Metrics.observe(http.StatusServiceUnavailable, 0)
}

// maxRequestID bounds a client's X-Request-Id; a longer one is replaced.
const maxRequestID = 128

func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	a := pr.In.Context().Value(ctxKey{}).(*attempt)
	pr.SetURL(a.backend.URL)
	// OPTIONS * asks about the server, not a resource: it goes on as "*"
	// (SetURL would make it the path /*, which the backend reads as a
	// resource).
	if pr.In.URL.Path == "*" && pr.In.URL.RawPath == "" {
		pr.Out.URL.Opaque, pr.Out.URL.Path, pr.Out.URL.RawPath = "*", "", ""
	}
	// The backend sees the host the client asked for. An HTTP/1.0 request
	// may name none; the transport would then send the backend's own
	// address, so it gets the address the client connected to instead, as
	// nginx's $host falls back to the server's name.
	pr.Out.Host = pr.In.Host
	if pr.Out.Host == "" {
		if la, ok := pr.In.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			pr.Out.Host = la.String()
		}
	}
	// ReverseProxy drops the headers that Connection names; the request id
	// is ours and always travels.
	pr.Out.Header["X-Request-Id"] = a.idv[:]
	a.attempts++
	a.tried = a.backend.ID
	if a.span != nil {
		_, a.upSpan = a.span.Attempt(a, a.backend.ID, a.attempts)
		a.upSpan.Inject(pr.Out.Header)
	}
	// Request trailers: the outgoing request's map is a copy made before
	// the body was read, so it would announce the trailers and send them
	// empty. The client's own map is filled once its body is read, before
	// the transport writes the trailers.
	if len(pr.In.Trailer) > 0 {
		pr.Out.Trailer = pr.In.Trailer
	}
	h.forward(a, pr.In, pr.Out)
}
