package envconf

import (
	"math"
	"strings"
	"testing"
	"time"
)

// FuzzReader reads one arbitrary value as every type a Reader offers. Each
// read either returns a value inside the allowed range or the default with
// an error that starts with the variable's name; nothing panics.
func FuzzReader(f *testing.F) {
	for _, s := range []string{
		"", " ", "42", "-1", "1e3", "0x10", "NaN", "+Inf", "-0", "1.5",
		"true", "No", "ON", "250ms", "-1s", "2562047h", "99999999999999999999",
		":8080", "127.0.0.1:9090", "[::1]:80", "http://a:80", "a:0", "a b:80",
		"redis://r:6379/0", "redis://", "%zz", "a,b,,c, ",
	} {
		f.Add(s)
	}
	const name = "SOME_VAR"
	f.Fuzz(func(t *testing.T, v string) {
		r := New(FromMap(map[string]string{name: v}))
		checks := []struct {
			what string
			read func() bool // reports whether the value returned is acceptable
		}{
			{"Int", func() bool { n := r.Int(name, 5, -10, 100); return n >= -10 && n <= 100 }},
			{"Float", func() bool {
				x := r.Float(name, 0.5, 0, 1)
				return !math.IsNaN(x) && x >= 0 && x <= 1
			}},
			{"Duration", func() bool {
				d := r.Duration(name, time.Second, time.Millisecond, time.Hour)
				return d >= time.Millisecond && d <= time.Hour
			}},
			{"Bool", func() bool { r.Bool(name, false); return true }},
			{"OneOf", func() bool { s := r.OneOf(name, "a", "a", "b"); return s == "a" || s == "b" }},
			{"Addr", func() bool { return HostPort(r.Addr(name, ":1")) == nil }},
			{"URL", func() bool {
				u := r.URL(name, "", "redis", "rediss")
				l := strings.ToLower(u) // url.Parse folds the scheme
				return u == "" || strings.HasPrefix(l, "redis://") || strings.HasPrefix(l, "rediss://")
			}},
			{"List", func() bool {
				for _, s := range r.List(name) {
					if s == "" || s != strings.TrimSpace(s) || strings.Contains(s, ",") {
						return false
					}
				}
				return true
			}},
		}
		for _, c := range checks {
			r.errs = nil
			if !c.read() {
				t.Fatalf("%s(%q) returned a value outside its range", c.what, v)
			}
			if err := r.Err(); err != nil && !strings.HasPrefix(err.Error(), name+": ") {
				t.Fatalf("%s(%q): error %q does not start with the variable's name", c.what, v, err)
			}
		}
	})
}
