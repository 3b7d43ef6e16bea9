// Package route decides which pool serves a request, from its Host and path.
//
// A Table is built once per configuration, off the request path, and then
// only read: the balancer publishes it through an atomic.Pointer, so a
// request pays one pointer load and one Match, takes no lock, and keeps the
// pool it got even if a reload swaps the table a moment later. Match
// allocates nothing, and its cost grows with the labels of the host and the
// segments of the path, not with the number of pools: an exact host is one
// map lookup, wildcard hosts one lookup per dot of the host, and a host's
// path prefixes are tried longest first (a short list scanned, a long one
// looked up per path segment). The hundredth pool does not slow the first.
//
// Precedence, as Traefik and nginx order their routers: an exact host beats a
// wildcard host, a longer wildcard suffix beats a shorter one, and any host
// rule beats a pool without hosts; within one host the longest path prefix
// wins. When a host matches but none of its prefixes covers the path, the
// next less specific host group is tried, down to the pools without hosts.
package route

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Rule is one pool's routing as written in the pool file.
type Rule struct {
	// Pool names the pool; it must be non-empty and unique in the rules.
	Pool string
	// Hosts are the names the pool answers: exact ("api.example.com") or
	// a wildcard ("*.web.example.com", any name of one or more labels
	// followed by ".web.example.com", but not "web.example.com" itself).
	// Case and a trailing dot do not matter. Empty: any host, at the lowest
	// precedence.
	Hosts []string
	// Paths are the path prefixes the pool serves on its hosts. "/api"
	// covers "/api" and "/api/…" but not "/apix"; a prefix ending in "/"
	// covers whatever starts with it. Empty: "/", every path.
	Paths []string
}

// Errors New wraps, for callers that tell a bad rule from a clash.
var (
	// ErrInvalid marks a rule with a bad pool name, host or path.
	ErrInvalid = errors.New("invalid route")
	// ErrConflict marks two pools claiming the same host and path prefix,
	// which would leave the choice between them to chance.
	ErrConflict = errors.New("conflicting routes")
)

// maxHostLen is the longest DNS name (RFC 1035, without the trailing dot),
// the limit for rule hosts. Match lowers a request host into a 256-byte
// stack buffer, which every valid name fits; a longer (invalid) one is
// lowered on the heap rather than refused, so it still reaches the
// wildcards and hostless pools that cover it.
const maxHostLen = 253

// linearMax is how many path prefixes one host may have before its entry is
// also indexed by prefix: up to this many, a scan of HasPrefix checks (most
// fail on the first bytes) beats hashing a candidate per path segment.
const linearMax = 8

// Table routes requests to targets of type T, usually the balancer's pool
// value, so a match hands back what the caller needs without a second
// lookup by name.
//
// Table is built once per configuration and then only read, by many
// goroutines, without locks; nothing in it changes after New returns.
type Table[T any] struct {
	exact    map[string]*entry[T] // by lower-case host, without trailing dot
	wild     map[string]*entry[T] // by suffix with its leading dot: ".web.example.com"
	wildLens [4]uint64            // bit n set when a key of wild is n bytes long
	hostless *entry[T]            // pools without hosts; nil if none
	pools    []string
}

// entry is one host's path prefixes.
type entry[T any] struct {
	rest   []prefix[T]      // prefixes other than "/", longest first
	byPath map[string]int32 // prefix to index in rest, only above linearMax
	maxLen int              // longest prefix in rest
	root   bool             // "/" is claimed: covers every path, last resort
	rootT  T
}

type prefix[T any] struct {
	path   string
	target T
}

// claim is one (host, path prefix) pair a rule asks for, normalised.
type claim struct {
	level int    // levelExact, levelWild or levelAny
	host  string // exact host or wildcard suffix ".example.com"; "" for levelAny
	path  string
}

const (
	levelAny = iota
	levelWild
	levelExact
)

// New builds the table for rules, calling target once per rule, in rule
// order, for the value Match returns for that pool.
//
// All problems are reported at once, each naming the pool and the offending
// value (and, for a clash, both pools): an empty or repeated pool name, a
// host that is empty or has a port, spaces or a misplaced "*", a path that
// does not start with "/", or contains "*" (prefixes are literal; "/api/"
// already covers everything below it). Errors wrap ErrInvalid or
// ErrConflict.
func New[T any](rules []Rule, target func(pool string) T) (*Table[T], error) {
	var errs []error
	seenPool := make(map[string]int, len(rules))
	owner := make(map[claim]int) // claim to index of the rule that made it
	var claims []claim
	var ruleOf []int
	for i, r := range rules {
		if r.Pool == "" {
			errs = append(errs, fmt.Errorf("%w: rule %d: empty pool name", ErrInvalid, i+1))
			continue
		}
		if j, dup := seenPool[r.Pool]; dup {
			errs = append(errs, fmt.Errorf("%w: pool %q: defined twice (rules %d and %d)", ErrInvalid, r.Pool, j+1, i+1))
			continue
		}
		seenPool[r.Pool] = i

		hosts := []claim{{level: levelAny}}
		if len(r.Hosts) > 0 {
			hosts = hosts[:0]
			for _, h := range r.Hosts {
				c, err := ruleHost(h)
				if err != nil {
					errs = append(errs, fmt.Errorf("%w: pool %q: host %q: %v", ErrInvalid, r.Pool, h, err))
					continue
				}
				hosts = append(hosts, c)
			}
		}
		paths := r.Paths
		if len(paths) == 0 {
			paths = []string{"/"}
		}
		for _, p := range paths {
			if err := rulePath(p); err != nil {
				errs = append(errs, fmt.Errorf("%w: pool %q: path %q: %v", ErrInvalid, r.Pool, p, err))
			}
		}
		for _, h := range hosts {
			for _, p := range paths {
				c := claim{level: h.level, host: h.host, path: p}
				if j, taken := owner[c]; taken {
					if j != i { // a pool repeating itself is harmless
						errs = append(errs, fmt.Errorf("%w: pools %q and %q both claim %s, path %q",
							ErrConflict, rules[j].Pool, r.Pool, describe(c), p))
					}
					continue
				}
				owner[c] = i
				claims = append(claims, c)
				ruleOf = append(ruleOf, i)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	t := &Table[T]{pools: make([]string, len(rules))}
	targets := make([]T, len(rules))
	for i, r := range rules {
		t.pools[i] = r.Pool
		targets[i] = target(r.Pool)
	}
	for k, c := range claims {
		var e *entry[T]
		switch c.level {
		case levelExact:
			e = entryIn(&t.exact, c.host)
		case levelWild:
			e = entryIn(&t.wild, c.host)
			t.wildLens[len(c.host)>>6] |= 1 << (len(c.host) & 63)
		default:
			if t.hostless == nil {
				t.hostless = new(entry[T])
			}
			e = t.hostless
		}
		if c.path == "/" {
			e.root, e.rootT = true, targets[ruleOf[k]]
			continue
		}
		e.rest = append(e.rest, prefix[T]{path: c.path, target: targets[ruleOf[k]]})
	}
	for _, m := range []map[string]*entry[T]{t.exact, t.wild, {"": t.hostless}} {
		for _, e := range m {
			if e != nil {
				e.seal()
			}
		}
	}
	return t, nil
}

func entryIn[T any](m *map[string]*entry[T], key string) *entry[T] {
	if *m == nil {
		*m = make(map[string]*entry[T])
	}
	e := (*m)[key]
	if e == nil {
		e = new(entry[T])
		(*m)[key] = e
	}
	return e
}

// seal orders the prefixes longest first and indexes long lists. Two
// distinct prefixes of one length can never both cover a path, so the order
// among equal lengths does not matter; the stable sort keeps it reproducible.
func (e *entry[T]) seal() {
	slices.SortStableFunc(e.rest, func(a, b prefix[T]) int { return len(b.path) - len(a.path) })
	if len(e.rest) > 0 {
		e.maxLen = len(e.rest[0].path)
	}
	if len(e.rest) > linearMax {
		e.byPath = make(map[string]int32, len(e.rest))
		for i, p := range e.rest {
			e.byPath[p.path] = int32(i)
		}
	}
}

func describe(c claim) string {
	switch c.level {
	case levelExact:
		return fmt.Sprintf("host %q", c.host)
	case levelWild:
		return fmt.Sprintf("host %q", "*"+c.host)
	}
	return "any host"
}

// ruleHost validates and normalises one host of a rule: lower case, one
// trailing dot dropped, a wildcard kept as its suffix with the leading dot.
func ruleHost(h string) (claim, error) {
	if h == "" {
		return claim{}, errors.New("empty")
	}
	for i := 0; i < len(h); i++ {
		if h[i] <= ' ' || h[i] == 0x7f {
			return claim{}, errors.New("contains a space or control character")
		}
	}
	h = strings.TrimSuffix(lowerASCII(h), ".")
	c := claim{level: levelExact, host: h}
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		c.level, c.host, h = levelWild, h[1:], rest
	}
	if strings.Contains(h, "*") {
		return claim{}, errors.New(`a wildcard may only be the leading "*." of the name`)
	}
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		switch {
		case end < 0:
			return claim{}, errors.New(`IPv6 literal without closing "]"`)
		case end != len(h)-1:
			return claim{}, errors.New("has a port (the port is not part of the match)")
		case c.level == levelWild:
			return claim{}, errors.New("a wildcard cannot cover an IP address")
		}
		for _, b := range []byte(h[1:end]) {
			if !(b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b == ':' || b == '.') {
				return claim{}, fmt.Errorf("IPv6 literal with %q", b)
			}
		}
		if !strings.Contains(h, ":") {
			return claim{}, errors.New("brackets around something that is not an IPv6 address")
		}
		return c, nil
	}
	if strings.Contains(h, ":") {
		return claim{}, errors.New("has a port (the port is not part of the match; an IPv6 address goes in brackets)")
	}
	if h == "" {
		return claim{}, errors.New("empty name")
	}
	if len(h) > maxHostLen {
		return claim{}, fmt.Errorf("longer than %d bytes", maxHostLen)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" {
			return claim{}, errors.New("empty label")
		}
		for _, b := range []byte(label) {
			if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
				return claim{}, fmt.Errorf("%q is not allowed in a host name (use the punycode form of a non-ASCII name)", b)
			}
		}
	}
	return c, nil
}

func rulePath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return errors.New(`does not start with "/"`)
	}
	if strings.Contains(p, "*") {
		return errors.New(`"*" is literal in a path prefix; "/api/" already covers everything below /api/`)
	}
	return nil
}

func lowerASCII(s string) string {
	b := []byte(s)
	lowerInto(b, s)
	return string(b)
}

// lowerInto writes s lowered into b (len(b) == len(s)). Only ASCII letters
// change: host names compare case-insensitively in ASCII only (RFC 4343), so
// a Unicode lowering would wrongly fold, say, the Kelvin sign into "k".
func lowerInto(b []byte, s string) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
}

// hostPart strips what Request.Host may carry beyond the name: a port, and
// one trailing dot. "[::1]:8080" keeps "[::1]". A host with several colons
// and no brackets is a bare IPv6 address, not a name with a port, and is
// kept whole (it can match only pools without hosts).
func hostPart(host string) string {
	if len(host) > 0 && host[0] == '[' {
		if i := strings.IndexByte(host, ']'); i >= 0 {
			host = host[:i+1]
		}
	} else if i := strings.IndexByte(host, ':'); i >= 0 && strings.IndexByte(host[i+1:], ':') < 0 {
		host = host[:i]
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	return host
}

// Match returns the target of the rule that serves host and path (host as in
// Request.Host, path as in URL.Path), and whether one does; the caller
// answers 404 when none does. It allocates nothing for any host of up to 256
// bytes once its port and trailing dot are stripped (every valid DNS name);
// a longer one is lowered on the heap. The path is compared case-sensitively
// as given; an empty path (or "*") is covered only by the prefix "/".
// A nil Table matches nothing.
func (t *Table[T]) Match(host, path string) (T, bool) {
	if t == nil {
		var zero T
		return zero, false
	}
	h := hostPart(host)
	var buf [256]byte
	var b []byte
	if len(h) <= len(buf) {
		b = buf[:len(h)]
	} else {
		b = make([]byte, len(h))
	}
	lowerInto(b, h)
	return t.match(b, path)
}

// match takes the host lowered into b. It must not retain b, which is on
// Match's stack; map lookups through string(b) neither copy nor keep it.
func (t *Table[T]) match(b []byte, path string) (T, bool) {
	if t.exact != nil {
		if e := t.exact[string(b)]; e != nil {
			if v, ok := e.match(path); ok {
				return v, true
			}
		}
	}
	if t.wild != nil {
		// Dots from the left give suffixes from the longest down, so the
		// first wildcard that also covers the path is the most specific.
		// i > 0: a wildcard needs at least one character before its suffix.
		for i := 1; i < len(b); i++ {
			if b[i] != '.' {
				continue
			}
			n := len(b) - i
			if n >= 256 || t.wildLens[n>>6]&(1<<(n&63)) == 0 {
				continue // no wildcard of this length: skip the hash
			}
			if e := t.wild[string(b[i:])]; e != nil {
				if v, ok := e.match(path); ok {
					return v, true
				}
			}
		}
	}
	if t.hostless != nil {
		return t.hostless.match(path)
	}
	var zero T
	return zero, false
}

// match returns the target of the longest of e's prefixes that covers path.
func (e *entry[T]) match(path string) (T, bool) {
	if e.byPath == nil {
		for i := range e.rest {
			if p := &e.rest[i]; covers(p.path, path) {
				return p.target, true
			}
		}
	} else {
		// A prefix of length k covers path exactly when it equals path[:k]
		// and k is the whole path, or ends a segment (path[k] == '/'), or
		// the prefix ends in '/' (path[k-1] == '/'). Only those k are
		// looked up, longest first; rest holds no prefix shorter than 2.
		for k := min(len(path), e.maxLen); k > 1; k-- {
			if k == len(path) || path[k] == '/' || path[k-1] == '/' {
				if i, ok := e.byPath[path[:k]]; ok {
					return e.rest[i].target, true
				}
			}
		}
	}
	if e.root {
		return e.rootT, true
	}
	var zero T
	return zero, false
}

// covers reports whether prefix p (not "/") covers path: p is a prefix of
// path ending on a segment boundary, or p ends in "/".
func covers(p, path string) bool {
	return strings.HasPrefix(path, p) &&
		(len(path) == len(p) || p[len(p)-1] == '/' || path[len(p)] == '/')
}

// Pools returns the pool names in rule order; the caller owns the slice.
func (t *Table[T]) Pools() []string {
	if t == nil {
		return nil
	}
	return slices.Clone(t.pools)
}
