package policy

import (
	"net/http"
	"testing"
)

func TestHostOnly(t *testing.T) {
	cases := map[string]string{
		"192.0.2.1:8080":     "192.0.2.1",
		"[2001:db8::1]:443":  "2001:db8::1",
		"[2001:db8::1]":      "2001:db8::1",
		"2001:db8::1":        "2001:db8::1",
		"192.0.2.1":          "192.0.2.1",
		"":                   "",
		"[broken":            "[broken",
		"unix-socket-peer:0": "unix-socket-peer",
	}
	for in, want := range cases {
		if got := hostOnly(in); got != want {
			t.Errorf("hostOnly(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClientIP(t *testing.T) {
	cases := []struct {
		remote string
		xff    []string
		trust  bool
		want   string
	}{
		{"10.0.0.1:5", nil, true, "10.0.0.1"},
		{"10.0.0.1:5", []string{"203.0.113.1, 10.0.0.9"}, false, "10.0.0.1"},
		{"10.0.0.1:5", []string{"203.0.113.1, 10.0.0.9"}, true, "203.0.113.1"},
		{"10.0.0.1:5", []string{"  203.0.113.2  "}, true, "203.0.113.2"},
		{"10.0.0.1:5", []string{"203.0.113.3", "198.51.100.1"}, true, "203.0.113.3"},
		{"10.0.0.1:5", []string{" , 198.51.100.1"}, true, "10.0.0.1"},
		{"10.0.0.1:5", []string{""}, true, "10.0.0.1"},
	}
	for _, tc := range cases {
		r := &http.Request{RemoteAddr: tc.remote, Header: http.Header{}}
		if tc.xff != nil {
			r.Header["X-Forwarded-For"] = tc.xff
		}
		if got := clientIP(r, tc.trust); got != tc.want {
			t.Errorf("clientIP(%q, xff %q, trust %v) = %q, want %q", tc.remote, tc.xff, tc.trust, got, tc.want)
		}
	}
}

func TestCookieValue(t *testing.T) {
	cases := []struct {
		lines []string
		name  string
		want  string
		ok    bool
	}{
		{[]string{"a=1; s=xyz; b=2"}, "s", "xyz", true},
		{[]string{"s=xyz"}, "s", "xyz", true},
		{[]string{"a=1", "s=second-line"}, "s", "second-line", true},
		{[]string{`s="quoted"`}, "s", "quoted", true},
		{[]string{"ss=1; s2=2"}, "s", "", false},
		{[]string{"s="}, "s", "", false},
		{[]string{"s"}, "s", "", false},
		{[]string{"S=upper"}, "s", "", false},
		{[]string{"s=first; s=second"}, "s", "first", true},
		{[]string{" ;; s=after-empty ; "}, "s", "after-empty", true},
		{nil, "s", "", false},
	}
	for _, tc := range cases {
		h := http.Header{}
		if tc.lines != nil {
			h["Cookie"] = tc.lines
		}
		got, ok := cookieValue(h, tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("cookieValue(%q, %q) = %q, %v; want %q, %v", tc.lines, tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestDrawIntnUniform(t *testing.T) {
	src := newLockedSource(nil)
	for _, n := range []int{1, 2, 3, 7, 64} {
		d := draw{src: src}
		counts := make([]int, n)
		const draws = 70000
		for range draws {
			v := d.intn(n)
			if v < 0 || v >= n {
				t.Fatalf("intn(%d) = %d", n, v)
			}
			counts[v]++
		}
		for v, c := range counts {
			if exp := draws / n; c < exp*8/10 || c > exp*12/10 {
				t.Errorf("intn(%d): %d drawn %d times, want about %d", n, v, c, exp)
			}
		}
	}
}
