package main

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

func TestLRU(t *testing.T) {
	cases := []struct {
		name string
		ops  string // a key added (a..z) or touched (A..Z), in order
		held string // keys held at the end
		gone string // keys evicted
	}{
		{"fills to its size", "abc", "abc", ""},
		{"evicts the least recently added", "abcd", "bcd", "a"},
		{"a touch keeps a key", "abcAd", "acd", "b"},
		{"adding a held key refreshes it", "abcad", "acd", "b"},
		{"a touch of an absent key adds nothing", "abDc", "abc", "d"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newLRU(3)
			for _, op := range tc.ops {
				if op >= 'A' && op <= 'Z' {
					c.touch(string(op - 'A' + 'a'))
				} else {
					c.add(string(op))
				}
			}
			for _, k := range tc.held {
				if _, ok := c.at[string(k)]; !ok {
					t.Errorf("%c not held", k)
				}
			}
			for _, k := range tc.gone {
				if _, ok := c.at[string(k)]; ok {
					t.Errorf("%c still held", k)
				}
			}
			if c.order.Len() != len(c.at) || c.order.Len() > 3 {
				t.Errorf("list %d, map %d entries, size 3", c.order.Len(), len(c.at))
			}
		})
	}
}

// TestCacheBackend: a real server answers a miss first, then hits, and
// keeps health checks out of its cache and its count.
func TestCacheBackend(t *testing.T) {
	b, err := startCacheBackend(2, time.Microsecond, 2*time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := b.stop(); err != nil {
			t.Error(err)
		}
	}()
	get := func(path string) string {
		t.Helper()
		res, err := http.Get("http://" + b.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.Header.Get("X-Cache")
	}
	for i, want := range []struct{ path, cache string }{
		{"/obj/1", "miss"}, {"/obj/1", "hit"}, {healthPath, ""}, {"/obj/2", "miss"},
		{"/obj/3", "miss"}, {"/obj/1", "miss"}, {"/obj/3", "hit"},
	} {
		if got := get(want.path); got != want.cache {
			t.Fatalf("request %d, %s: X-Cache %q, want %q", i, want.path, got, want.cache)
		}
	}
	if n := b.served.Load(); n != 6 {
		t.Fatalf("served %d object requests, want 6", n)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, tc := range []struct{ q, want int }{{50, 50}, {99, 99}, {100, 100}, {1, 1}} {
		if got := percentile(d, tc.q); got != time.Duration(tc.want) {
			t.Errorf("p%d of 1..100 = %d, want %d", tc.q, got, tc.want)
		}
	}
	if got := percentile(d[:3], 50); got != 2 {
		t.Errorf("p50 of 1..3 = %d, want 2", got)
	}
}

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		wantErr  bool
	}{
		{"least-connections", "least-connections", false},
		{"consistent-hash/path", "consistent-hash HASH_KEY=path", false},
		{"consistent-hash/path/2", "consistent-hash HASH_KEY=path c=2", false},
		{"consistent-hash/path/x", "", true},
		{"", "", true},
		{"a/b/1/2", "", true},
	} {
		sp, err := parseSpec(tc.in)
		if (err != nil) != tc.wantErr || (err == nil && fmt.Sprint(sp) != tc.want) {
			t.Errorf("parseSpec(%q) = %v, %v; want %q, error %v", tc.in, sp, err, tc.want, tc.wantErr)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
