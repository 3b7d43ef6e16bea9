package policy_test

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
)

func newHash(t testing.TB, cfg policy.HashConfig) *policy.ConsistentHash {
	t.Helper()
	p, err := policy.NewConsistentHash(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// owners maps each of n clients to the ID its pick lands on.
func owners(p policy.Policy, set *pool.Set, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = p.Pick(set, nil, clientN(i)).ID
	}
	return out
}

func TestConsistentHashAffinity(t *testing.T) {
	bs := newBackends(10, 1000)
	set := setOf(1, bs...)
	a := owners(newHash(t, policy.HashConfig{}), set, 5000)
	// A second balancer, with its own ring built from the same set, agrees
	// key for key, as does the first one asked again.
	b := owners(newHash(t, policy.HashConfig{}), setOf(9, bs...), 5000)
	share := map[string]int{}
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("client %d: %s on one balancer, %s on another", i, a[i], b[i])
		}
		share[a[i]]++
	}
	// 500 each if perfectly even; virtual nodes keep every backend near it.
	for _, bk := range bs {
		if n := share[bk.ID]; n < 300 || n > 700 {
			t.Errorf("%s owns %d of 5000 keys, want 300..700: %v", bk.ID, n, share)
		}
	}
}

func TestConsistentHashRemapping(t *testing.T) {
	const keys = 10000
	p := newHash(t, policy.HashConfig{})
	bs := newBackends(11, 1000)
	ten := owners(p, setOf(1, bs[:10]...), keys)
	eleven := owners(p, setOf(2, bs...), keys)
	moved := 0
	for i := range ten {
		if ten[i] != eleven[i] {
			moved++
			if eleven[i] != bs[10].ID {
				t.Fatalf("key %d moved from %s to %s, not to the new backend", i, ten[i], eleven[i])
			}
		}
	}
	// Ideal: keys/11 = 909 move.
	if moved < keys/11/2 || moved > keys/11*3/2 {
		t.Fatalf("%d of %d keys moved when adding an 11th backend, want about %d", moved, keys, keys/11)
	}
	// Removing a backend moves only its own keys.
	nine := owners(p, setOf(3, append(append([]*pool.Backend{}, bs[:4]...), bs[5:10]...)...), keys)
	for i := range ten {
		if ten[i] != bs[4].ID && nine[i] != ten[i] {
			t.Fatalf("key %d moved from %s to %s when only %s left", i, ten[i], nine[i], bs[4].ID)
		}
	}
}

func TestConsistentHashBoundedLoads(t *testing.T) {
	key := request("203.0.113.50:443")
	cases := []struct {
		name      string
		factor    float64
		owner     int64    // in flight on the key's backend
		others    [3]int64 // in flight on the other three
		wantOwner bool
	}{
		{"idle keeps its backend", 0, 0, [3]int64{}, true},
		// bound = ceil(1.25 * (12+1) / 4) = 5; 3+1 <= 5.
		{"even load keeps it", 0, 3, [3]int64{3, 3, 3}, true},
		// c=1, total 12: bound = ceil(1 * 13 / 4) = 4, counting this
		// request; 3+1 <= 4 exactly, though another backend has only 2.
		{"exactly at the bound keeps it", 1, 3, [3]int64{2, 3, 4}, true},
		// c=1, owner 4 of 13: bound = ceil(14 / 4) = 4; 4+1 > 4.
		{"one over the bound moves", 1, 4, [3]int64{3, 3, 3}, false},
		// total 10: bound = ceil(1.25 * 11 / 4) = 4; 4+1 > 4.
		{"owner at 4 of 10 moves", 0, 4, [3]int64{2, 2, 2}, false},
		// owner 4, others 2: c = 2 gives bound = ceil(2 * 11 / 4) = 6.
		{"looser factor keeps it", 2, 4, [3]int64{2, 2, 2}, true},
		// owner 1, others 0: bound = ceil(1.25 * 2 / 4) = 1; 1+1 > 1.
		{"low traffic moves on any excess", 0, 1, [3]int64{}, false},
		{"far over moves", 0, 50, [3]int64{1, 1, 1}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bs := newBackends(4, 1000)
			set := setOf(1, bs...)
			p := newHash(t, policy.HashConfig{LoadFactor: tc.factor})
			owner := p.Pick(set, nil, key)
			// Where the key goes when its owner cannot take it: the next
			// backend clockwise.
			owner.SetHealthy(false)
			next := p.Pick(set, nil, key)
			owner.SetHealthy(true)
			k := 0
			for _, b := range bs {
				if b == owner {
					b.SetRemote(tc.owner)
					continue
				}
				b.SetRemote(tc.others[k])
				k++
			}
			got := p.Pick(set, nil, key)
			switch {
			case tc.wantOwner && got != owner:
				t.Fatalf("moved to %s, want to stay on %s", got.ID, owner.ID)
			case !tc.wantOwner && got != next:
				t.Fatalf("picked %s, want the next clockwise %s (owner %s)", got.ID, next.ID, owner.ID)
			}
		})
	}
	t.Run("one hot key never exceeds the bound", func(t *testing.T) {
		for _, c := range []float64{1, 1.25, 2} {
			bs := newBackends(5, 1000)
			set := setOf(1, bs...)
			p := newHash(t, policy.HashConfig{LoadFactor: c})
			for total := 1; total <= 500; total++ {
				b := p.Pick(set, nil, key)
				fill(t, b, 1)
				bound := int64(math.Ceil(c * float64(total) / 5))
				if b.Inflight() > bound {
					t.Fatalf("c=%v, request %d: %s has %d in flight, bound %d", c, total, b.ID, b.Inflight(), bound)
				}
			}
			if c == 1 {
				for _, b := range bs {
					if b.Inflight() != 100 {
						t.Fatalf("c=1: %s has %d of 500 in flight, want 100", b.ID, b.Inflight())
					}
				}
			}
		}
	})
}

func TestConsistentHashKeys(t *testing.T) {
	bs := newBackends(16, 1000)
	set := setOf(1, bs...)
	byIP := newHash(t, policy.HashConfig{})
	ipOf := func(addr string) *pool.Backend { return byIP.Pick(set, nil, request(addr+":1000")) }

	t.Run("header", func(t *testing.T) {
		k, err := policy.ParseHashKey("header:x-user") // any case
		if err != nil {
			t.Fatal(err)
		}
		p := newHash(t, policy.HashConfig{Key: k})
		spread := map[*pool.Backend]bool{}
		for u := range 200 {
			user := fmt.Sprintf("user-%d", u)
			first := p.Pick(set, nil, request("192.0.2.1:1", "X-User", user))
			spread[first] = true
			for c := range 5 { // same user from other addresses
				if got := p.Pick(set, nil, clientN(c*97+u)); got == nil {
					t.Fatal("nil pick")
				}
				if got := p.Pick(set, nil, request(fmt.Sprintf("192.0.2.%d:%d", c+2, 3000+c), "X-User", user)); got != first {
					t.Fatalf("%s: %s then %s from another address", user, first.ID, got.ID)
				}
			}
		}
		if len(spread) < 12 {
			t.Fatalf("200 users landed on only %d of 16 backends", len(spread))
		}
		for i := range 50 { // no header, or an empty one: the client address
			addr := fmt.Sprintf("198.18.0.%d", i)
			if got, want := p.Pick(set, nil, request(addr+":999")), ipOf(addr); got != want {
				t.Fatalf("no header from %s: %s, by address %s", addr, got.ID, want.ID)
			}
			if got, want := p.Pick(set, nil, request(addr+":999", "X-User", "")), ipOf(addr); got != want {
				t.Fatalf("empty header from %s: %s, by address %s", addr, got.ID, want.ID)
			}
		}
	})

	t.Run("cookie", func(t *testing.T) {
		p := newHash(t, policy.HashConfig{Key: policy.HashKey{Kind: policy.KeyCookie, Name: "session"}})
		spread := map[*pool.Backend]bool{}
		for u := range 200 {
			session := fmt.Sprintf("s%08x", u*7919)
			first := p.Pick(set, nil, request("192.0.2.1:1", "Cookie", "theme=dark; session="+session))
			spread[first] = true
			for c := range 3 {
				r := request(fmt.Sprintf("192.0.2.%d:1", c+2), "Cookie", "a=1")
				r.Header.Add("Cookie", `session="`+session+`"`) // a second line, quoted
				if got := p.Pick(set, nil, r); got != first {
					t.Fatalf("session %s: %s then %s", session, first.ID, got.ID)
				}
			}
		}
		if len(spread) < 12 {
			t.Fatalf("200 sessions landed on only %d of 16 backends", len(spread))
		}
		for i := range 50 {
			addr := fmt.Sprintf("198.18.1.%d", i)
			if got, want := p.Pick(set, nil, request(addr+":999", "Cookie", "sessionx=1; other=2")), ipOf(addr); got != want {
				t.Fatalf("no session cookie from %s: %s, by address %s", addr, got.ID, want.ID)
			}
		}
	})

	t.Run("client address", func(t *testing.T) {
		trusting := newHash(t, policy.HashConfig{TrustForwardedFor: true})
		for i := range 100 {
			hop := fmt.Sprintf("100.64.%d.%d", i/10, i)
			want := ipOf(hop)
			for _, peer := range []string{"10.1.1.1:5000", "10.2.2.2:6000", "[fd00::1]:7000"} {
				r := request(peer, "X-Forwarded-For", " "+hop+", 10.9.9.9")
				if got := trusting.Pick(set, nil, r); got != want {
					t.Fatalf("trusted X-Forwarded-For %s via %s: %s, want %s", hop, peer, got.ID, want.ID)
				}
				if got, want := byIP.Pick(set, nil, r), ipOf(hostOf(peer)); got != want {
					t.Fatalf("untrusted X-Forwarded-For changed the pick for %s: %s, want %s", peer, got.ID, want.ID)
				}
			}
			// The port is not part of the key.
			if a, b := byIP.Pick(set, nil, request(hop+":1")), byIP.Pick(set, nil, request(hop+":65000")); a != b {
				t.Fatalf("%s: port changed the pick", hop)
			}
		}
	})
}

func hostOf(peer string) string {
	if peer[0] == '[' {
		return peer[:len("[fd00::1]")]
	}
	return peer[:len("10.1.1.1")]
}

func TestParseHashKey(t *testing.T) {
	cases := []struct {
		in      string
		want    policy.HashKey
		wantErr bool
	}{
		{"ip", policy.HashKey{Kind: policy.KeyIP}, false},
		{"", policy.HashKey{Kind: policy.KeyIP}, false},
		{"header:X-User", policy.HashKey{Kind: policy.KeyHeader, Name: "X-User"}, false},
		{"cookie:session_id", policy.HashKey{Kind: policy.KeyCookie, Name: "session_id"}, false},
		{"header:", policy.HashKey{}, true},
		{"header:bad name", policy.HashKey{}, true},
		{"cookie:", policy.HashKey{}, true},
		{"cookie:a;b", policy.HashKey{}, true},
		{"path", policy.HashKey{Kind: policy.KeyPath}, false},
		{"url", policy.HashKey{Kind: policy.KeyURL}, false},
		{"query:user", policy.HashKey{}, true},
		{"IP", policy.HashKey{}, true},
		{"Path", policy.HashKey{}, true},
		{"path:", policy.HashKey{}, true},
		{"url:/a", policy.HashKey{}, true},
		{"uri", policy.HashKey{}, true},
	}
	for _, tc := range cases {
		got, err := policy.ParseHashKey(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseHashKey(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if err == nil && tc.in != "" && got.String() != tc.in {
			t.Errorf("%q round-trips to %q", tc.in, got.String())
		}
	}
	for _, k := range []policy.HashKey{{Kind: policy.KeyHeader}, {Kind: policy.KeyCookie}, {Kind: policy.KeyURL + 1}} {
		if _, err := policy.NewConsistentHash(policy.HashConfig{Key: k}); err == nil {
			t.Errorf("key %+v accepted", k)
		}
	}
	for _, c := range []float64{0.5, -1, math.NaN(), math.Inf(1)} {
		if _, err := policy.NewConsistentHash(policy.HashConfig{LoadFactor: c}); err == nil {
			t.Errorf("load factor %v accepted", c)
		}
	}
}

// pathRequest is a GET for target (path and query) from client address
// remote.
func pathRequest(target, remote string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.RemoteAddr = remote
	return r
}

// TestConsistentHashPathKeys checks what the path and url keys are: the
// same backend for the same key from any client, the key being exactly the
// path (or path?query). A header key carrying the same string must land on
// the same backend, since both hash that string on the same ring.
func TestConsistentHashPathKeys(t *testing.T) {
	bs := newBackends(16, 1000)
	set := setOf(1, bs...)
	byHeader := newHash(t, policy.HashConfig{Key: policy.HashKey{Kind: policy.KeyHeader, Name: "X-Key"}})
	byIP := newHash(t, policy.HashConfig{})
	keyed := func(k string) *pool.Backend { return byHeader.Pick(set, nil, request("192.0.2.1:1", "X-Key", k)) }
	cases := []struct {
		kind   policy.KeyKind
		target string
		key    string // the string the pick must be keyed by; "" for the client address
	}{
		{policy.KeyPath, "/a", "/a"},
		{policy.KeyPath, "/a?x=1", "/a"},
		{policy.KeyPath, "/img/logo.png?v=2&w=10", "/img/logo.png"},
		{policy.KeyPath, "/a%20b", "/a b"}, // the decoded path
		{policy.KeyURL, "/a", "/a"},
		{policy.KeyURL, "/a?x=1", "/a?x=1"},
		{policy.KeyURL, "/a?x=2", "/a?x=2"},
		{policy.KeyURL, "/img/logo.png?v=2&w=10", "/img/logo.png?v=2&w=10"},
		{policy.KeyURL, "/q?a=%20", "/q?a=%20"}, // the raw query, as sent
	}
	for _, tc := range cases {
		name := policy.HashKey{Kind: tc.kind}.String() + " " + tc.target
		t.Run(name, func(t *testing.T) {
			p := newHash(t, policy.HashConfig{Key: policy.HashKey{Kind: tc.kind}})
			want := keyed(tc.key)
			for c := range 20 {
				if got := p.Pick(set, nil, pathRequest(tc.target, fmt.Sprintf("198.51.100.%d:%d", c, 2000+c))); got != want {
					t.Fatalf("client %d: %s, want %s (the backend of key %q)", c, got.ID, want.ID, tc.key)
				}
			}
		})
	}

	t.Run("empty path falls back to the client address", func(t *testing.T) {
		for _, kind := range []policy.KeyKind{policy.KeyPath, policy.KeyURL} {
			p := newHash(t, policy.HashConfig{Key: policy.HashKey{Kind: kind}})
			for i := range 50 {
				addr := fmt.Sprintf("198.18.2.%d", i)
				r := request(addr + ":999")
				r.Method, r.URL = http.MethodConnect, &url.URL{Host: "example.com:443"}
				if got, want := p.Pick(set, nil, r), byIP.Pick(set, nil, request(addr+":1")); got != want {
					t.Fatalf("%v: CONNECT from %s: %s, by address %s", kind, addr, got.ID, want.ID)
				}
			}
		}
	})

	t.Run("objects spread over the backends", func(t *testing.T) {
		for _, kind := range []policy.KeyKind{policy.KeyPath, policy.KeyURL} {
			p := newHash(t, policy.HashConfig{Key: policy.HashKey{Kind: kind}})
			share := map[string]int{}
			for i := range 1600 {
				share[p.Pick(set, nil, pathRequest(fmt.Sprintf("/obj/%d?v=%d", i/2, i%2), "192.0.2.1:1")).ID]++
			}
			// 100 each if even; every backend owns some objects.
			for _, b := range bs {
				if n := share[b.ID]; n < 40 || n > 200 {
					t.Errorf("%v: %s got %d of 1600 requests, want 40..200: %v", kind, b.ID, n, share)
				}
			}
		}
	})
}

// TestConsistentHashPathBound: affinity by path gives way to the bound
// exactly as by address. The owner of "/hot" keeps it while it is within
// ceil(c * (in flight + 1) / available); above that the request goes to the
// next backend clockwise, and a hot object's requests spread.
func TestConsistentHashPathBound(t *testing.T) {
	cases := []struct {
		name      string
		kind      policy.KeyKind
		target    string
		factor    float64
		owner     int64
		others    [3]int64
		wantOwner bool
	}{
		{"idle keeps its backend", policy.KeyPath, "/hot", 0, 0, [3]int64{}, true},
		// bound = ceil(1.25 * (12+1) / 4) = 5; 3+1 <= 5.
		{"even load keeps it", policy.KeyPath, "/hot?v=1", 0, 3, [3]int64{3, 3, 3}, true},
		// total 10: bound = ceil(1.25 * 11 / 4) = 4; 4+1 > 4.
		{"over the bound moves", policy.KeyPath, "/hot", 0, 4, [3]int64{2, 2, 2}, false},
		// c=2: bound = ceil(2 * 11 / 4) = 6; 4+1 <= 6.
		{"looser factor keeps it", policy.KeyPath, "/hot", 2, 4, [3]int64{2, 2, 2}, true},
		{"url key, even load keeps it", policy.KeyURL, "/hot?v=1", 0, 3, [3]int64{3, 3, 3}, true},
		{"url key, over the bound moves", policy.KeyURL, "/hot?v=1", 0, 4, [3]int64{2, 2, 2}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bs := newBackends(4, 1000)
			set := setOf(1, bs...)
			p := newHash(t, policy.HashConfig{Key: policy.HashKey{Kind: tc.kind}, LoadFactor: tc.factor})
			r := pathRequest(tc.target, "192.0.2.7:1")
			owner := p.Pick(set, nil, r)
			owner.SetHealthy(false)
			next := p.Pick(set, nil, r)
			owner.SetHealthy(true)
			k := 0
			for _, b := range bs {
				if b == owner {
					b.SetRemote(tc.owner)
					continue
				}
				b.SetRemote(tc.others[k])
				k++
			}
			// From another client: the key, not the address, decides.
			got := p.Pick(set, nil, pathRequest(tc.target, "203.0.113.200:9"))
			switch {
			case tc.wantOwner && got != owner:
				t.Fatalf("moved to %s, want to stay on %s", got.ID, owner.ID)
			case !tc.wantOwner && got != next:
				t.Fatalf("picked %s, want the next clockwise %s (owner %s)", got.ID, next.ID, owner.ID)
			}
		})
	}

	t.Run("a hot object spreads no further than the bound needs", func(t *testing.T) {
		bs := newBackends(4, 1000)
		set := setOf(1, bs...)
		p := newHash(t, policy.HashConfig{Key: policy.HashKey{Kind: policy.KeyPath}})
		r := pathRequest("/hot", "192.0.2.7:1")
		// 8 requests for one object held at once: bound = ceil(1.25*8/4) = 3
		// at the last, so it takes three backends, each holding at most 3.
		for total := 1; total <= 8; total++ {
			b := p.Pick(set, nil, r)
			fill(t, b, 1)
			if bound := int64(math.Ceil(1.25 * float64(total) / 4)); b.Inflight() > bound {
				t.Fatalf("request %d: %s has %d in flight, bound %d", total, b.ID, b.Inflight(), bound)
			}
		}
		used := 0
		for _, b := range bs {
			if b.Inflight() > 0 {
				used++
			}
		}
		if used != 3 {
			t.Fatalf("8 concurrent requests for one object used %d backends, want 3", used)
		}
	})
}

// TestPathKeyPickAllocatesNothing holds the path and url keys to the
// hot-path rule: the url key is hashed in pieces, never concatenated.
func TestPathKeyPickAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	set := setOf(1, newBackends(8, 100)...)
	for _, key := range []string{"path", "url"} {
		// The long target is past the 32 bytes a concatenation could keep
		// on the stack, so building the key string would show here.
		for _, target := range []string{"/a", "/assets/images/2024/banner-large.png?width=1200&format=webp"} {
			p := newPolicy(t, policy.NameConsistentHash, policy.Options{HashKey: key})
			r := pathRequest(target, "203.0.113.9:5555")
			if p.Pick(set, nil, r) == nil {
				t.Fatalf("%s %s: no pick", key, target)
			}
			allocs := testing.AllocsPerRun(200, func() {
				if p.Pick(set, nil, r) == nil {
					panic("no pick")
				}
			})
			if allocs != 0 {
				t.Errorf("HASH_KEY=%s, %s: %v allocations per pick, want 0", key, target, allocs)
			}
		}
	}
}
