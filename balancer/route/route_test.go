package route_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"lbscale/balancer/route"
)

// name is the target used by the tests: the pool's own name, so a match
// reports which pool won.
func name(pool string) string { return pool }

func mustNew(t testing.TB, rules []route.Rule) *route.Table[string] {
	t.Helper()
	tbl, err := route.New(rules, name)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tbl
}

// site is a configuration with every kind of rule: exact hosts, nested
// wildcards, a bracketed IPv6 host, a host with many prefixes (indexed by
// prefix rather than scanned) and pools without hosts.
var site = []route.Rule{
	{Pool: "api", Hosts: []string{"api.example.com"}, Paths: []string{"/v1", "/v2/"}},
	{Pool: "api-admin", Hosts: []string{"API.example.com."}, Paths: []string{"/v1/admin"}},
	{Pool: "www", Hosts: []string{"www.example.com", "example.com"}},
	{Pool: "web", Hosts: []string{"*.web.example.com"}, Paths: []string{"/"}},
	{Pool: "web-static", Hosts: []string{"*.web.example.com"}, Paths: []string{"/static"}},
	{Pool: "tenants", Hosts: []string{"*.example.com"}, Paths: []string{"/app"}},
	{Pool: "local", Hosts: []string{"[::1]", "127.0.0.1"}},
	{Pool: "docs", Hosts: []string{"docs.example.com"}, Paths: []string{
		"/a", "/b", "/c", "/d", "/e", "/f", "/g", "/h", "/i/", "/a/b", "/a/b/c/", "/a/b/c/d",
	}},
	{Pool: "default", Paths: []string{"/"}},
	{Pool: "shop", Paths: []string{"/shop", "/cart/"}},
}

func TestMatch(t *testing.T) {
	tbl := mustNew(t, site)
	tests := []struct {
		why        string
		host, path string
		want       string // "" for no match
	}{
		{"exact host, prefix", "api.example.com", "/v1", "api"},
		{"exact host, below prefix", "api.example.com", "/v1/users", "api"},
		{"longest prefix of the host wins", "api.example.com", "/v1/admin/x", "api-admin"},
		{"prefix exactly", "api.example.com", "/v1/admin", "api-admin"},
		{"segment boundary: /v1 does not cover /v1x", "api.example.com", "/v1x", "default"},
		{"segment boundary: /v1/admin does not cover /v1/administrators", "api.example.com", "/v1/administrators", "api"},
		{"trailing-slash prefix covers below", "api.example.com", "/v2/x", "api"},
		{"trailing-slash prefix covers itself", "api.example.com", "/v2/", "api"},
		{"trailing-slash prefix does not cover the bare name", "api.example.com", "/v2", "default"},
		{"exact host, no prefix: falls to wildcard", "api.example.com", "/app/x", "tenants"},
		{"exact host, no prefix: falls to hostless", "api.example.com", "/shop/1", "shop"},
		{"exact host, no prefix anywhere: hostless root", "api.example.com", "/other", "default"},
		{"default paths are /", "www.example.com", "/anything/at/all", "www"},
		{"second host of a pool", "example.com", "/", "www"},
		{"exact beats wildcard", "www.example.com", "/app", "www"},

		{"wildcard, one label", "a.web.example.com", "/x", "web"},
		{"wildcard, several labels", "a.b.c.web.example.com", "/x", "web"},
		{"wildcard longest prefix", "a.web.example.com", "/static/app.js", "web-static"},
		{"wildcard does not cover its own suffix", "web.example.com", "/app", "tenants"},
		{"longer wildcard suffix beats shorter", "a.web.example.com", "/app", "web"},
		{"shorter wildcard when longer has no prefix", "x.example.com", "/app/1", "tenants"},
		{"wildcard without a covering prefix: hostless", "x.example.com", "/cart/1", "shop"},
		{"wildcard, trailing-slash hostless prefix needs the slash", "x.example.com", "/cart", "default"},
		{"wildcard needs a label before the suffix", ".example.com", "/app", "default"},

		{"hostless, unknown host", "other.org", "/shop", "shop"},
		{"hostless, no host at all", "", "/cart/", "shop"},
		{"hostless root", "other.org", "/", "default"},

		{"port stripped", "api.example.com:8081", "/v1", "api"},
		{"case folded", "API.Example.COM", "/v1", "api"},
		{"case folded with port", "API.example.com:8081", "/v1/admin", "api-admin"},
		{"trailing dot ignored", "api.example.com.", "/v1", "api"},
		{"trailing dot with port", "api.example.com.:443", "/v1", "api"},
		{"wildcard, case and port", "A.WEB.Example.com:80", "/static", "web-static"},
		{"IPv6 literal with port", "[::1]:8080", "/x", "local"},
		{"IPv6 literal without port", "[::1]", "/", "local"},
		{"IPv4 with port", "127.0.0.1:80", "/", "local"},
		{"bare IPv6 is not name:port", "::1", "/", "default"},
		{"path is case-sensitive", "api.example.com", "/V1", "default"},

		{"indexed prefixes", "docs.example.com", "/a", "docs"},
		{"indexed prefixes, boundary", "docs.example.com", "/ab", "default"},
		{"indexed prefixes, deep", "docs.example.com", "/a/b/c/d/e", "docs"},
		{"indexed prefixes, trailing slash", "docs.example.com", "/i/x", "docs"},
		{"indexed prefixes, trailing slash needs it", "docs.example.com", "/i", "default"},
		{"indexed prefixes, fall through", "docs.example.com", "/z", "default"},
		{"indexed prefixes, then wildcard", "docs.example.com", "/app", "tenants"},
	}
	for _, tt := range tests {
		got, ok := tbl.Match(tt.host, tt.path)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("%s: Match(%q, %q) = %q, %v; want %q", tt.why, tt.host, tt.path, got, ok, tt.want)
		}
		if want, _ := refMatch(site, tt.host, tt.path); want != tt.want {
			t.Errorf("%s: reference gives %q for (%q, %q); the test expects %q", tt.why, want, tt.host, tt.path, tt.want)
		}
	}
}

func TestNoMatch(t *testing.T) {
	tbl := mustNew(t, []route.Rule{
		{Pool: "api", Hosts: []string{"api.example.com"}, Paths: []string{"/api"}},
		{Pool: "web", Hosts: []string{"*.example.com"}},
		{Pool: "shop", Paths: []string{"/shop"}},
	})
	for _, c := range []struct{ host, path string }{
		{"other.org", "/"},
		{"other.org", "/shopping"},
		{"example.com", "/"},
		{"", ""},
		{"[::1]:80", "/api"},
	} {
		if got, ok := tbl.Match(c.host, c.path); ok {
			t.Errorf("Match(%q, %q) = %q; want no match", c.host, c.path, got)
		}
	}
	// api.example.com is also under *.example.com, which covers every path.
	if got, _ := tbl.Match("api.example.com", "/x"); got != "web" {
		t.Errorf("Match(api.example.com, /x) = %q; want the wildcard pool", got)
	}

	var none *route.Table[string]
	if got, ok := none.Match("a", "/"); ok {
		t.Errorf("nil table matched %q", got)
	}
	empty := mustNew(t, nil)
	if got, ok := empty.Match("a", "/"); ok {
		t.Errorf("empty table matched %q", got)
	}
}

// TestRootCoversEverything checks that "/" covers paths that are not
// origin-form, as an absolute-form request without a path or OPTIONS *.
func TestRootCoversEverything(t *testing.T) {
	tbl := mustNew(t, []route.Rule{{Pool: "all"}, {Pool: "api", Paths: []string{"/api"}}})
	for _, p := range []string{"", "*", "/", "/api", "api"} {
		want := "all"
		if p == "/api" {
			want = "api"
		}
		if got, _ := tbl.Match("h", p); got != want {
			t.Errorf("Match(h, %q) = %q; want %q", p, got, want)
		}
	}
}

// TestLongHost checks a host past the stack buffer: lowered on the heap, it
// still matches the wildcard that covers it.
func TestLongHost(t *testing.T) {
	tbl := mustNew(t, []route.Rule{{Pool: "w", Hosts: []string{"*.example.com"}}})
	long := strings.Repeat("AB.", 120) + "Example.COM:80"
	if got, ok := tbl.Match(long, "/"); got != "w" || !ok {
		t.Errorf("Match(%d-byte host) = %q, %v; want w", len(long), got, ok)
	}
}

func TestTargets(t *testing.T) {
	type pool struct{ name string }
	var calls []string
	tbl, err := route.New([]route.Rule{{Pool: "b", Hosts: []string{"b.test"}}, {Pool: "a"}}, func(n string) *pool {
		calls = append(calls, n)
		return &pool{n}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(calls, []string{"b", "a"}) {
		t.Errorf("target called for %q; want once per pool in rule order", calls)
	}
	p1, _ := tbl.Match("b.test", "/")
	p2, _ := tbl.Match("B.TEST", "/x")
	if p1 == nil || p1 != p2 || p1.name != "b" {
		t.Errorf("Match returned %v and %v; want the same *pool b", p1, p2)
	}
	if got := tbl.Pools(); !slices.Equal(got, []string{"b", "a"}) {
		t.Errorf("Pools() = %q", got)
	}
	tbl.Pools()[0] = "changed"
	if got := tbl.Pools()[0]; got != "b" {
		t.Errorf("Pools shares its slice: %q", got)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		why   string
		rules []route.Rule
		is    error
		want  []string // substrings of the message
	}{
		{"empty pool name", []route.Rule{{Pool: ""}}, route.ErrInvalid, []string{"empty pool name"}},
		{"pool defined twice", []route.Rule{{Pool: "a", Hosts: []string{"x"}}, {Pool: "a", Hosts: []string{"y"}}},
			route.ErrInvalid, []string{`"a"`, "twice"}},
		{"same host and path", []route.Rule{
			{Pool: "one", Hosts: []string{"api.example.com"}, Paths: []string{"/api"}},
			{Pool: "two", Hosts: []string{"API.example.com."}, Paths: []string{"/x", "/api"}},
		}, route.ErrConflict, []string{`"one"`, `"two"`, `"api.example.com"`, `"/api"`}},
		{"same wildcard, default paths", []route.Rule{
			{Pool: "one", Hosts: []string{"*.example.com"}},
			{Pool: "two", Hosts: []string{"*.Example.com"}},
		}, route.ErrConflict, []string{`"one"`, `"two"`, `"*.example.com"`, `"/"`}},
		{"two hostless pools on /", []route.Rule{{Pool: "one"}, {Pool: "two", Paths: []string{"/"}}},
			route.ErrConflict, []string{`"one"`, `"two"`, "any host"}},
		{"host with port", []route.Rule{{Pool: "p", Hosts: []string{"api.example.com:8080"}}},
			route.ErrInvalid, []string{`"p"`, `"api.example.com:8080"`, "port"}},
		{"IPv6 with port", []route.Rule{{Pool: "p", Hosts: []string{"[::1]:8080"}}},
			route.ErrInvalid, []string{`"p"`, `"[::1]:8080"`, "port"}},
		{"bare IPv6", []route.Rule{{Pool: "p", Hosts: []string{"::1"}}},
			route.ErrInvalid, []string{`"p"`, `"::1"`, "brackets"}},
		{"host with space", []route.Rule{{Pool: "p", Hosts: []string{"api example.com"}}},
			route.ErrInvalid, []string{`"p"`, `"api example.com"`, "space"}},
		{"host with trailing space", []route.Rule{{Pool: "p", Hosts: []string{"api.example.com "}}},
			route.ErrInvalid, []string{`"p"`, "space"}},
		{"empty host", []route.Rule{{Pool: "p", Hosts: []string{""}}},
			route.ErrInvalid, []string{`"p"`, `host ""`}},
		{"wildcard in the middle", []route.Rule{{Pool: "p", Hosts: []string{"api.*.example.com"}}},
			route.ErrInvalid, []string{`"p"`, `"api.*.example.com"`, "wildcard"}},
		{"wildcard without dot", []route.Rule{{Pool: "p", Hosts: []string{"*example.com"}}},
			route.ErrInvalid, []string{`"p"`, `"*example.com"`, "wildcard"}},
		{"bare star", []route.Rule{{Pool: "p", Hosts: []string{"*"}}},
			route.ErrInvalid, []string{`"p"`, `"*"`, "wildcard"}},
		{"two wildcards", []route.Rule{{Pool: "p", Hosts: []string{"*.*.example.com"}}},
			route.ErrInvalid, []string{`"p"`, `"*.*.example.com"`, "wildcard"}},
		{"trailing wildcard", []route.Rule{{Pool: "p", Hosts: []string{"example.*"}}},
			route.ErrInvalid, []string{`"p"`, `"example.*"`, "wildcard"}},
		{"empty label", []route.Rule{{Pool: "p", Hosts: []string{"api..example.com"}}},
			route.ErrInvalid, []string{`"p"`, `"api..example.com"`, "label"}},
		{"non-ASCII host", []route.Rule{{Pool: "p", Hosts: []string{"bücher.example"}}},
			route.ErrInvalid, []string{`"p"`, "punycode"}},
		{"path without slash", []route.Rule{{Pool: "p", Paths: []string{"api"}}},
			route.ErrInvalid, []string{`"p"`, `"api"`, `start with "/"`}},
		{"empty path", []route.Rule{{Pool: "p", Paths: []string{""}}},
			route.ErrInvalid, []string{`"p"`, `path ""`}},
		{"glob path", []route.Rule{{Pool: "p", Paths: []string{"/api/*"}}},
			route.ErrInvalid, []string{`"p"`, `"/api/*"`}},
	}
	for _, tt := range tests {
		tbl, err := route.New(tt.rules, name)
		if err == nil {
			t.Errorf("%s: New succeeded (%q); want an error", tt.why, tbl.Pools())
			continue
		}
		if !errors.Is(err, tt.is) {
			t.Errorf("%s: error %q does not wrap %v", tt.why, err, tt.is)
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %s", tt.why, err, w)
			}
		}
	}
}

// TestNewReportsAll checks that one New call names every problem, so an
// operator fixes a pool file in one pass.
func TestNewReportsAll(t *testing.T) {
	_, err := route.New([]route.Rule{
		{Pool: "a", Hosts: []string{"x:1"}},
		{Pool: "b", Paths: []string{"y"}},
		{Pool: "c"}, {Pool: "d"},
	}, name)
	for _, w := range []string{`"x:1"`, `"y"`, `"c" and "d"`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v does not mention %s", err, w)
		}
	}
}

func TestNewAccepts(t *testing.T) {
	// A pool may repeat its own claim, and the same host or prefix may be
	// shared as long as the pair differs.
	tbl := mustNew(t, []route.Rule{
		{Pool: "a", Hosts: []string{"a.test", "A.test."}, Paths: []string{"/x", "/x"}},
		{Pool: "b", Hosts: []string{"a.test"}, Paths: []string{"/x/"}},
		{Pool: "c", Hosts: []string{"*.a.test", "xn--bcher-kva.example", "under_score.test", "[::ffff:10.0.0.1]"}},
	})
	for _, c := range []struct{ host, path, want string }{
		{"a.test", "/x", "a"}, {"a.test", "/x/y", "b"}, {"b.a.test", "/", "c"},
		{"XN--BCHER-KVA.example", "/", "c"}, {"[::FFFF:10.0.0.1]:443", "/", "c"},
	} {
		if got, _ := tbl.Match(c.host, c.path); got != c.want {
			t.Errorf("Match(%q, %q) = %q; want %q", c.host, c.path, got, c.want)
		}
	}
}

func TestMatchAllocs(t *testing.T) {
	tbl := mustNew(t, site)
	for _, c := range []struct{ host, path string }{
		{"API.Example.COM:8081", "/v1/admin/users"},
		{"A.B.Web.Example.com.", "/static/x.js"},
		{"Docs.Example.com", "/a/b/c/d/e"},
		{"Docs.Example.com", "/zzz/y"},
		{"[::1]:8080", "/"},
		{"Nowhere.ORG", "/cart/1"},
		{strings.Repeat("X", 240) + ".Example.COM", "/app"}, // 252 bytes: still the stack buffer
	} {
		if n := testing.AllocsPerRun(100, func() { tbl.Match(c.host, c.path) }); n != 0 {
			t.Errorf("Match(%q, %q) allocates %v times; want 0", c.host, c.path, n)
		}
	}
}

// refMatch is the specification written as plainly as possible: every rule,
// every host, every path, and the most specific that covers the request wins
// (host level, then wildcard suffix length, then prefix length). It works
// from the rules as written and shares no code with the package.
func refMatch(rules []route.Rule, host, path string) (string, bool) {
	// Normalise the request host.
	if strings.HasPrefix(host, "[") {
		if i := strings.Index(host, "]"); i >= 0 {
			host = host[:i+1]
		}
	} else if strings.Count(host, ":") == 1 {
		host, _, _ = strings.Cut(host, ":")
	}
	host = refLower(strings.TrimSuffix(host, "."))

	best, found := "", false
	var bestSpec [3]int
	for _, r := range rules {
		type hostMatch struct{ level, suffix int }
		var hms []hostMatch
		if len(r.Hosts) == 0 {
			hms = append(hms, hostMatch{0, 0})
		}
		for _, rh := range r.Hosts {
			rh = refLower(strings.TrimSuffix(rh, "."))
			if suf, ok := strings.CutPrefix(rh, "*"); ok {
				if len(host) > len(suf) && strings.HasSuffix(host, suf) {
					hms = append(hms, hostMatch{1, len(suf)})
				}
			} else if rh == host {
				hms = append(hms, hostMatch{2, 0})
			}
		}
		paths := r.Paths
		if len(paths) == 0 {
			paths = []string{"/"}
		}
		for _, hm := range hms {
			for _, p := range paths {
				if !refCovers(p, path) {
					continue
				}
				spec := [3]int{hm.level, hm.suffix, len(p)}
				if !found || slices.Compare(spec[:], bestSpec[:]) > 0 {
					best, bestSpec, found = r.Pool, spec, true
				}
			}
		}
	}
	return best, found
}

func refCovers(p, path string) bool {
	if p == "/" {
		return true
	}
	if !strings.HasPrefix(path, p) {
		return false
	}
	rest := path[len(p):]
	return strings.HasSuffix(p, "/") || rest == "" || strings.HasPrefix(rest, "/")
}

func refLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// Pieces the random hosts and paths are made of: the names and prefixes of
// site, near misses of them, and the characters normalisation cares about.
var (
	hostPieces = []string{
		"api", "API", "www", "web", "WEB", "docs", "example", "Example", "com", "COM",
		"a", "b", "x", "", "*", "[::1]", "::1", "127", "0", "1", ":8080", ":", ".", "..", "]", "[",
	}
	pathPieces = []string{
		"/", "//", "v1", "v2", "V1", "admin", "administrators", "static", "app", "shop", "cart",
		"a", "b", "c", "d", "i", "ab", "x", "", "*", "%2F",
	}
)

func randomHost(r *rand.Rand) string {
	var b strings.Builder
	for n := r.IntN(8); n >= 0; n-- {
		b.WriteString(hostPieces[r.IntN(len(hostPieces))])
		if r.IntN(3) > 0 {
			b.WriteByte('.')
		}
	}
	return b.String()
}

func randomPath(r *rand.Rand) string {
	var b strings.Builder
	if r.IntN(10) > 0 {
		b.WriteByte('/')
	}
	for n := r.IntN(6); n >= 0; n-- {
		b.WriteString(pathPieces[r.IntN(len(pathPieces))])
		if r.IntN(3) > 0 {
			b.WriteByte('/')
		}
	}
	return b.String()
}

// TestMatchAgreesWithReference runs the FuzzMatch comparison on many
// generated requests on every test run, not only when fuzzing.
func TestMatchAgreesWithReference(t *testing.T) {
	tbl := mustNew(t, site)
	r := rand.New(rand.NewPCG(1, 2))
	matched := 0
	for range 100_000 {
		host, path := randomHost(r), randomPath(r)
		// Also known names with random decoration, so that the exact and
		// wildcard levels are hit often.
		if r.IntN(2) == 0 {
			known := []string{"api.example.com", "a.web.example.com", "docs.example.com", "x.example.com", "[::1]"}
			host = known[r.IntN(len(known))] + []string{"", ".", ":80", ".:80", "x"}[r.IntN(5)]
			if r.IntN(2) == 0 {
				host = strings.ToUpper(host)
			}
		}
		got, ok := tbl.Match(host, path)
		want, wok := refMatch(site, host, path)
		if got != want || ok != wok {
			t.Fatalf("Match(%q, %q) = %q, %v; reference %q, %v", host, path, got, ok, want, wok)
		}
		if ok && want != "default" {
			matched++
		}
	}
	if matched < 10_000 {
		t.Errorf("only %d requests matched a specific rule; the generator misses the table", matched)
	}
}

func FuzzMatch(f *testing.F) {
	tbl := mustNew(f, site)
	r := rand.New(rand.NewPCG(3, 4))
	for range 50 {
		f.Add(randomHost(r), randomPath(r))
	}
	for _, s := range [][2]string{
		{"api.example.com", "/v1/admin"}, {"API.example.com.:8081", "/v2/"}, {"a.web.example.com", "/static"},
		{"web.example.com", "/app"}, {"[::1]:8080", ""}, {"docs.example.com", "/a/b/c/"}, {"::1", "*"},
		{".example.com", "/"}, {"[", "/i/"}, {"api.example.com:", "/v1/"}, {strings.Repeat("a.", 200) + "example.com", "/app"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, host, path string) {
		got, ok := tbl.Match(host, path)
		want, wok := refMatch(site, host, path)
		if got != want || ok != wok {
			t.Fatalf("Match(%q, %q) = %q, %v; reference %q, %v", host, path, got, ok, want, wok)
		}
	})
}

// ExampleTable shows the precedence on a small pool file.
func ExampleTable() {
	tbl, err := route.New([]route.Rule{
		{Pool: "api", Hosts: []string{"api.example.com"}, Paths: []string{"/v1", "/v2"}},
		{Pool: "tenants", Hosts: []string{"*.example.com"}},
		{Pool: "site"},
	}, func(pool string) string { return pool })
	if err != nil {
		panic(err)
	}
	for _, req := range [][2]string{
		{"API.example.com:8443", "/v1/users"},
		{"api.example.com", "/v1x"},
		{"acme.example.com", "/"},
		{"example.org", "/"},
	} {
		pool, _ := tbl.Match(req[0], req[1])
		fmt.Println(req[0], req[1], "->", pool)
	}
	// Output:
	// API.example.com:8443 /v1/users -> api
	// api.example.com /v1x -> tenants
	// acme.example.com / -> tenants
	// example.org / -> site
}
