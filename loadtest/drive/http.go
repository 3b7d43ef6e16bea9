package drive

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"lbscale/loadtest/measure"
)

// ServerIDHeader names the backend that answered; the web server sets it on
// every response (see DESIGN.md, the Contract).
const ServerIDHeader = "X-Server-Id"

// HTTPConfig describes how requests are made.
type HTTPConfig struct {
	Targets []string
	Method  string      // default GET
	Header  http.Header // sent with every request
	Timeout time.Duration
	// KeepAlive reuses connections; off, every request opens a new one
	// (as a crowd of one-shot clients would).
	KeepAlive bool
	// Conns sizes the idle pool per host: the concurrency cap or the user
	// count, so a steady run never closes a connection it will want again.
	Conns    int
	Insecure bool // skip TLS verification (self-signed test balancers)
	// Trace sends every request with a fresh traceparent header (sampled,
	// new trace and parent ids) and reports its trace id in the Outcome,
	// so the slowest requests can be found in a trace store. It replaces
	// a traceparent in Header.
	Trace bool
}

// HTTP makes requests through one shared client and transport.
type HTTP struct {
	cfg    HTTPConfig
	client *http.Client
}

// NewHTTP builds the shared client. Proxies from the environment are ignored
// on purpose: load sent through a proxy measures the proxy.
func NewHTTP(cfg HTTPConfig) *HTTP {
	if cfg.Method == "" {
		cfg.Method = http.MethodGet
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.Conns * max(len(cfg.Targets), 1),
		MaxIdleConnsPerHost: cfg.Conns,
		IdleConnTimeout:     90 * time.Second,
		DisableKeepAlives:   !cfg.KeepAlive,
		DisableCompression:  true,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: cfg.Insecure}, // opt-in: --insecure
	}
	return &HTTP{cfg: cfg, client: &http.Client{
		Transport: tr,
		Timeout:   cfg.Timeout,
		// A load driver reports the response it got; following a redirect
		// would send an extra request the schedule never asked for.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Check builds one request per target, so a bad URL or method is reported
// before the run starts rather than as a run of errors.
func (h *HTTP) Check() error {
	for _, u := range h.cfg.Targets {
		if _, err := http.NewRequest(h.cfg.Method, u, nil); err != nil {
			return fmt.Errorf("build request for %s: %w", u, err)
		}
	}
	return nil
}

// Requester returns a Requester with its own request per target. A request
// is reused only after the previous response body was closed, as net/http
// allows, so the hot path allocates only what the transport itself needs.
func (h *HTTP) Requester() Requester {
	reqs := make([]*http.Request, len(h.cfg.Targets))
	for i, u := range h.cfg.Targets {
		r, err := http.NewRequest(h.cfg.Method, u, nil)
		if err != nil {
			panic(fmt.Sprintf("drive: target %s passed Check but failed: %v", u, err))
		}
		r.Header = h.cfg.Header.Clone()
		if r.Header == nil {
			r.Header = http.Header{}
		}
		if host := r.Header.Get("Host"); host != "" {
			r.Host = host
		}
		reqs[i] = r
	}
	// Traced, each request's header holds a one-element slice whose element
	// is replaced before each send: no map write, no slice per request.
	var tp *traceparents
	var tpValues [][]string
	if h.cfg.Trace {
		tp = newTraceparents()
		tpValues = make([][]string, len(reqs))
		for i, r := range reqs {
			tpValues[i] = make([]string, 1)
			r.Header[TraceparentHeader] = tpValues[i]
		}
	}
	return func(target int) measure.Outcome {
		var trace measure.TraceID
		if tp != nil {
			tpValues[target][0], trace = tp.next()
		}
		resp, err := h.client.Do(reqs[target])
		if err != nil {
			return measure.Outcome{Kind: measure.Classify(0, err), Trace: trace}
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		out := measure.Outcome{Status: resp.StatusCode, Backend: resp.Header.Get(ServerIDHeader), Bytes: n, Trace: trace}
		out.Kind = measure.Classify(resp.StatusCode, err)
		return out
	}
}

// Close releases idle connections.
func (h *HTTP) Close() { h.client.CloseIdleConnections() }
