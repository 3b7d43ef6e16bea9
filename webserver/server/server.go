// Package server is lbscale's sample backend: an HTTP handler whose cost per
// request is configurable (CPU work, sleep, and a fixed number of requests
// processed at once), so that processing, not the network, is what limits a
// container and adding containers adds capacity even on a 2-core host.
//
// Routes:
//
//	/            any method: "Hello from <id> (container <hostname>)"; the
//	             query parameters work_ms and sleep_ms override WORK_MS and
//	             SLEEP_MS for this request
//	/load        GET: the server's load as JSON (LoadReport)
//	/load/reset  POST: restart peak_inflight, peak_active and served
//	/healthz     GET: 200 "ok", 503 once shutdown has begun
//	/upgrade     Connection: Upgrade requests get 101 and a raw byte echo
//	/events      GET: server-sent events, "data: <n>" every interval_ms
//	             (default 1000, 1 to 60000) until count events (0, the
//	             default: no limit) were sent or the client leaves
//
// With FAULT set, / and /upgrade misbehave (Config.Fault) while /load,
// /healthz and /events answer as ever: the gray failure that health checks
// miss.
//
// Every response carries X-Server-Id. /load, /load/reset and /healthz are
// never counted and never wait for a slot: a balancer polling them must see
// the load, not add to it or queue behind it.
//
// Long-lived connections are held as an asynchronous (event-driven) server
// holds them: an upgrade waits for a slot for its handshake only and gives
// it back once the 101 is written, and an event stream takes none; both
// are counted in /load's conns instead. So CAPACITY bounds the work done
// at once, not the clients connected.
//
// On shutdown (SIGTERM, or BeginShutdown) the server closes its open
// tunnels itself and ends its event streams with a last "event: bye", at
// once rather than after SHUTDOWN_TIMEOUT, and refuses new ones with 503:
// the clients of a draining container reconnect, through the balancer, to
// another one, while ordinary requests inside still complete.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// HeaderServerID is set on every response, so a client (or a test behind a
// balancer) can tell which server answered.
const HeaderServerID = "X-Server-Id"

// Query parameters overriding the configured cost of one request.
const (
	ParamWorkMS  = "work_ms"
	ParamSleepMS = "sleep_ms"
)

// maxBody bounds a request body the server reads (and discards): reading it
// all before processing lets net/http notice a client that goes away, and
// the bound keeps a stray upload from costing memory or time.
const maxBody = 8 << 20

// LoadReport is the JSON body of GET /load. Counts are read one by one without a
// lock, so under traffic they may disagree by a request or two; peaks are
// exact.
type LoadReport struct {
	ID string `json:"id"`
	// Inflight is the requests inside the server now: Active + Waiting.
	Inflight int64 `json:"inflight"`
	// PeakInflight is the most requests inside at once since start or the
	// last POST /load/reset.
	PeakInflight int64 `json:"peak_inflight"`
	// Active is the requests being processed (holding a slot).
	Active int64 `json:"active"`
	// PeakActive is the most requests processed at once since start or
	// reset; never above Capacity when Capacity is set.
	PeakActive int64 `json:"peak_active"`
	// Waiting is the requests queued for a slot.
	Waiting int64 `json:"waiting"`
	// Capacity is CAPACITY (0: unlimited).
	Capacity int `json:"capacity"`
	// Served counts requests answered since start or reset; an upgrade
	// counts once its 101 is written, an event stream once it ends.
	Served int64 `json:"served"`
	// Cancelled counts requests whose client went away before the answer.
	Cancelled int64 `json:"cancelled"`
	// Conns is the open upgraded connections (/upgrade) and event streams
	// (/events). They are not in Inflight and hold no slot: like an
	// event-driven server, this one spends a socket on each, not a worker.
	Conns int64 `json:"conns"`
	// CPUPercent is the process's CPU use over the last sampling period
	// (one second), in percent of one core: 2 busy cores read 200.
	CPUPercent float64 `json:"cpu_percent"`
	// Utilization is Inflight / Capacity (above 1 when requests wait), or 0
	// when capacity is unlimited.
	Utilization float64 `json:"utilization"`
	// ShuttingDown is true once SIGTERM arrived.
	ShuttingDown bool `json:"shutting_down"`
}

// Server is the handler and its counters. Create it with New.
type Server struct {
	cfg Config
	log *slog.Logger
	// slots holds one token per request being processed; nil when capacity
	// is unlimited. A channel rather than a counter so that a waiting
	// request can give up when its client leaves (select on ctx.Done).
	slots chan struct{}

	inflight, active, waiting atomic.Int64
	peakInflight, peakActive  atomic.Int64
	served, cancelled         atomic.Int64
	cpuPercentBits            atomic.Uint64 // math.Float64bits of the last reading
	shuttingDown              atomic.Bool
	// stopping ends at BeginShutdown, so that requests held by FAULT=hang
	// let go and the drain does not wait ShutdownTimeout, and so that open
	// tunnels and event streams are closed (see long).
	stopping context.Context
	stop     context.CancelFunc
	// conns counts open upgraded connections and event streams; long
	// tracks their handlers, so that Serve returns only once every tunnel
	// (which http.Server.Shutdown no longer sees once hijacked) is closed.
	conns atomic.Int64
	long  sync.WaitGroup
	// cpuEvery is the CPU sampling period; tests shorten it.
	cpuEvery time.Duration
	handler  http.Handler
	body     string
}

// New returns a Server for cfg; log may be nil (logs are discarded).
func New(cfg Config, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, cpuEvery: time.Second}
	s.stopping, s.stop = context.WithCancel(context.Background())
	if cfg.Capacity > 0 {
		s.slots = make(chan struct{}, cfg.Capacity)
	}
	s.body = fmt.Sprintf("Hello from %s (container %s)\n", cfg.ServerID, cfg.Hostname)
	mux := http.NewServeMux()
	// Methods are checked inside the handlers: with a catch-all "/" route,
	// a "GET /load" pattern would send POST /load to "/" instead of 405.
	mux.HandleFunc("/load", s.serveLoad)
	mux.HandleFunc("/load/reset", s.serveReset)
	mux.HandleFunc("/healthz", s.serveHealth)
	mux.HandleFunc("/upgrade", s.request(s.serveUpgrade))
	mux.HandleFunc("/events", s.serveEvents)
	mux.HandleFunc("/", s.request(s.serveHello))
	s.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderServerID, cfg.ServerID)
		mux.ServeHTTP(w, r)
	})
	return s
}

// Handler is the server's whole HTTP surface.
func (s *Server) Handler() http.Handler { return s.handler }

// BeginShutdown makes /healthz answer 503 so that balancers and the scaler
// stop sending new work; requests already inside are still served. Open
// upgraded connections are closed and event streams end with a last "bye"
// event, at once: they would otherwise hold the drain until their clients
// leave, and closed they let those clients reconnect to another container.
// New upgrades and event streams are refused with 503.
func (s *Server) BeginShutdown() {
	s.shuttingDown.Store(true)
	s.stop()
}

// Serve answers on ln until ctx ends, then shuts down gracefully: /healthz
// turns 503, the listener closes, and requests inside (processing or
// waiting for a slot) complete, for up to ShutdownTimeout. It returns nil
// after a complete drain and an error when serving failed or the drain was
// cut short. It also owns the CPU sampler behind /load's cpu_percent.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	sampleCtx, stopSampler := context.WithCancel(context.Background())
	defer stopSampler()
	go s.SampleCPU(sampleCtx)

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log.Info("listening", "addr", ln.Addr().String(), "work", s.cfg.Work.String(),
		"sleep", s.cfg.Sleep.String(), "capacity", s.cfg.Capacity, "fault", s.cfg.Fault)

	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down", "inflight", s.inflight.Load(), "conns", s.conns.Load(), "timeout", s.cfg.ShutdownTimeout.String())
	s.BeginShutdown()
	dctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(dctx); err != nil {
		left := s.inflight.Load()
		_ = hs.Close()
		return fmt.Errorf("drain %d in-flight requests within %s: %w", left, s.cfg.ShutdownTimeout, err)
	}
	<-errc // http.ErrServerClosed
	// No handler starts any more (Shutdown waited for every connection
	// not taken over to go idle); the tunnels, closed by BeginShutdown,
	// are finishing.
	tunnels := make(chan struct{})
	go func() { s.long.Wait(); close(tunnels) }()
	select {
	case <-tunnels:
	case <-dctx.Done():
		return fmt.Errorf("close %d upgraded connections within %s: %w", s.conns.Load(), s.cfg.ShutdownTimeout, dctx.Err())
	}
	s.log.Info("drained", "served", s.served.Load())
	return nil
}

// Snapshot returns the current load.
func (s *Server) Snapshot() LoadReport {
	l := LoadReport{
		ID:           s.cfg.ServerID,
		Inflight:     s.inflight.Load(),
		PeakInflight: s.peakInflight.Load(),
		Active:       s.active.Load(),
		PeakActive:   s.peakActive.Load(),
		Waiting:      s.waiting.Load(),
		Capacity:     s.cfg.Capacity,
		Served:       s.served.Load(),
		Cancelled:    s.cancelled.Load(),
		Conns:        s.conns.Load(),
		CPUPercent:   math.Float64frombits(s.cpuPercentBits.Load()),
		ShuttingDown: s.shuttingDown.Load(),
	}
	if s.cfg.Capacity > 0 {
		l.Utilization = float64(l.Inflight) / float64(s.cfg.Capacity)
	}
	return l
}

// Reset restarts the peaks (at the current values: requests inside now are
// part of the new phase) and the served and cancelled counts, so a test can
// measure one phase.
func (s *Server) Reset() {
	s.peakInflight.Store(s.inflight.Load())
	s.peakActive.Store(s.active.Load())
	s.served.Store(0)
	s.cancelled.Store(0)
}

func (s *Server) serveLoad(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(s.Snapshot())
}

func (s *Server) serveReset(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodPost) {
		return
	}
	s.Reset()
	s.log.Info("load counters reset")
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.Snapshot())
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.shuttingDown.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "shutting down\n")
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// allow answers 405 with an Allow header unless r's method is one of methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, fmt.Sprintf("%s %s: method not allowed", r.Method, r.URL.Path), http.StatusMethodNotAllowed)
	return false
}

// cost is the work and sleep of one request: the configured values unless
// the query overrides them.
func (s *Server) cost(q url.Values) (work, sleep time.Duration, err error) {
	work, sleep = s.cfg.Work, s.cfg.Sleep
	if work, err = msParam(q, ParamWorkMS, work); err != nil {
		return 0, 0, err
	}
	if sleep, err = msParam(q, ParamSleepMS, sleep); err != nil {
		return 0, 0, err
	}
	return work, sleep, nil
}

func msParam(q url.Values, name string, def time.Duration) (time.Duration, error) {
	if !q.Has(name) {
		return def, nil
	}
	if len(q[name]) > 1 {
		return 0, fmt.Errorf("%s is given %d times; give it once", name, len(q[name]))
	}
	v := q.Get(name)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > MaxCostMS {
		return 0, fmt.Errorf("%s=%q is not a whole number of milliseconds from 0 to %d", name, v, MaxCostMS)
	}
	return time.Duration(n) * time.Millisecond, nil
}

// request is h for a request path, or serveFault under FAULT.
func (s *Server) request(h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.Fault == "" {
		return h
	}
	return s.serveFault
}

// serveFault answers a request path under FAULT. error: 500 at once. hang:
// the request is read (so that net/http notices the client leave) and held
// without a byte of answer, counted in /load's inflight, until the client
// goes away; when the server shuts down the connection is cut, still
// without an answer.
func (s *Server) serveFault(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxBody))
	if s.cfg.Fault == FaultError {
		http.Error(w, "500 Internal Server Error (FAULT=error)", http.StatusInternalServerError)
		return
	}
	storeMax(&s.peakInflight, s.inflight.Add(1))
	defer s.inflight.Add(-1)
	select {
	case <-r.Context().Done():
		s.cancelled.Add(1)
	case <-s.stopping.Done():
		panic(http.ErrAbortHandler)
	}
}

func (s *Server) serveHello(w http.ResponseWriter, r *http.Request) {
	// url.ParseQuery, not r.URL.Query(): the latter drops what it cannot
	// parse, so "?work_ms=%zz" would be served at the default cost.
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		http.Error(w, "malformed query: "+err.Error(), http.StatusBadRequest)
		return
	}
	work, sleep, err := s.cost(q)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// Read the body first: net/http only notices a vanished client (and
	// cancels r.Context()) once the body has been consumed.
	if _, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxBody)); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("request body over %d bytes", maxBody), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "read request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	if !s.enter(ctx) {
		return
	}
	defer s.leave()
	start := time.Now()
	if err := burn(ctx, work); err != nil {
		s.cancelled.Add(1)
		return
	}
	if sleep > 0 {
		t := time.NewTimer(sleep)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			s.cancelled.Add(1)
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, s.body)
	s.served.Add(1)
	s.log.Debug("served", "method", r.Method, "path", r.URL.Path, "work", work.String(), "sleep", sleep.String(), "took", time.Since(start).String())
}

// enter counts a request in and waits for a slot. It returns false, having
// counted the request out again, when the client left while waiting.
func (s *Server) enter(ctx context.Context) bool {
	storeMax(&s.peakInflight, s.inflight.Add(1))
	s.waiting.Add(1)
	if s.slots != nil {
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			s.waiting.Add(-1)
			s.inflight.Add(-1)
			s.cancelled.Add(1)
			return false
		}
	}
	s.waiting.Add(-1)
	storeMax(&s.peakActive, s.active.Add(1))
	return true
}

// leave gives back the slot taken by enter.
func (s *Server) leave() {
	// active drops before the slot is freed: the other order lets a waiter
	// take the slot and count itself while this one still does, and
	// peak_active would then report one above CAPACITY.
	s.active.Add(-1)
	if s.slots != nil {
		<-s.slots
	}
	s.inflight.Add(-1)
}

func storeMax(m *atomic.Int64, v int64) {
	for {
		cur := m.Load()
		if v <= cur || m.CompareAndSwap(cur, v) {
			return
		}
	}
}

// SampleCPU measures the process's CPU use once per period until ctx ends;
// /load reports the last measurement. Serve runs it.
func (s *Server) SampleCPU(ctx context.Context) {
	t := time.NewTicker(s.cpuEvery)
	defer t.Stop()
	prevCPU, prevAt := processCPU(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu := processCPU()
			if wall := now.Sub(prevAt); wall > 0 {
				s.cpuPercentBits.Store(math.Float64bits(100 * float64(cpu-prevCPU) / float64(wall)))
			}
			prevCPU, prevAt = cpu, now
		}
	}
}

// processCPU is the user + system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
