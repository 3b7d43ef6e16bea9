package policy

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"

	"lbscale/balancer/pool"
)

// DefaultStickyCookie is the sticky policy's cookie name when none is given.
const DefaultStickyCookie = "lbscale_sticky"

// Sticky pins a client to a backend with a cookie: a request whose cookie
// names an available backend goes there; any other request (no cookie, an
// unknown value, or a backend that is gone, unhealthy, draining or out of
// slots) is placed by least-connections and gets the cookie for that
// backend. Pinning thus never overrides capacity: a full backend's clients
// move, and stay where they moved.
//
// The cookie holds a hash of the backend ID, the same on every balancer,
// never the backend's address.
type Sticky struct {
	name   string
	prefix string // name + "=", to find our Set-Cookie among others
	src    *lockedSource
	states perSet[stickyState]
}

// stickyState holds, per backend of a set, the cookie value's hash and the
// whole Set-Cookie header value, built once so setting it copies a string.
type stickyState struct {
	keys      []uint64
	setCookie []string
}

// NewSticky returns a sticky-cookie policy using cookie (empty means
// DefaultStickyCookie) and breaking least-connections ties with src (see
// NewRandom).
func NewSticky(cookie string, src rand.Source) (*Sticky, error) {
	if cookie == "" {
		cookie = DefaultStickyCookie
	}
	if err := (&http.Cookie{Name: cookie}).Valid(); err != nil {
		return nil, fmt.Errorf("sticky cookie name %q: %w", cookie, err)
	}
	return &Sticky{name: cookie, prefix: cookie + "=", src: newLockedSource(src)}, nil
}

// Pick returns the cookie's backend when available, else a least-connections
// pick, for which it sets the cookie on w.
func (p *Sticky) Pick(set *pool.Set, w http.ResponseWriter, r *http.Request) *pool.Backend {
	bs := set.Backends
	st := p.states.get(set)
	if st == nil {
		st = p.states.build(set, p.build)
	}
	if v, ok := cookieValue(r.Header, p.name); ok {
		if key, err := strconv.ParseUint(v, 16, 64); err == nil {
			for i, k := range st.keys {
				if k == key && bs[i].Available() {
					return bs[i]
				}
			}
		}
	}
	d := draw{src: p.src}
	i := leastConn(bs, &d)
	if i < 0 {
		return nil
	}
	if w != nil {
		p.setCookie(w.Header(), st.setCookie[i])
	}
	return bs[i]
}

// setCookie adds the cookie, replacing ours if an earlier Pick for the same
// request set it: the proxy picks again when it loses a slot race.
func (p *Sticky) setCookie(h http.Header, value string) {
	vals := h["Set-Cookie"]
	for i, v := range vals {
		if strings.HasPrefix(v, p.prefix) {
			vals[i] = value
			return
		}
	}
	h["Set-Cookie"] = append(vals, value)
}

func (p *Sticky) build(set *pool.Set, st *stickyState) {
	st.keys = make([]uint64, len(set.Backends))
	st.setCookie = make([]string, len(set.Backends))
	for i, b := range set.Backends {
		st.keys[i] = stickyKey(b.ID)
		c := http.Cookie{
			Name:     p.name,
			Value:    fmt.Sprintf("%016x", st.keys[i]),
			Path:     "/",
			HttpOnly: true,
			SameSite: http.SameSiteLaxMode,
		}
		st.setCookie[i] = c.String()
	}
}

// stickyKey is the cookie value for a backend ID, before hex encoding.
func stickyKey(id string) uint64 { return xxhash.Sum64String("lbscale-sticky/" + id) }
