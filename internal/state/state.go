// Package state is lbscale's shared cluster state: the backend registry, the
// per-balancer in-flight counts and slot grants, last-seen times, demand
// signals and the scaler's leader lease.
//
// The balancer owns this package (it is the hot consumer); the scaler imports
// it. It holds the schema only: types, key names (keys.go, and nowhere
// else) and the interfaces, with no I/O, so that a pure package such as
// scaler/decide links no Redis client. Store has two implementations beside
// it: redisstore (the cluster) and memstore (one process, the default
// without REDIS_URL, and unit tests).
package state

import (
	"context"
	"time"
)

// Status is a backend's life-cycle state in the registry.
type Status string

// Backend states, as the scaler writes them.
const (
	// Starting: the container exists but has not passed its health check;
	// balancers do not route to it, the scaler counts it as capacity on the way.
	Starting Status = "starting"
	// Ready: balancers route to it.
	Ready Status = "ready"
	// Draining: balancers stop picking it at their next sync; the scaler stops
	// it once its cluster-wide in-flight reaches zero.
	Draining Status = "draining"
	// Invalid marks an entry that could not be decoded: balancers do not
	// route to it, and the scaler's reconcile rewrites or removes it.
	Invalid Status = "invalid"
)

// DefaultEpoch is the default SyncRequest.Epoch.
const DefaultEpoch = 250 * time.Millisecond

// Backend is one registry entry.
type Backend struct {
	ID     string    `json:"id"`
	Addr   string    `json:"addr"`
	State  Status    `json:"state"`
	Since  time.Time `json:"since"`
	Weight int       `json:"weight,omitempty"`
}

// SlotUse is what a balancer reports about one backend at a sync.
type SlotUse struct {
	// ID of the backend.
	ID string
	// Local is the balancer's exact in-flight count on it.
	Local int64
	// Floor is the most slots the balancer may use while the sync is under
	// way; the store never grants less, so a grant never drops below what
	// the balancer could already have in flight.
	Floor int64
	// Limit is the backend's cluster-wide MAX_INFLIGHT (lower in slow start).
	Limit int64
	// LastSeen is when this balancer last sent it a request (zero: never).
	LastSeen time.Time
}

// Flow is a balancer's recent request flow (measured by balancer/flow): the
// scaler sizes the pool from it by Little's law.
type Flow struct {
	// Arrivals per second over the last window: every request offered to
	// the balancer, queued and refused ones included.
	Arrivals float64
	// Done is requests served per second over the window.
	Done float64
	// Service is the mean backend service time of the requests served in
	// the window; when none finished in it, the last mean measured (0: never).
	Service time.Duration
}

// SyncRequest is one balancer's heartbeat.
type SyncRequest struct {
	// Balancer is this balancer's unique id.
	Balancer string
	// Queued is how many requests wait in this balancer's queue; it is the
	// demand signal and weighs the slot division.
	Queued int64
	// Weight is this balancer's demand for the slot division (in flight
	// plus queued, smoothed by the caller so that noise does not shuffle
	// slots between balancers every sync). Zero: the instantaneous count.
	Weight float64
	// Epoch is how long one division of fractional slots stands before
	// the sampling offset moves (DefaultEpoch when zero); see sync.lua.
	Epoch time.Duration
	// Slots, one per backend this balancer knows.
	Slots []SlotUse
	// TTL after which this balancer's counts and grants vanish if it does
	// not sync again.
	TTL time.Duration
	// Interval is how often this balancer syncs; the scaler waits for the
	// slowest balancer to have seen a container draining before it stops it.
	Interval time.Duration
	// Flow is this balancer's recent request flow, for the scaler.
	Flow Flow
	// Hold asks the store to grant exactly each Floor, no more: the
	// balancer has just come back from an outage in which it served on
	// shares the store never recorded, so it takes no new slots until every
	// other balancer has had a TTL to report what it holds.
	Hold bool
}

// SyncResult is the cluster's answer to a heartbeat; slices align with
// SyncRequest.Slots.
type SyncResult struct {
	// Grants: slots this balancer may now use on each backend. Across live
	// balancers the grants on a backend never sum past its Limit.
	Grants []int64
	// Targets: this balancer's fair share of each backend's slots by demand.
	// A grant above its target is lent: before the next sync the balancer
	// shrinks its grant toward the target (never below its in-flight), and
	// reports the result as that backend's Floor.
	Targets []int64
	// Remote: the other live balancers' in-flight sum on each backend.
	Remote []int64
	// LastSeen: the latest request time to each backend across the cluster.
	LastSeen []time.Time
	// Registry is the scaler's registry; HasRegistry is false when no
	// scaler has written one (static BACKENDS then rule).
	Registry    []Backend
	HasRegistry bool
	// Balancers is the number of live balancers, this one included.
	Balancers int
	// Rank is this balancer's position (0-based) among the live balancers
	// in id order; an outage's fallback shares are laid out by it.
	Rank int
	// Generation identifies the store's copy of the shared state; it changes
	// when the store loses that state (a restart without persistence, a
	// flush, a failover to an empty replica). Zero: the store does not tell.
	Generation int64
}

// ClusterLoad is the cluster-wide picture the scaler decides from.
type ClusterLoad struct {
	// Inflight is the sum over live balancers per backend id.
	Inflight map[string]int64
	// LastSeen is the latest request time per backend id.
	LastSeen map[string]time.Time
	// Queued is the sum of live balancers' queue depths.
	Queued int64
	// Balancers is the number of live balancers.
	Balancers int
	// SyncInterval is the longest sync interval among live balancers: how
	// stale a balancer's view of the registry may be.
	SyncInterval time.Duration
	// Arrivals is the live balancers' summed arrival rate (requests/s).
	Arrivals float64
	// Service is the mean backend service time across live balancers,
	// weighted by how many requests each served; when none served any in
	// their window, the longest last-known mean (0: never measured).
	Service time.Duration
}

// SumFlows combines live balancers' flows into the cluster's: arrivals add
// up; the service time is the mean over every request served, so each
// balancer's mean weighs by how many it served. When none served any in its
// window, the longest last-known mean stands (a pool scaled to zero keeps
// its measured service time for the next scale-from-zero).
//
// E.g. {30/s, served 30/s at 200 ms} and {10/s, served 10/s at 600 ms}:
// 40/s at (30×200+10×600)/40 = 300 ms.
func SumFlows(fs []Flow) (arrivals float64, service time.Duration) {
	var done, weighted float64
	var last time.Duration
	for _, f := range fs {
		arrivals += f.Arrivals
		done += f.Done
		weighted += f.Done * float64(f.Service)
		last = max(last, f.Service)
	}
	if done > 0 {
		return arrivals, time.Duration(weighted / done)
	}
	return arrivals, last
}

// Registry is the scaler-written list of backends.
type Registry interface {
	// Backends returns every registry entry, sorted by ID.
	Backends(ctx context.Context) ([]Backend, error)
	// PutBackend adds or replaces an entry.
	PutBackend(ctx context.Context, b Backend) error
	// RemoveBackend deletes an entry and its last-seen time.
	RemoveBackend(ctx context.Context, id string) error
}

// Store is everything lbscale shares between processes.
type Store interface {
	Registry
	Reports
	Summaries
	Deploys
	Forecasts
	// Sync publishes a balancer's counts and returns its grants and the
	// cluster picture, in one round trip. It is called from the balancer's
	// sync loop, never on the request path.
	Sync(ctx context.Context, req SyncRequest) (SyncResult, error)
	// ClusterLoad sums the live balancers' counts for the scaler.
	ClusterLoad(ctx context.Context) (ClusterLoad, error)
	// PublishDemand tells scalers that balancer has queued requests waiting.
	PublishDemand(ctx context.Context, balancer string, queued int64) error
	// Demand delivers demand signals until ctx ends. Signals may be lost;
	// the scaler also polls ClusterLoad.
	Demand(ctx context.Context) <-chan int64
	// AcquireLease takes or renews the leader lease for holder. The Lease
	// it returns says who holds it now and for how long: holder itself for
	// the next ttl, or another scaler, which a follower uses to name the
	// leader and to campaign again the moment that lease runs out.
	AcquireLease(ctx context.Context, holder string, ttl time.Duration) (Lease, error)
	// Leave removes a balancer's counts and grants at once (clean shutdown),
	// instead of letting them expire with its TTL.
	Leave(ctx context.Context, balancer string) error
	// ReleaseLease gives the lease up if holder has it.
	ReleaseLease(ctx context.Context, holder string) error
	// Close releases connections.
	Close() error
}

// Lease is the leader lease as an AcquireLease left it.
type Lease struct {
	// Holder is the scaler that leads ("" when nobody does).
	Holder string
	// Left is how long Holder's lease runs without a renewal.
	Left time.Duration
}

// HeldBy reports whether holder leads.
func (l Lease) HeldBy(holder string) bool { return holder != "" && l.Holder == holder }

// MaxWeight is the largest backend weight, in the registry as in BACKENDS:
// weights add up on the pick path, so they are kept small.
const MaxWeight = 1000
