// Package dashboard is the scaler's live page: one HTML file embedded in
// the binary (no CDN, no external asset, so it works offline), fed by
// server-sent events once a second, and a ring buffer of the recent
// history that a page receives whole when it connects.
//
// The page draws its own charts in SVG from the JSON it receives. Server
// rendering (gonum/plot, which draws loadtest's PNGs) was the other choice;
// it would render and ship an image per chart, per viewer, per second, and
// the page could not show a value under the pointer. A few hundred lines
// of plain SVG code cost nothing to serve and keep the page one file.
//
// The package holds no Redis or Docker code: what it shows comes through
// Source, which the controller implements and tests fake.
package dashboard

import (
	"context"
	"time"
)

// Source builds the cluster's picture; it is called once per tick.
type Source interface {
	Snapshot(ctx context.Context) (Snapshot, error)
}

// Snapshot is the cluster at one instant, as the page draws it. Every list
// is sorted (backends and balancers by id, events oldest first).
type Snapshot struct {
	Time time.Time `json:"time"`
	// Pool is the pool's name; Scaler the scaler instance serving the page.
	Pool   string `json:"pool"`
	Scaler string `json:"scaler"`
	// Pools are the pools the serving scaler runs, in the pool file's
	// order: the page offers them in its pool selector (?pool=NAME).
	Pools  []string `json:"pools,omitempty"`
	Leader Leader   `json:"leader"`
	// Replicas are the registry's counts and the leader's targets.
	Replicas Replicas `json:"replicas"`
	Requests Requests `json:"requests"`
	// Conns are the open long-lived connections (WebSocket, event
	// streams) on the pool's containers: a request count misses them,
	// and a drain or a deploy waits for them to close.
	Conns int64 `json:"conns"`
	// Deploy is the pool's latest deploy (nil: it was never deployed).
	Deploy *Deploy `json:"deploy,omitempty"`
	// Backends are the registry's entries with their load.
	Backends  []Backend  `json:"backends"`
	Balancers []Balancer `json:"balancers"`
	Events    []Event    `json:"events"`
	// Problems are operations failing now (operation -> latest error):
	// the scaler's own, and the dashboard's reads.
	Problems map[string]string `json:"problems,omitempty"`
}

// Leader names the scaler that leads.
type Leader struct {
	// ID is the leading scaler's instance ("" when nobody leads).
	ID string `json:"id"`
	// Since is when it took the lease (zero: not known yet).
	Since time.Time `json:"since,omitzero"`
	// Self is whether the scaler serving the page leads.
	Self bool `json:"self"`
}

// Replicas counts the pool's containers.
type Replicas struct {
	Ready    int `json:"ready"`
	Starting int `json:"starting"`
	Draining int `json:"draining"`
	// Desired is the leader's latest decision; Ideal the demand divided by
	// the target per container (TARGET_INFLIGHT), unrounded.
	Desired int     `json:"desired"`
	Ideal   float64 `json:"ideal"`
	Min     int     `json:"min"`
	Max     int     `json:"max"`
}

// Requests is the cluster's request load.
type Requests struct {
	// Inflight is the cluster-wide in-flight count; Queued the requests
	// waiting in balancer queues; Limit the sum of the backends' limits.
	Inflight int64 `json:"inflight"`
	Queued   int64 `json:"queued"`
	Limit    int64 `json:"limit"`
	// Rate is the requests offered per second, summed over balancers.
	Rate float64 `json:"rate"`
}

// Deploy is the pool's latest deploy, as the page shows it. The page
// highlights the active phases (canary, rolling, rolling-back) and warns
// of a rollback.
type Deploy struct {
	// Phase is canary, rolling, done, rolling-back or rolled-back.
	Phase string `json:"phase"`
	// Image is the image deployed; Previous the one it replaces, which a
	// rollback returns to.
	Image    string `json:"image"`
	Previous string `json:"previous"`
	// Reason says why the phase is what it is (the canary's verdict, the
	// failure that started a rollback).
	Reason string `json:"reason,omitempty"`
	// Started is when the deploy was asked for; Finished when it reached
	// done or rolled-back (zero: still under way).
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
}

// Backend is one registry entry with its load.
type Backend struct {
	ID    string `json:"id"`
	State string `json:"state"`
	// Inflight is the cluster-wide count; Limit the cluster-wide limit
	// (MAX_INFLIGHT, lower during slow start).
	Inflight int64     `json:"inflight"`
	Limit    int64     `json:"limit"`
	LastSeen time.Time `json:"last_seen,omitzero"`
	// Served and Failures are summed over the balancers that report, each
	// since it started.
	Served   uint64 `json:"served"`
	Failures uint64 `json:"failures"`
	// Image is the image its container runs ("" : not known to the
	// leader yet); during a deploy it tells new containers from old.
	Image string `json:"image,omitempty"`
	// Conns are its open long-lived connections, summed over balancers.
	Conns int64 `json:"conns"`
}

// Balancer is one balancer as its latest report tells.
type Balancer struct {
	ID string `json:"id"`
	// LastSync is its latest successful sync with Redis; Reported when it
	// last reported.
	LastSync time.Time `json:"last_sync,omitzero"`
	Reported time.Time `json:"reported"`
	Queued   int64     `json:"queued"`
	Inflight int64     `json:"inflight"`
	Rate     float64   `json:"rate"`
	// Redis is whether it reaches Redis: it reported within the last few
	// seconds and its own latest sync succeeded.
	Redis bool `json:"redis"`
}

// Event is one scale event.
type Event struct {
	Time      time.Time `json:"time"`
	Direction string    `json:"direction"`
	Reason    string    `json:"reason"`
	// From and To are the replicas (ready and starting) before and after.
	From int      `json:"from"`
	To   int      `json:"to"`
	IDs  []string `json:"ids,omitempty"`
	// TookMs is how long the event took to complete (create to healthy,
	// drain to stopped), 0 while under way.
	TookMs float64 `json:"took_ms"`
}

// Point is one sample of the history, with short keys: the page receives
// the whole window (1,800 of them) when it connects.
type Point struct {
	T        int64   `json:"t"` // unix ms
	Ready    int     `json:"r"`
	Starting int     `json:"s"`
	Draining int     `json:"d"`
	Desired  int     `json:"w"`
	Ideal    float64 `json:"i"`
	Inflight int64   `json:"f"`
	Queued   int64   `json:"q"`
	Rate     float64 `json:"a"`
}

// PointOf is the history sample of s.
func PointOf(s Snapshot) Point {
	return Point{T: s.Time.UnixMilli(), Ready: s.Replicas.Ready, Starting: s.Replicas.Starting, Draining: s.Replicas.Draining,
		Desired: s.Replicas.Desired, Ideal: s.Replicas.Ideal, Inflight: s.Requests.Inflight, Queued: s.Requests.Queued, Rate: s.Requests.Rate}
}
