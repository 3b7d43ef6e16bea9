package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"lbscale/balancer/pool"
)

// The ReverseProxy hooks: what happens once a backend answers or fails.

// modifyResponse sees the backend's answer: a 5xx is a failure for the
// outlier detector, anything else a success (and a latency observation for
// a policy that learns from them).
//
// A status in RetryOn on a first attempt of an idempotent request is
// dropped only when the retry is certain: the retry budget allows it and
// another backend's slot is taken here, now. Otherwise the answer goes to
// the client as it is: a 5xx the client sees beats a 502 made up for a
// retry that found no room.
//
// An answer that goes to the client is watched (see watch): a 101 or an
// event stream makes the attempt a long-lived connection at once, any
// other body once it is still open StreamAfter from now.
func (h *Handler) modifyResponse(res *http.Response) error {
	a := res.Request.Context().Value(ctxKey{}).(*attempt)
	if h.o.BackendHeader {
		res.Header.Set("X-Lbscale-Backend", a.backend.ID)
	}
	if h.o.ColdStartHeader && a.cold > 0 {
		res.Header.Set(HeaderColdStart, strconv.FormatInt(a.cold.Milliseconds(), 10))
	}
	if a.upSpan != nil {
		a.upSpan.SetStatus(res.StatusCode)
		a.upSpan.End(time.Now())
		a.upSpan = nil
	}
	if res.StatusCode >= 500 {
		h.failure(a.backend, res.Status)
		if !a.retried && a.canRetry && h.retriesOn(res.StatusCode) && h.o.RetryBudget.tryRetry() {
			if next := h.pickFor(a, a.w, a.in, a.backend); next != nil {
				a.retried, a.next = true, next
				return errRetryStatus
			}
			h.o.RetryBudget.retryDone()
		}
		h.watch(a, res)
		return nil
	}
	if h.o.Outlier != nil {
		h.o.Outlier.Success(a.backend)
	}
	if h.observer != nil {
		h.observer.Observe(a.backend, time.Since(a.start))
	}
	h.watch(a, res)
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
	if a.phase.Load() != phaseRequest {
		// A 101 converted the attempt, then the switch failed (the backend
		// named another protocol, the client connection could not be
		// taken over): the slot is back already and the backend's
		// connection spent, so there is nothing to retry.
		if r.Context().Err() == nil {
			h.o.Log.Warn("upgrade failed", "request_id", a.id, "backend", a.backend.ID, "err", err)
			http.Error(w, "502 Bad Gateway", http.StatusBadGateway)
		}
		return
	}
	failed := a.backend
	if a.upSpan != nil {
		a.upSpan.SetAttr("error", err.Error())
		a.upSpan.SetStatus(http.StatusBadGateway)
		a.upSpan.End(time.Now())
		a.upSpan = nil
	}
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
		// The retry gives the failed slot back first, then takes a free
		// slot elsewhere; when every other backend is full, it waits in
		// line for one of theirs like any request (a backend that died
		// under load leaves its requests to a pool that is busy, not
		// down). It waits only while another backend is up: a waiter that
		// excludes the only backend would hold up the queue's head for
		// nothing.
		a.retried = true
		h.release(failed)
		a.backend = nil
		if next := h.pickElsewhere(w, r, a, failed); next != nil {
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

// pickElsewhere takes a slot on a backend other than failed for a retry,
// waiting in the queue while every other one is full. It returns nil when
// no other backend is up, or the wait ended (QUEUE_TIMEOUT, client gone).
func (h *Handler) pickElsewhere(w http.ResponseWriter, r *http.Request, a *attempt, failed *pool.Backend) *pool.Backend {
	if next := h.pickFor(a, w, r, failed); next != nil {
		return next
	}
	other := func() bool {
		for _, b := range h.o.Sets.Set().Backends {
			if b != failed && b.Routable() {
				return true
			}
		}
		return false
	}
	next, _, err := h.o.Queue.AcquireIf(r.Context(), elsewhere{a: a, w: w, r: r, failed: failed}, other)
	if err != nil {
		return nil
	}
	return next
}

// elsewhere is a retry's Picker: any backend but the one that failed.
type elsewhere struct {
	a      *attempt
	w      http.ResponseWriter
	r      *http.Request
	failed *pool.Backend
}

func (e elsewhere) Pick() *pool.Backend { return e.a.h.pickFor(e.a, e.w, e.r, e.failed) }
func (e elsewhere) WaitsForRoom() bool  { return e.a.WaitsForRoom() }

// retry sends the request to next, whose slot the caller took along with a
// retry from the budget, which it gives back when the attempt ends, even
// by the panic of a response body cut off (else the budget would shrink
// for good).
func (h *Handler) retry(w http.ResponseWriter, r *http.Request, a *attempt, next *pool.Backend, why RetryReason) {
	defer h.o.RetryBudget.retryDone()
	a.backend, a.start, a.why = next, time.Now(), why
	h.o.RetryBudget.sent(why)
	h.proxy.ServeHTTP(w, r)
}

// retryable: safe to send twice (RFC 9110 idempotent methods) and nothing to
// replay (no body).
func retryable(r *http.Request) bool {
	if !idempotent(r.Method) {
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
