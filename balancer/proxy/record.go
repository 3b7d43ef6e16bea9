package proxy

import (
	"crypto/tls"
	"net/http"
	"time"

	"lbscale/balancer/accesslog"
)

// HeaderColdStart carries, with COLD_START_HEADER, how long (ms) a request
// waited for a container to start: a client, or a person reading its
// logs, then tells a cold start from a slow service.
const HeaderColdStart = "X-Lbscale-Cold-Start"

// statusClientGone is the access log's status of a request whose client
// left before an answer (nginx's 499): nothing was sent.
const statusClientGone = 499

// record ends the request's trace span and writes its access-log entry.
// With neither on it costs two nil checks.
func (h *Handler) record(a *attempt, r *http.Request, start time.Time, status int) {
	if a.span == nil && h.o.AccessLog == nil {
		return
	}
	end := time.Now()
	if a.span != nil {
		a.span.SetStatus(status)
		if a.tried != "" {
			a.span.SetAttr("lbscale.backend", a.tried)
		}
		a.span.End(end)
	}
	if h.o.AccessLog == nil {
		return
	}
	e := accesslog.Entry{
		Time: start, ID: a.id, Client: r.RemoteAddr, Method: r.Method, Host: r.Host,
		Path: r.URL.Path, Query: r.URL.RawQuery, Proto: r.Proto, Status: status,
		BytesOut: a.sw.n, Duration: end.Sub(start), Queue: a.queue, ColdStart: a.cold,
		Pool: h.o.Pool, Backend: a.tried, Attempts: a.attempts, UserAgent: r.UserAgent(),
		TraceID: a.span.TraceID(),
	}
	if r.ContentLength > 0 {
		e.BytesIn = r.ContentLength
	} else if a.body != nil {
		e.BytesIn = a.body.n.Load()
	}
	if !a.served.IsZero() {
		e.Upstream = end.Sub(a.served)
	}
	if a.retried && a.attempts > 1 {
		e.RetryReason = a.why.String()
	}
	if r.TLS != nil {
		e.TLS = tls.VersionName(r.TLS.Version)
	}
	h.o.AccessLog.Log(&e)
}
