package policy_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"lbscale/balancer/policy"
	"lbscale/balancer/pool"
)

// setCookies returns the cookies called name that w was told to set.
func setCookies(w *httptest.ResponseRecorder, name string) []*http.Cookie {
	var out []*http.Cookie
	for _, c := range (&http.Response{Header: w.Header()}).Cookies() {
		if c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

func newSticky(t testing.TB, name string) *policy.Sticky {
	t.Helper()
	p, err := policy.NewSticky(name, seeded(11))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSticky(t *testing.T) {
	const name = policy.DefaultStickyCookie
	// first places a cookie-less request and returns the backend and cookie.
	first := func(t *testing.T, p policy.Policy, set *pool.Set) (*pool.Backend, *http.Cookie) {
		t.Helper()
		w := httptest.NewRecorder()
		b := p.Pick(set, w, request("192.0.2.7:1234"))
		cs := setCookies(w, name)
		if b == nil || len(cs) != 1 {
			t.Fatalf("first pick %v set cookies %q", b, w.Header()["Set-Cookie"])
		}
		return b, cs[0]
	}
	with := func(c *http.Cookie) *http.Request {
		r := request("198.51.100.1:1", "Cookie", "other=1")
		r.AddCookie(c)
		return r
	}

	t.Run("first request: least connections and a cookie", func(t *testing.T) {
		bs := newBackends(4, 10)
		fill(t, bs[0], 2)
		bs[1].SetRemote(1)
		fill(t, bs[3], 1)
		b, c := first(t, newSticky(t, ""), setOf(1, bs...))
		if b != bs[2] {
			t.Fatalf("picked %s, want the idle b02", b.ID)
		}
		if c.Path != "/" || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
			t.Fatalf("cookie attributes %+v", c)
		}
		if strings.Contains(c.Value, b.ID) || strings.Contains(c.Value, b.Addr) || strings.Contains(c.Value, "10.0.0") {
			t.Fatalf("cookie %q reveals the backend", c.Value)
		}
	})

	t.Run("cookie sticks, on any balancer", func(t *testing.T) {
		bs := newBackends(4, 10)
		set := setOf(1, bs...)
		p := newSticky(t, "")
		b, c := first(t, p, set)
		fill(t, b, 5)             // now the busiest: least connections would go elsewhere
		other := newSticky(t, "") // another balancer replica
		for i := range 20 {
			for _, q := range []policy.Policy{p, other} {
				w := httptest.NewRecorder()
				if got := q.Pick(setOf(uint64(2+i), bs...), w, with(c)); got != b {
					t.Fatalf("request %d with the cookie went to %v, not %s", i, got, b.ID)
				}
				if len(setCookies(w, name)) != 0 {
					t.Fatalf("request with a valid cookie got a new one: %q", w.Header()["Set-Cookie"])
				}
			}
		}
	})

	unavailable := []struct {
		name string
		make func(t *testing.T, b *pool.Backend)
	}{
		{"unhealthy", func(_ *testing.T, b *pool.Backend) { b.SetHealthy(false) }},
		{"draining", func(_ *testing.T, b *pool.Backend) { b.SetDraining(true) }},
		{"full", func(t *testing.T, b *pool.Backend) { fill(t, b, int(b.Grant()-b.Local())) }},
	}
	for _, u := range unavailable {
		t.Run("target "+u.name+" falls back and re-pins", func(t *testing.T) {
			bs := newBackends(3, 10)
			set := setOf(1, bs...)
			p := newSticky(t, "")
			b, c := first(t, p, set)
			u.make(t, b)
			w := httptest.NewRecorder()
			moved := p.Pick(set, w, with(c))
			if moved == nil || moved == b {
				t.Fatalf("picked %v with %s %s", moved, b.ID, u.name)
			}
			cs := setCookies(w, name)
			if len(cs) != 1 || cs[0].Value == c.Value {
				t.Fatalf("fallback set cookies %q, want one new value", w.Header()["Set-Cookie"])
			}
			// The client now sticks to where it moved, even once b is back.
			b.SetHealthy(true)
			b.SetDraining(false)
			if b.Local() > 0 {
				b.SetGrant(b.Local()+10, 10)
			}
			if got := p.Pick(set, httptest.NewRecorder(), with(cs[0])); got != moved {
				t.Fatalf("after re-pin went to %v, want %s", got, moved.ID)
			}
		})
	}

	t.Run("garbage or foreign cookie values fall back", func(t *testing.T) {
		bs := newBackends(3, 10)
		p := newSticky(t, "")
		for _, v := range []string{"zzz", "", "0000000000000001", bs[0].ID, bs[0].Addr} {
			w := httptest.NewRecorder()
			r := request("192.0.2.1:1", "Cookie", name+"="+v)
			if b := p.Pick(setOf(1, bs...), w, r); b == nil || len(setCookies(w, name)) != 1 {
				t.Fatalf("cookie %q: pick %v, set %q", v, b, w.Header()["Set-Cookie"])
			}
		}
	})

	t.Run("a repeated pick replaces its own cookie, keeps others", func(t *testing.T) {
		bs := newBackends(3, 10)
		set := setOf(1, bs...)
		p := newSticky(t, "")
		w := httptest.NewRecorder()
		w.Header().Add("Set-Cookie", "unrelated=1")
		r := request("192.0.2.1:1")
		a := p.Pick(set, w, r)
		fill(t, a, 10) // the proxy lost the slot race and picks again
		b := p.Pick(set, w, r)
		if a == b {
			t.Fatalf("picked the full %s again", a.ID)
		}
		got := w.Header()["Set-Cookie"]
		if len(got) != 2 || got[0] != "unrelated=1" || len(setCookies(w, name)) != 1 {
			t.Fatalf("Set-Cookie after two picks: %q", got)
		}
		if c := setCookies(w, name)[0]; p.Pick(set, httptest.NewRecorder(), with(c)) != b {
			t.Fatalf("the surviving cookie does not name the second pick %s", b.ID)
		}
	})

	t.Run("custom name", func(t *testing.T) {
		p := newSticky(t, "route")
		w := httptest.NewRecorder()
		p.Pick(setOf(1, newBackends(2, 10)...), w, request("192.0.2.1:1"))
		if len(setCookies(w, "route")) != 1 || len(setCookies(w, name)) != 0 {
			t.Fatalf("Set-Cookie %q, want one route cookie", w.Header()["Set-Cookie"])
		}
		if _, err := policy.NewSticky("bad name;", nil); err == nil {
			t.Fatal("invalid cookie name accepted")
		}
	})

	t.Run("nothing available sets nothing", func(t *testing.T) {
		bs := newBackends(2, 10)
		bs[0].SetHealthy(false)
		bs[1].SetDraining(true)
		w := httptest.NewRecorder()
		if b := newSticky(t, "").Pick(setOf(1, bs...), w, request("192.0.2.1:1")); b != nil || len(w.Header()) != 0 {
			t.Fatalf("pick %v, headers %v", b, w.Header())
		}
	})
}
