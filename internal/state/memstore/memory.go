// Package memstore is the in-process state.Store: the shared state of a
// single balancer, kept in memory.
package memstore

import (
	"context"
	"sort"
	"sync"
	"time"

	"lbscale/internal/state"
)

// Store is a state.Store inside one process: the default when REDIS_URL is unset
// (one balancer, static BACKENDS) and the store of unit tests.
//
// It keeps the same books as Redis — registry, per-balancer counts with a
// TTL, last-seen, lease — but divides no slots: every balancer in the
// process is granted each backend's whole limit, because with one balancer
// there is no one to share with.
type Store struct {
	mu        sync.Mutex
	now       func() time.Time
	registry  map[string]state.Backend
	balancers map[string]memBalancer
	lastSeen  map[string]time.Time
	owned     bool // a registry write happened: follow it even when empty
	lease     string
	leaseEnd  time.Time
	subs      map[chan int64]struct{}

	reports    map[string]state.Report // balancer id -> latest report
	summary    []byte                  // the leader's dashboard summary
	summaryEnd time.Time               // when summary expires
	deploy     *state.Deploy           // the pool's latest deploy
	forecast   map[int64]float64       // bucket start (unix s) -> mean arrival rate
}

type memBalancer struct {
	expires  time.Time
	queued   int64
	interval time.Duration
	flow     state.Flow
	local    map[string]int64
}

// New returns an empty in-process store; now is its clock (nil: time.Now).
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{
		now:       now,
		registry:  map[string]state.Backend{},
		balancers: map[string]memBalancer{},
		lastSeen:  map[string]time.Time{},
		subs:      map[chan int64]struct{}{},
	}
}

// Backends implements Registry.
func (m *Store) Backends(context.Context) ([]state.Backend, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.backendsLocked(), nil
}

func (m *Store) backendsLocked() []state.Backend {
	out := make([]state.Backend, 0, len(m.registry))
	for _, b := range m.registry {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// PutBackend implements Registry.
func (m *Store) PutBackend(_ context.Context, b state.Backend) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.registry[b.ID] = b
	m.owned = true
	return nil
}

// RemoveBackend implements Registry.
func (m *Store) RemoveBackend(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.registry, id)
	delete(m.lastSeen, id)
	m.owned = true
	return nil
}

// Sync implements Store.
func (m *Store) Sync(_ context.Context, req state.SyncRequest) (state.SyncResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.expireLocked(now)
	local := make(map[string]int64, len(req.Slots))
	for _, s := range req.Slots {
		local[s.ID] = s.Local
		if s.LastSeen.After(m.lastSeen[s.ID]) {
			m.lastSeen[s.ID] = s.LastSeen
		}
	}
	m.balancers[req.Balancer] = memBalancer{expires: now.Add(req.TTL), queued: req.Queued, interval: req.Interval, flow: req.Flow, local: local}
	res := state.SyncResult{
		Grants:      make([]int64, len(req.Slots)),
		Targets:     make([]int64, len(req.Slots)),
		Remote:      make([]int64, len(req.Slots)),
		LastSeen:    make([]time.Time, len(req.Slots)),
		Balancers:   len(m.balancers),
		HasRegistry: m.owned,
	}
	for i, s := range req.Slots {
		res.Grants[i], res.Targets[i] = s.Limit, s.Limit
		for id, b := range m.balancers {
			if id != req.Balancer {
				res.Remote[i] += b.local[s.ID]
			}
		}
		res.LastSeen[i] = m.lastSeen[s.ID]
	}
	if res.HasRegistry {
		res.Registry = m.backendsLocked()
	}
	return res, nil
}

func (m *Store) expireLocked(now time.Time) {
	for id, b := range m.balancers {
		if !now.Before(b.expires) {
			delete(m.balancers, id)
		}
	}
}

// Leave implements Store.
func (m *Store) Leave(_ context.Context, balancer string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.balancers, balancer)
	return nil
}

// ClusterLoad implements Store.
func (m *Store) ClusterLoad(context.Context) (state.ClusterLoad, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(m.now())
	cl := state.ClusterLoad{Inflight: map[string]int64{}, LastSeen: map[string]time.Time{}, Balancers: len(m.balancers)}
	flows := make([]state.Flow, 0, len(m.balancers))
	for _, b := range m.balancers {
		flows = append(flows, b.flow)
		cl.Queued += b.queued
		cl.SyncInterval = max(cl.SyncInterval, b.interval)
		for id, n := range b.local {
			cl.Inflight[id] += n
		}
	}
	for id, t := range m.lastSeen {
		cl.LastSeen[id] = t
	}
	cl.Arrivals, cl.Service = state.SumFlows(flows)
	return cl, nil
}

// PublishDemand implements Store.
func (m *Store) PublishDemand(_ context.Context, _ string, queued int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch := range m.subs {
		select {
		case ch <- queued:
		default: // a slow subscriber loses the signal; it also polls
		}
	}
	return nil
}

// Demand implements Store.
func (m *Store) Demand(ctx context.Context) <-chan int64 {
	ch := make(chan int64, 16)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	m.mu.Unlock()
	go func() {
		<-ctx.Done()
		m.mu.Lock()
		delete(m.subs, ch)
		m.mu.Unlock()
		close(ch)
	}()
	return ch
}

// AcquireLease implements Store.
func (m *Store) AcquireLease(_ context.Context, holder string, ttl time.Duration) (state.Lease, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if m.lease == "" || m.lease == holder || !now.Before(m.leaseEnd) {
		m.lease, m.leaseEnd = holder, now.Add(ttl)
	}
	return state.Lease{Holder: m.lease, Left: m.leaseEnd.Sub(now)}, nil
}

// ReleaseLease implements Store.
func (m *Store) ReleaseLease(_ context.Context, holder string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lease == holder {
		m.lease = ""
	}
	return nil
}

// Close implements Store.
func (m *Store) Close() error { return nil }
