package policy

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"

	"lbscale/balancer/pool"
)

// VirtualNodes is how many points each backend has on the hash ring. With
// 160 points the busiest of 8 backends owns about 1.1x its fair share of
// keys; with a handful of points it could own twice as much.
const VirtualNodes = 160

// DefaultLoadFactor is the bounded-loads factor c when none is given: a
// backend takes a key's requests while it has at most 25% more in flight
// than the average.
const DefaultLoadFactor = 1.25

// KeyKind says what part of a request the consistent hash is keyed by.
type KeyKind int

// Key kinds.
const (
	KeyIP     KeyKind = iota // the client address
	KeyHeader                // a request header's value
	KeyCookie                // a cookie's value
	// KeyPath is the URL path: requests for one object go to one backend
	// while its load allows (locality-aware request distribution), so each
	// backend's cache holds its share of the objects instead of every
	// backend caching the same popular ones.
	KeyPath
	// KeyURL is the path and the query, for backends whose objects are
	// named by both ("/img?id=7" and "/img?id=8" are different objects).
	KeyURL
)

// HashKey is the request attribute consistent-hash affinity follows.
type HashKey struct {
	Kind KeyKind
	// Name is the header or cookie name; empty for the other kinds.
	Name string
}

// ParseHashKey reads the HASH_KEY syntax: "ip", "path", "url",
// "header:<Name>" or "cookie:<Name>".
func ParseHashKey(s string) (HashKey, error) {
	switch s {
	case "ip", "":
		return HashKey{Kind: KeyIP}, nil
	case "path":
		return HashKey{Kind: KeyPath}, nil
	case "url":
		return HashKey{Kind: KeyURL}, nil
	}
	kind, name, _ := strings.Cut(s, ":")
	switch {
	case kind == "header" && validToken(name):
		return HashKey{Kind: KeyHeader, Name: name}, nil
	case kind == "cookie" && (&http.Cookie{Name: name}).Valid() == nil:
		return HashKey{Kind: KeyCookie, Name: name}, nil
	}
	return HashKey{}, fmt.Errorf("hash key %q: want ip, path, url, header:<Name> or cookie:<Name> with a valid name", s)
}

// String is the HASH_KEY form of k.
func (k HashKey) String() string {
	switch k.Kind {
	case KeyHeader:
		return "header:" + k.Name
	case KeyCookie:
		return "cookie:" + k.Name
	case KeyPath:
		return "path"
	case KeyURL:
		return "url"
	}
	return "ip"
}

// validToken reports whether s is a non-empty RFC 9110 token (a header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// HashConfig configures ConsistentHash.
type HashConfig struct {
	// Key is what affinity follows. A request without the header or cookie,
	// or with an empty path (CONNECT), falls back to its client address.
	Key HashKey
	// TrustForwardedFor keys client addresses by the first X-Forwarded-For
	// hop instead of the peer address: only right behind a proxy that sets
	// it, since a client can write any value there.
	TrustForwardedFor bool
	// LoadFactor is c of bounded loads, >= 1; 0 means DefaultLoadFactor.
	// Lower keeps load more even, higher keeps affinity more often.
	LoadFactor float64
}

// ConsistentHash maps each request key to a point on a ring of virtual
// nodes and takes the first backend clockwise from it, so a key keeps its
// backend while the set changes elsewhere: adding one backend to N moves
// only about 1/(N+1) of the keys, all to the new one. Every balancer builds
// the same ring from the backend IDs, so they agree without talking.
//
// With bounded loads (Mirrokni, Thorup, Zadimoghaddam: "Consistent Hashing
// with Bounded Loads") affinity gives way to capacity: walking clockwise, a
// backend is skipped when taking this request would put it above
// ceil(c * average in-flight), the average counting this request. E.g. c=1.25,
// 4 available backends with 10 in flight in all: bound = ceil(1.25*11/4) = 4,
// so a hot key's backend at 4 sends the request on to the next one below 4,
// while at 3 it keeps it. The bound is at least 1, and some backend is
// always under it, so a pick succeeds whenever any backend is available.
//
// Keyed by path (KeyPath), this is locality-aware request distribution
// (Pai et al., "Locality-Aware Request Distribution in Cluster-based Network
// Servers"): each backend's cache holds about 1/N of the objects rather than
// all N holding the same popular ones, and the bound is what LARD's load
// thresholds are there for: an object too hot for one backend spills over
// to the next ones on the ring instead of queueing there.
type ConsistentHash struct {
	cfg    HashConfig
	header string // canonical header name, so a pick indexes r.Header directly
	rings  perSet[ring]
}

// ring is the sorted virtual nodes of one set.
type ring struct {
	points []ringPoint
}

type ringPoint struct {
	hash uint64
	idx  int // into set.Backends
}

// NewConsistentHash returns a consistent-hash policy with bounded loads.
func NewConsistentHash(cfg HashConfig) (*ConsistentHash, error) {
	if cfg.LoadFactor == 0 {
		cfg.LoadFactor = DefaultLoadFactor
	}
	if cfg.LoadFactor < 1 || math.IsNaN(cfg.LoadFactor) || math.IsInf(cfg.LoadFactor, 0) {
		return nil, fmt.Errorf("consistent hash: load factor %v: must be a number >= 1", cfg.LoadFactor)
	}
	switch cfg.Key.Kind {
	case KeyIP, KeyPath, KeyURL:
	case KeyHeader, KeyCookie:
		if cfg.Key.Name == "" {
			return nil, errors.New("consistent hash: header or cookie key without a name")
		}
	default:
		return nil, fmt.Errorf("consistent hash: unknown key kind %d", cfg.Key.Kind)
	}
	p := &ConsistentHash{cfg: cfg}
	if cfg.Key.Kind == KeyHeader {
		p.header = http.CanonicalHeaderKey(cfg.Key.Name)
	}
	return p, nil
}

// Pick returns the first acceptable backend clockwise from the request key.
func (p *ConsistentHash) Pick(set *pool.Set, _ http.ResponseWriter, r *http.Request) *pool.Backend {
	bs := set.Backends
	var total int64
	n := 0
	for _, b := range bs {
		if b.Available() {
			total += b.Inflight()
			n++
		}
	}
	if n == 0 {
		return nil
	}
	bound := int64(math.Ceil(p.cfg.LoadFactor * float64(total+1) / float64(n)))

	rg := p.rings.get(set)
	if rg == nil {
		rg = p.rings.build(set, buildRing)
	}
	pts := rg.points
	h := p.hash(r)
	start, _ := slices.BinarySearchFunc(pts, h, func(pt ringPoint, h uint64) int { return cmp.Compare(pt.hash, h) })
	// Counts move between the sum above and the walk; if no backend meets
	// the bound by then, the first available one clockwise is still better
	// than making the request wait.
	var fallback *pool.Backend
	for k := range pts {
		b := bs[pts[(start+k)%len(pts)].idx]
		if !b.Available() {
			continue
		}
		if b.Inflight()+1 <= bound {
			return b
		}
		if fallback == nil {
			fallback = b
		}
	}
	return fallback
}

// hash is the ring position of the request's key. The url key is hashed in
// pieces, path then "?" then query, which gives the hash of "/a?x=1" without
// building that string (a pick allocates nothing).
func (p *ConsistentHash) hash(r *http.Request) uint64 {
	if p.cfg.Key.Kind == KeyURL && r.URL != nil && r.URL.RawQuery != "" {
		var d xxhash.Digest
		d.Reset()
		_, _ = d.WriteString(r.URL.Path)
		_, _ = d.WriteString("?")
		_, _ = d.WriteString(r.URL.RawQuery)
		return d.Sum64()
	}
	return xxhash.Sum64String(p.key(r))
}

// key is the request's hash key: the path, header or cookie when present,
// else the client address. For KeyURL it is the path alone, which is the
// whole key when there is no query (hash handles the rest).
func (p *ConsistentHash) key(r *http.Request) string {
	switch p.cfg.Key.Kind {
	case KeyPath, KeyURL:
		if r.URL != nil && r.URL.Path != "" {
			return r.URL.Path
		}
	case KeyHeader:
		if vs := r.Header[p.header]; len(vs) > 0 && vs[0] != "" {
			return vs[0]
		}
	case KeyCookie:
		if v, ok := cookieValue(r.Header, p.cfg.Key.Name); ok {
			return v
		}
	}
	return clientIP(r, p.cfg.TrustForwardedFor)
}

// buildRing places VirtualNodes points per backend, hashed from its ID (not
// its index, so a backend keeps its points when others come and go).
func buildRing(set *pool.Set, rg *ring) {
	rg.points = make([]ringPoint, 0, len(set.Backends)*VirtualNodes)
	var d xxhash.Digest
	var buf [8]byte
	for i, b := range set.Backends {
		for v := range VirtualNodes {
			d.Reset()
			_, _ = d.WriteString(b.ID)
			binary.LittleEndian.PutUint64(buf[:], uint64(v))
			_, _ = d.Write(buf[:])
			rg.points = append(rg.points, ringPoint{hash: d.Sum64(), idx: i})
		}
	}
	// Equal hashes (rare) are ordered by ID so every balancer agrees.
	slices.SortFunc(rg.points, func(a, b ringPoint) int {
		if c := cmp.Compare(a.hash, b.hash); c != 0 {
			return c
		}
		return strings.Compare(set.Backends[a.idx].ID, set.Backends[b.idx].ID)
	})
}
