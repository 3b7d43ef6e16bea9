package redisstore

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"lbscale/internal/state"
)

// The sync script's wire format, in one place: what a sync sends
// (syncArgs and its encoder), what it answers (syncReply and its decoder),
// and the names the script shares with Go. The script's reply is a Redis
// array, whose order replySlots gives; the script builds it with reply(),
// generated from that list, so a slot is named, not counted, on both
// sides.

// scriptPrelude is prepended to sync.lua: the balancer hash's field names
// (state.Field*) and the reply slots, so that the script spells neither.
func scriptPrelude() string {
	var b strings.Builder
	fmt.Fprintf(&b, "local F = {queued=%q, weight=%q, interval=%q, arrivals=%q, done=%q, service=%q, inflight=%q, granted=%q}\n",
		state.FieldQueued, state.FieldWeight, state.FieldInterval, state.FieldArrivals, state.FieldDone, state.FieldService,
		state.FieldInflight, state.FieldGranted)
	slots := func(name string, list []string) {
		fmt.Fprintf(&b, "local %s = {", name)
		for i, s := range list {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%q", s)
		}
		b.WriteString("}\n")
	}
	slots("SYNC_REPLY", replySlots[:])
	slots("LOAD_REPLY", loadSlots[:])
	// reply lays a table of named values out as the array its slots give.
	// A value left out ends the array there (Redis stops at a nil), which
	// is how the short 'resync' answer is made.
	b.WriteString("local function reply(slots, r) local out = {} for j, name in ipairs(slots) do out[j] = r[name] end return out end\n")
	return b.String()
}

// syncArgs is one sync as the script reads it (ARGV, after the operation
// and the prefix; sync.lua's header documents the same layout).
type syncArgs struct {
	Balancer string
	TTL      time.Duration
	Hold     bool  // grant exactly the floors
	Full     bool  // Items are every backend this balancer holds
	Gen      int64 // the generation the caller has (0: none)
	Pos      int64 // the sequence read up to; -1: read no feed this time
	RegVer   int64 // the registry version held; -1: send it anyway
	IxVer    int64 // the index version held; -1: send it anyway
	// Scalars are the balancer hash's scalar fields as name, value pairs;
	// nil when unchanged since the last sync.
	Scalars []any
	Items   []item // backends with the grant arithmetic
	Moved   []item // backends whose in-flight count alone moved
}

// encode lays a out as the script's ARGV, prefix (the balancers' key
// prefix) and operation first.
func (a syncArgs) encode(prefix string) []any {
	args := make([]any, 0, 13+len(a.Scalars)+6*len(a.Items)+2*len(a.Moved))
	args = append(args, "sync", prefix, a.Balancer, a.TTL.Milliseconds(), flag(a.Hold), flag(a.Full), a.Gen, a.Pos, a.RegVer, a.IxVer, len(a.Scalars)/2)
	args = append(args, a.Scalars...)
	args = append(args, len(a.Items))
	for _, it := range a.Items {
		args = append(args, it.id, it.local, it.floor, it.want, it.limit, it.seen)
	}
	for _, it := range a.Moved {
		args = append(args, it.id, it.local)
	}
	return args
}

func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

// replySlots names the sync reply's slots, in order.
var replySlots = [...]string{
	"status",           // "ok", or "resync" (then only gen follows): send everything
	"gen",              // the store's generation
	"now",              // Redis's clock, unix ms
	"pos",              // the sequence now
	"grants",           // the slots granted, one per item sent, in order
	"seen_ids",         // backends whose last-seen time moved since Pos
	"seen_times",       // their times, unix ms (0: none)
	"live",             // the live balancers
	"weights",          // their demand weights
	"registry_version", // the registry's version
	"registry_sent",    // 1: registry follows
	"registry",         // the registry hash, as field, value pairs
	"owned",            // 1: a scaler writes the registry
	"index_version",    // the index's version
	"index_sent",       // 1: index follows
	"index",            // the index hash, as field, value pairs
	"counts",           // the in-flight sums string
	"counts_read",      // 1: counts was read
}

// syncReply is the script's answer to a sync.
type syncReply struct {
	Resync        bool // Redis does not hold what the caller believes
	Gen, Now, Pos int64
	Grants        []int64
	SeenIDs       []string
	SeenTimes     []int64
	Live, Weights []string
	RegVer        int64
	RegSent       bool
	Registry      []string
	Owned         bool
	IxVer         int64
	IxSent        bool
	Index         []string
	Counts        string
	CountsRead    bool
}

// slotOf is each slot's place in a reply.
var slotOf = func() map[string]int {
	m := map[string]int{}
	for i, s := range replySlots {
		m[s] = i
	}
	for i, s := range loadSlots {
		m["load."+s] = i
	}
	return m
}()

// decodeSyncReply reads the script's answer to a sync of items backends.
func decodeSyncReply(raw []any, items int) (syncReply, error) {
	at := func(name string) any { return raw[slotOf[name]] }
	if len(raw) >= 2 && raw[0] == "resync" {
		return syncReply{Resync: true, Gen: int64At(raw, slotOf["gen"])}, nil
	}
	if len(raw) != len(replySlots) || at("status") != "ok" {
		return syncReply{}, fmt.Errorf("unexpected reply %v", raw)
	}
	num := func(name string) int64 { return int64At(raw, slotOf[name]) }
	r := syncReply{
		Gen: num("gen"), Now: num("now"), Pos: num("pos"),
		Grants:  ints(at("grants")),
		SeenIDs: strs(at("seen_ids")), SeenTimes: ints(at("seen_times")),
		Live: strs(at("live")), Weights: strs(at("weights")),
		RegVer: num("registry_version"), RegSent: num("registry_sent") == 1, Registry: strs(at("registry")),
		Owned: num("owned") == 1,
		IxVer: num("index_version"), IxSent: num("index_sent") == 1, Index: strs(at("index")),
		Counts: strAt(raw, slotOf["counts"]), CountsRead: num("counts_read") == 1,
	}
	if len(r.Grants) < items {
		return syncReply{}, fmt.Errorf("reply grants %d backends, sent %d", len(r.Grants), items)
	}
	return r, nil
}

// loadSlots names the slots of the script's answer to "load" (the
// scaler's read of the cluster's load).
var loadSlots = [...]string{
	"live",     // the live balancers
	"scalars",  // for each, its queued, interval, arrivals, done, service fields
	"index",    // the index hash, as field, value pairs
	"counts",   // the in-flight sums string
	"lastseen", // the last-seen hash, as field, value pairs
}

// loadScalars are the balancer hash's fields a load reads, in the order
// each balancer's entry in the "scalars" slot holds them.
var loadScalars = [...]string{state.FieldQueued, state.FieldInterval, state.FieldArrivals, state.FieldDone, state.FieldService}

// loadReply is the script's answer to "load".
type loadReply struct {
	Scalars  [][]string // per live balancer, loadScalars' values
	Index    []string
	Counts   string
	LastSeen []string
}

func decodeLoadReply(raw []any) (loadReply, error) {
	if len(raw) != len(loadSlots) {
		return loadReply{}, errShape(raw, len(loadSlots))
	}
	at := func(name string) any { return raw[slotOf["load."+name]] }
	each, _ := at("scalars").([]any)
	r := loadReply{Index: strs(at("index")), Counts: strAt(raw, slotOf["load.counts"]), LastSeen: strs(at("lastseen"))}
	for _, h := range each {
		r.Scalars = append(r.Scalars, strs(h))
	}
	return r, nil
}

// pairsMap turns field, value pairs into a map.
func pairsMap(pairs []string) map[string]string {
	m := make(map[string]string, len(pairs)/2)
	for j := 0; j+1 < len(pairs); j += 2 {
		m[pairs[j]] = pairs[j+1]
	}
	return m
}

// formatRate writes a rate or a weight as the script stores it.
func formatRate(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }
