// Package proxy is the balancer's request path: place the request on a
// backend slot (or queue it), proxy it with httputil.ReverseProxy, report
// each outcome to the outlier detector, retry an idempotent request once
// elsewhere when an attempt fails or answers a status in RETRY_ON (within
// the retry budget), and answer 503 + Retry-After when it cannot be placed.
package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"time"

	"lbscale/balancer/flow"
	"lbscale/balancer/outlier"
	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
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
	// abandoned tunnel does not hold its backend slot for good.
	TunnelIdle time.Duration
	// BackendHeader adds X-Lbscale-Backend (the backend's id) to responses:
	// for debugging only, as it tells clients about the pool.
	BackendHeader bool
	// Outlier ejects backends that keep failing (nil: none are ejected).
	Outlier *outlier.Detector
	// RetryBudget bounds retries (nil: NewRetryBudget(20, 3), Envoy's
	// defaults).
	RetryBudget *RetryBudget
	// Transport carries requests to backends (nil: an http.Transport
	// sized by MaxIdlePerHost and UpstreamTimeout); tests inject failures.
	Transport http.RoundTripper
	Metrics   *Metrics
	Log       *slog.Logger
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
}

// errRetryStatus is what modifyResponse returns to make ReverseProxy drop
// an answer in RetryOn and call errorHandler, which sends the request to
// the backend whose slot modifyResponse took.
var errRetryStatus = errors.New("answer in RETRY_ON: retried on another backend")

type ctxKey struct{}

// attempt travels in the request context from ServeHTTP to the
// ReverseProxy hooks: which backend holds this request's slot.
type attempt struct {
	backend *pool.Backend
	start   time.Time // when this attempt was placed, for Observer
	retried bool
	// canRetry: the request may be sent twice (idempotent, no body).
	canRetry bool
	// next is the slot modifyResponse took for a retry on a status in
	// RetryOn; errorHandler moves it to backend at once.
	next *pool.Backend
	// w and in are what the policy sees when modifyResponse picks the
	// retry's backend (ReverseProxy hands it only the response).
	w    http.ResponseWriter
	in   *http.Request
	id   string      // X-Request-Id, for the logs
	body *clientBody // the streamed rest of the body (nil: none)
}

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
		o.Transport = &http.Transport{
			Proxy:                 nil, // never send backend traffic through an environment proxy
			DialContext:           dialer.DialContext,
			MaxIdleConns:          0,
			MaxIdleConnsPerHost:   max(o.MaxIdlePerHost, 16),
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: o.UpstreamTimeout,
			ExpectContinueTimeout: time.Second,
			// Never add Accept-Encoding: gzip to a request that did not ask
			// for it (the transport would then unzip the answer itself).
			DisableCompression: true,
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
	if r.Method == http.MethodConnect {
		// Any other method token is proxied; Allow lists the common ones.
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE")
		http.Error(w, "CONNECT is not proxied", http.StatusMethodNotAllowed)
		return
	}
	id := r.Header.Get("X-Request-Id")
	if id == "" {
		id = newRequestID()
		r.Header.Set("X-Request-Id", id)
	} else if len(id) > 128 {
		http.Error(w, "X-Request-Id longer than 128 bytes", http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Request-Id", id)

	body, err := h.readBody(w, r)
	if err != nil {
		h.clientError(w, id, err)
		return
	}
	if body != nil {
		defer body.finish()
	}
	h.o.Flow.Arrive()
	b, queued, err := h.o.Queue.AcquireIf(r.Context(), h.picker(w, r, nil), h.wait)
	if queued {
		h.o.Metrics.QueueWait.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		if r.Context().Err() != nil {
			h.o.Metrics.Rejected.WithLabelValues("client_gone").Inc()
			return // the client left; nobody to answer
		}
		h.unavailable(w, id, err)
		return
	}
	served := time.Now()
	sw := &statusWriter{ResponseWriter: w, tunnelIdle: h.o.TunnelIdle}
	a := &attempt{backend: b, start: served, canRetry: retryable(r), w: sw, id: id, body: body}
	a.in = r.WithContext(context.WithValue(r.Context(), ctxKey{}, a))
	h.o.RetryBudget.begin()
	// Deferred: ReverseProxy panics with http.ErrAbortHandler when the copy
	// of a response body fails (client gone mid-body, backend reset), and a
	// slot not given back here would be lost to every balancer for good.
	defer func() {
		if a.backend != nil {
			h.release(a.backend)
		}
		if a.next != nil {
			h.release(a.next) // a panic between modifyResponse and errorHandler
		}
		h.o.RetryBudget.end()
		h.o.Flow.Done(time.Since(served))
		h.o.Metrics.observe(sw.code(), time.Since(start))
	}()
	h.proxy.ServeHTTP(sw, a.in)
}

// picker returns the try function the queue calls: pick with the policy and
// take the slot; a lost race (another request took the last slot) picks again.
func (h *Handler) picker(w http.ResponseWriter, r *http.Request, exclude *pool.Backend) func() *pool.Backend {
	return func() *pool.Backend {
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

func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	a := pr.In.Context().Value(ctxKey{}).(*attempt)
	// Keep the client's chain of proxies: Rewrite drops inbound
	// X-Forwarded-For, SetXForwarded then appends the client address to it.
	pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
	pr.SetURL(a.backend.URL)
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
	pr.Out.Header.Set("X-Request-Id", a.id)
	pr.SetXForwarded()
}

// modifyResponse sees the backend's answer: a 5xx is a failure for the
// outlier detector, anything else a success (and a latency observation for
// a policy that learns from them).
//
// A status in RetryOn on a first attempt of an idempotent request is
// dropped only when the retry is certain: the retry budget allows it and
// another backend's slot is taken here, now. Otherwise the answer goes to
// the client as it is: a 5xx the client sees beats a 502 made up for a
// retry that found no room.
func (h *Handler) modifyResponse(res *http.Response) error {
	a := res.Request.Context().Value(ctxKey{}).(*attempt)
	if h.o.BackendHeader {
		res.Header.Set("X-Lbscale-Backend", a.backend.ID)
	}
	if res.StatusCode >= 500 {
		h.failure(a.backend, res.Status)
		if !a.retried && a.canRetry && h.retriesOn(res.StatusCode) && h.o.RetryBudget.tryRetry() {
			if next := h.picker(a.w, a.in, a.backend)(); next != nil {
				a.retried, a.next = true, next
				return errRetryStatus
			}
			h.o.RetryBudget.retryDone()
		}
		return nil
	}
	if h.o.Outlier != nil {
		h.o.Outlier.Success(a.backend)
	}
	if h.observer != nil {
		h.observer.Observe(a.backend, time.Since(a.start))
	}
	return nil
}

// retriesOn reports whether code is in RetryOn.
func (h *Handler) retriesOn(code int) bool {
	i := code - 500
	return i >= 0 && i < 128 && h.retryOn[i/64]&(1<<(i%64)) != 0
}

// failure reports a failed attempt on b to the outlier detector.
func (h *Handler) failure(b *pool.Backend, why string) {
	if h.o.Outlier == nil {
		b.Failed()
		return
	}
	v := h.o.Outlier.Failure(h.o.Sets.Set(), b)
	if v.Eject {
		h.o.Log.Warn("backend ejected: consecutive failures", "backend", b.ID, "last", why,
			"until", v.Until, "ejections", b.Ejections(), "level", v.Level)
	}
}

// errorHandler runs when the backend could not be reached or did not answer
// before any byte of the response went to the client: a gateway failure for
// the outlier detector. An idempotent request without a body is retried
// once on another backend, if the retry budget allows. A timeout here is
// UpstreamTimeout, the per-try timeout: the hung attempt's slot is given
// back and the backend counted as failed, whether or not it is retried.
//
// It also runs for errRetryStatus: modifyResponse dropped an answer in
// RetryOn, counted the failure and holds the retry's slot.
//
// A failure of the client's own body (malformed chunks, a stall) is the
// client's: 400 or 408, and the backend is not counted as failed. Client-
// facing bodies are generic; the backend and the cause go to the log with
// the request id.
func (h *Handler) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	a := r.Context().Value(ctxKey{}).(*attempt)
	if errors.Is(err, errRetryStatus) {
		h.release(a.backend)
		next := a.next
		a.next = nil
		h.retry(w, r, a, next, RetryStatus)
		return
	}
	if cerr := a.body.Err(); cerr != nil {
		h.clientError(w, a.id, cerr)
		return
	}
	failed := a.backend
	if r.Context().Err() != nil {
		return // the client left; no fault of the backend
	}
	h.o.Log.Warn("backend failed", "request_id", a.id, "backend", failed.ID, "err", err)
	h.failure(failed, err.Error())
	why := RetryReset
	switch {
	case isConnectError(err):
		why = RetryConnect
	case isTimeout(err):
		why = RetryTimeout
	}
	if !a.retried && a.canRetry && h.o.RetryBudget.tryRetry() {
		// The retry gives the failed slot back first and takes a free slot
		// elsewhere without queueing: waiting in line while holding a slot
		// would block that slot for the whole QUEUE_TIMEOUT, and a waiter
		// that excludes a backend would hold up the queue's head.
		a.retried = true
		h.release(failed)
		a.backend = nil
		if next := h.picker(w, r, failed)(); next != nil {
			h.retry(w, r, a, next, why)
			return
		}
		h.o.RetryBudget.retryDone()
	}
	if why == RetryTimeout {
		http.Error(w, "504 Gateway Timeout", http.StatusGatewayTimeout)
		return
	}
	http.Error(w, "502 Bad Gateway", http.StatusBadGateway)
}

// retry sends the request to next, whose slot the caller took along with a
// retry from the budget, which it gives back when the attempt ends, even
// by the panic of a response body cut off (else the budget would shrink
// for good).
func (h *Handler) retry(w http.ResponseWriter, r *http.Request, a *attempt, next *pool.Backend, why RetryReason) {
	defer h.o.RetryBudget.retryDone()
	a.backend, a.start = next, time.Now()
	h.o.RetryBudget.sent(why)
	h.proxy.ServeHTTP(w, r)
}

// retryable: safe to send twice (RFC 9110 idempotent methods) and nothing to
// replay (no body).
func retryable(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
	default:
		return false
	}
	return r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 && r.Header.Get("Transfer-Encoding") == ""
}

func isConnectError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// bufferPool recycles ReverseProxy's copy buffers; without it every
// request allocates a fresh 32 KiB buffer.
type bufferPool struct{}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (bufferPool) Get() []byte  { return *buffers.Get().(*[]byte) }
func (bufferPool) Put(b []byte) { buffers.Put(&b) }

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusWriter remembers the status code for metrics. It passes Flush and
// Hijack through (via Unwrap and http.ResponseController), so streaming and
// WebSocket upgrades work through it.
type statusWriter struct {
	http.ResponseWriter
	status     int
	tunnelIdle time.Duration
}

// Hijack hands ReverseProxy the client connection of an upgrade, closed
// after TunnelIdle without traffic either way.
func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err != nil || s.tunnelIdle <= 0 {
		return c, brw, err
	}
	return newIdleConn(c, s.tunnelIdle), brw, nil
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) code() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}
