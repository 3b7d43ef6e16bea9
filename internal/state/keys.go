package state

import (
	"fmt"
	"regexp"
)

// EnvPool is the variable that names the pool, read by the balancer and
// the scaler alike.
const EnvPool = "POOL"

// poolName is what a pool may be called: it stands inside container and
// service names, label values and the keys' hash tag, where a brace or an
// empty name would break the one-slot rule below.
var poolName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,39}$`)

// CheckPool reports whether pool is usable as a pool name.
func CheckPool(pool string) error {
	if !poolName.MatchString(pool) {
		return fmt.Errorf("%q must be 1-40 characters of a-z 0-9 _ . - starting with a letter or digit", pool)
	}
	return nil
}

// Keys names every Redis key of one pool. All keys carry the same hash tag
// ({pool}) so that the sync script, which touches several of them, works on
// Redis Cluster as well as on one server.
type Keys struct{ prefix string }

// NewKeys returns the key names for pool.
func NewKeys(pool string) Keys { return Keys{prefix: "lbscale:{" + pool + "}:"} }

// Registry is a hash: backend id -> JSON Backend. Written by the scaler.
func (k Keys) Registry() string { return k.prefix + "registry" }

// Balancers is a sorted set: balancer id -> expiry (unix ms). A balancer
// whose expiry passed is dead and its counts no longer count.
func (k Keys) Balancers() string { return k.prefix + "balancers" }

// Balancer is a hash per balancer, its fields named by the Field
// constants: queued, demand weight, sync interval ms, arrivals/s,
// served/s, mean service ms, and only where non-zero FieldInflight +
// backend -> in-flight, FieldGranted + backend -> granted slots. It has no
// expiry of its own: the sync
// script removes it, and takes its counts out of the sums, once the
// balancer's expiry in Balancers has passed (or it left), so that the sums
// never count a balancer twice or lose one.
func (k Keys) Balancer(id string) string { return k.prefix + "bal:" + id }

// The fields of a balancer's hash (Keys.Balancer). The sync script reads
// the same names: redisstore hands them to it, so they are spelled here
// only.
const (
	FieldQueued   = "q"  // requests queued
	FieldWeight   = "w"  // demand weight, the division's input
	FieldInterval = "s"  // sync interval, ms
	FieldArrivals = "a"  // arrivals per second
	FieldDone     = "d"  // requests served per second
	FieldService  = "t"  // mean service time, ms
	FieldInflight = "i:" // + backend id: requests in flight (absent at 0)
	FieldGranted  = "g:" // + backend id: slots granted (absent at 0)
)

// Granted is a hash: backend id -> slots granted on it, summed over the
// balancers whose hashes are recorded (zero sums are absent). Capping a
// grant reads one sum instead of every balancer's hash, so a sync's cost
// does not grow with the number of balancers.
func (k Keys) Granted() string { return k.prefix + "granted" }

// Inflight is a string of big-endian int32s: at 4 × Index(backend) the
// number of requests in flight to that backend, summed over the recorded
// balancers. One BITFIELD updates any number of sums, and a balancer reads
// them all with one GET, 4 bytes a backend, when the Sequence moved.
func (k Keys) Inflight() string { return k.prefix + "inflight" }

// Index is a hash: backend id -> its position in Inflight. A backend gets
// one when a request first runs on it and gives it back (to FreeIndexes)
// once nothing is in flight or granted on it and the registry no longer
// lists it.
func (k Keys) Index() string { return k.prefix + "index" }

// FreeIndexes is a set of positions in Inflight given back, handed out
// again before fresh ones.
func (k Keys) FreeIndexes() string { return k.prefix + "index:free" }

// IndexVersion is a counter raised whenever Index changes, so that a
// balancer reads Index only then.
func (k Keys) IndexVersion() string { return k.prefix + "index:ver" }

// Sequence is a counter raised by each sync that moved an in-flight sum or
// a last-seen time: a balancer that has read up to the current value has
// nothing to read.
func (k Keys) Sequence() string { return k.prefix + "seq" }

// SeenFeed is a sorted set: backend id -> the Sequence at which its
// last-seen time last moved. A balancer reads only the times moved since
// its last read.
func (k Keys) SeenFeed() string { return k.prefix + "seen:feed" }

// RegistryVersion is a counter raised by every registry write, so that a
// balancer reads the registry only when it changed.
func (k Keys) RegistryVersion() string { return k.prefix + "registry:ver" }

// BalancerPrefix is Balancer("") for the sync script, which builds the keys
// of the other balancers itself.
func (k Keys) BalancerPrefix() string { return k.Balancer("") }

// RegistryOwned is set (to "1", no expiry) by every registry write: once a
// scaler has written the registry, balancers follow it even when it is empty
// (the pool scaled to zero), instead of falling back to static BACKENDS.
func (k Keys) RegistryOwned() string { return k.prefix + "registry:owned" }

// Generation holds the unix ms at which this Redis's copy of the shared
// state began; the sync script creates it when missing. A balancer that sees
// it change knows Redis restarted empty or was flushed, forgetting every
// grant, and takes no new slots for a TTL while the others report theirs.
func (k Keys) Generation() string { return k.prefix + "generation" }

// LastSeen is a hash: backend id -> unix ms of the latest request.
func (k Keys) LastSeen() string { return k.prefix + "lastseen" }

// DemandChannel is the pub/sub channel balancers signal saturation on.
func (k Keys) DemandChannel() string { return k.prefix + "demand" }

// Leader is the scaler lease: holder id, SET NX PX.
func (k Keys) Leader() string { return k.prefix + "leader" }

// Reports is a sorted set: balancer id -> unix ms of its latest Report.
// Entries older than ReportKeep are trimmed by whoever reads them.
func (k Keys) Reports() string { return k.prefix + "reports" }

// Report is a hash per balancer holding its latest Report as two JSON
// documents: "s" its scalars (rewritten every report) and "b" its
// per-backend counters (rewritten only when they changed); the report's
// time is its score in Reports. It expires ReportKeep after it was written
// so that a balancer that went silent is still listed, with its last sync,
// for a while.
func (k Keys) Report(id string) string { return k.prefix + "report:" + id }

// Summary is a string: the leading scaler's dashboard summary (JSON, its
// schema is scaler/control's), rewritten every second, so that every
// scaler's dashboard shows the leader's view and the next leader carries
// its event log on.
func (k Keys) Summary() string { return k.prefix + "summary" }

// Deploy is a hash: "id" (the deploy's ID) and "doc" (state.Deploy as
// JSON), written only by a script that checks "id" first.
func (k Keys) Deploy() string { return k.prefix + "deploy" }

// Forecast is a hash: the start of a bucket (unix seconds) -> the pool's
// mean offered arrival rate in it (requests per second, a decimal). The
// leading scaler writes one field when a bucket ends and drops the fields
// older than FORECAST_DAYS periods; a new leader reads it whole at the
// start of its term, so the learned floor survives a leader change.
func (k Keys) Forecast() string { return k.prefix + "forecast" }
