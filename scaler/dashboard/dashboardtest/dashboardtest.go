// Package dashboardtest holds what tests of the dashboard and of its
// callers share: an in-memory Source, a made-up cluster to feed it, and
// the routes the scaler serves the page on.
package dashboardtest

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"lbscale/scaler/dashboard"
)

// Source is a dashboard.Source that answers from memory: the snapshot it
// holds, stamped with its clock, or the error it was told to fail with.
// It is safe for concurrent use.
type Source struct {
	mu    sync.Mutex // protects the fields below
	snap  dashboard.Snapshot
	err   error
	now   func() time.Time
	calls int
}

var _ dashboard.Source = (*Source)(nil)

// NewSource returns a Source answering s; each answer's Time is now()
// (nil: time.Now).
func NewSource(s dashboard.Snapshot, now func() time.Time) *Source {
	if now == nil {
		now = time.Now
	}
	return &Source{snap: s, now: now}
}

// Snapshot implements dashboard.Source. It returns a deep copy, so the Hub
// may keep it while the test changes the source.
func (s *Source) Snapshot(ctx context.Context) (dashboard.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if err := ctx.Err(); err != nil {
		return dashboard.Snapshot{}, err
	}
	if s.err != nil {
		return dashboard.Snapshot{}, s.err
	}
	out := Clone(s.snap)
	out.Time = s.now()
	return out, nil
}

// Update changes the snapshot the source answers.
func (s *Source) Update(f func(*dashboard.Snapshot)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.snap)
}

// Fail makes every Snapshot fail with err from now on; nil heals it.
func (s *Source) Fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// Calls is how many times Snapshot was called.
func (s *Source) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Clone returns a copy of s that shares no slice or map with it.
func Clone(s dashboard.Snapshot) dashboard.Snapshot {
	s.Pools = slices.Clone(s.Pools)
	s.Backends = slices.Clone(s.Backends)
	s.Balancers = slices.Clone(s.Balancers)
	s.Events = slices.Clone(s.Events)
	for i := range s.Events {
		s.Events[i].IDs = slices.Clone(s.Events[i].IDs)
	}
	s.Problems = maps.Clone(s.Problems)
	if s.Deploy != nil {
		d := *s.Deploy
		s.Deploy = &d
	}
	return s
}

// Shape is the size of a made-up cluster.
type Shape struct {
	Backends, Balancers, Events int
	// Seed makes the cluster: the same seed, the same cluster.
	Seed uint64
	// Time is the snapshot's time; the last-seen, sync and event times
	// lie before it.
	Time time.Time
}

// Limit is every made-up ready backend's in-flight limit, and Target the
// in-flight per container the made-up leader aims at.
const (
	Limit  = 32
	Target = 24
)

// Image is the image every made-up backend runs.
const Image = "registry.example.com/shop/web:1.4.2"

// Cluster returns a plausible snapshot of the given shape: about 90% of
// the backends ready, 6% starting and 4% draining, with random load, one
// balancer of ten cut off from Redis, events spread over the last half
// hour (the newest still under way), every backend on Image with a
// quarter of its load on long-lived connections. The counts and sums agree
// with the lists.
func Cluster(sh Shape) dashboard.Snapshot {
	r := rand.New(rand.NewPCG(sh.Seed, sh.Seed^0x9e3779b97f4a7c15))
	now := sh.Time
	s := dashboard.Snapshot{Time: now, Pool: "web", Scaler: "scaler-a",
		Leader:   dashboard.Leader{ID: "scaler-a", Since: now.Add(-17 * time.Minute), Self: true},
		Backends: []dashboard.Backend{}, Balancers: []dashboard.Balancer{}, Events: []dashboard.Event{}}
	for i := range sh.Backends {
		b := dashboard.Backend{ID: fmt.Sprintf("web-%04d-%06x", i, r.Uint32()&0xffffff), State: "ready", Limit: Limit,
			LastSeen: now.Add(-time.Duration(r.IntN(3000)) * time.Millisecond)}
		switch x := r.IntN(100); {
		case x < 6:
			b.State, b.Limit, b.Inflight = "starting", 4, int64(r.IntN(3))
			s.Replicas.Starting++
		case x < 10:
			b.State, b.Inflight = "draining", int64(r.IntN(6))
			s.Replicas.Draining++
		default:
			// Mostly middling, a few near or at the limit.
			b.Inflight = min(int64(r.NormFloat64()*7+16), Limit)
			if r.IntN(20) == 0 {
				b.Inflight = Limit
			}
			b.Inflight = max(b.Inflight, 0)
			s.Replicas.Ready++
		}
		if b.State != "starting" {
			b.Served = uint64(r.IntN(2_000_000))
			b.Failures = uint64(r.IntN(40)) * uint64(r.IntN(2))
		}
		// Some of the load on long-lived connections (no random draw, so
		// that a seed makes the cluster it always made).
		b.Image, b.Conns = Image, b.Inflight/4
		s.Requests.Inflight += b.Inflight
		s.Requests.Limit += b.Limit
		s.Conns += b.Conns
		s.Backends = append(s.Backends, b)
	}
	slices.SortFunc(s.Backends, func(a, b dashboard.Backend) int { return strings.Compare(a.ID, b.ID) })
	for i := range sh.Balancers {
		b := dashboard.Balancer{ID: fmt.Sprintf("lb-%02d", i+1), Reported: now.Add(-time.Duration(r.IntN(1000)) * time.Millisecond),
			Queued: int64(r.IntN(5)), Rate: 150 + r.Float64()*50, Redis: true}
		b.LastSync = b.Reported
		if i == 3 { // one cut off: its last sync lies long before
			b.LastSync, b.Redis = now.Add(-47*time.Second), false
		}
		s.Requests.Queued += b.Queued
		s.Requests.Rate += b.Rate
		s.Balancers = append(s.Balancers, b)
	}
	// The in-flight count split evenly, the remainder on the first.
	for i := range s.Balancers {
		s.Balancers[i].Inflight = s.Requests.Inflight / int64(sh.Balancers)
	}
	if sh.Balancers > 0 {
		s.Balancers[0].Inflight += s.Requests.Inflight % int64(sh.Balancers)
	}
	replicas := max(s.Replicas.Ready-sh.Events, 1)
	for i := range sh.Events {
		e := dashboard.Event{Time: now.Add(-time.Duration(sh.Events-i) * 30 * time.Second), From: replicas}
		n := 1 + r.IntN(4)
		if i%3 == 2 {
			e.Direction, e.Reason, e.To = "down", "surplus", replicas-n
		} else {
			e.Direction, e.Reason, e.To = "up", "demand", replicas+n
		}
		for j := range n {
			e.IDs = append(e.IDs, fmt.Sprintf("web-%04d-%06x", 2000+i*4+j, r.Uint32()&0xffffff))
		}
		e.TookMs = 800 + r.Float64()*2500
		if i == sh.Events-1 {
			e.TookMs = 0 // still under way
		}
		replicas = e.To
		s.Events = append(s.Events, e)
	}
	s.Replicas.Desired = s.Replicas.Ready + s.Replicas.Starting
	s.Replicas.Ideal = float64(s.Requests.Inflight+s.Requests.Queued) / Target
	s.Replicas.Min, s.Replicas.Max = 1, max(2*sh.Backends, 10)
	return s
}

// Mux serves h as the scaler does: the page at "/" and the stream at
// dashboard.StreamPath.
func Mux(h *dashboard.Hub) *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", h.Page)
	m.HandleFunc("GET "+dashboard.StreamPath, h.Stream)
	return m
}
