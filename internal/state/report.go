package state

import (
	"context"
	"time"
)

// ReportEvery is how often a balancer writes its Report: the dashboard
// refreshes once a second, and a report costs Redis one small transaction,
// against the sync's 40 script calls a second. A reader gains nothing by
// reading reports more often.
const ReportEvery = time.Second

// ReportFresh is how old a balancer's report may be and still stand for
// the balancer's present: three reports. A balancer silent for longer has
// stopped or lost the store, so it no longer reaches Redis (the dashboard
// says so) and its long-lived connections are gone with it or no longer
// known; counted for ever they would shut backends out of MAX_CONNECTIONS
// that have room, hold drains and size the pool. Its counters of served
// requests still count, since they only ever grow.
const ReportFresh = 3 * ReportEvery

// ReportKeep is how long a balancer's last Report stays readable after it
// stopped reporting: the dashboard lists a silent balancer, with the time of
// its last sync, for that long.
const ReportKeep = 10 * time.Minute

// Report is a balancer's account of itself for the scalers' dashboard,
// written about once a second, apart from the sync: the sync carries what
// the slot division needs, 40 times a second; the report carries what people
// read, counters that may lag a second.
type Report struct {
	// Balancer is the balancer's id.
	Balancer string
	// At is when the report was made; LastSync when the balancer last
	// synced with the store (zero: never).
	At, LastSync time.Time
	// StoreUp is whether the balancer's latest sync reached the store.
	StoreUp bool
	// Queued is the balancer's queue depth; Arrivals its offered rate
	// (requests/s).
	Queued   int64
	Arrivals float64
	// Backends are the backends the balancer knows.
	Backends []BackendReport
}

// BackendReport is one balancer's counters for one backend.
type BackendReport struct {
	ID string
	// Local is the balancer's in-flight count; Limit the backend's
	// cluster-wide limit as the balancer applies it (lower in slow start).
	Local, Limit int64
	// Served and Failures count, since the balancer started, the requests
	// it completed on the backend and its failed attempts there.
	Served, Failures uint64
	// Busy is the summed service time of the Served requests (a deploy's
	// canary compares mean latencies from it).
	Busy time.Duration
	// Conns is the balancer's open long-lived connections on the backend:
	// upgraded ones (WebSocket) and streams (server-sent events, bodies
	// still open after STREAM_AFTER), which hold no request slot.
	Conns int64
}

// Reports is where balancers leave their reports and scalers read them.
type Reports interface {
	// PutReport stores r as its balancer's latest.
	PutReport(ctx context.Context, r Report) error
	// Reports returns the latest report of every balancer that reported
	// within ReportKeep, sorted by balancer id.
	Reports(ctx context.Context) ([]Report, error)
}

// Summaries is where the leading scaler leaves its dashboard summary, an
// opaque document, and every scaler reads it.
type Summaries interface {
	// PutSummary stores doc for ttl.
	PutSummary(ctx context.Context, doc []byte, ttl time.Duration) error
	// Summary returns the latest summary, nil when there is none.
	Summary(ctx context.Context) ([]byte, error)
}
