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
	// One value read as every kind a Reader offers: the same variable
	// declared once per kind, each in a table of its own.
	const name = "SOME_VAR"
	tables := map[string]Table{
		"Int":      {{Name: name, Default: 5, Min: -10, Max: 100}},
		"Float":    {{Name: name, Default: 0.5, Min: 0.0, Max: 1.0}},
		"Duration": {{Name: name, Default: time.Second, Min: time.Millisecond, Max: time.Hour}},
		"Bool":     {{Name: name, Default: false}},
		"OneOf":    {{Name: name, Default: "a", OneOf: []string{"a", "b"}}},
		"Addr":     {{Name: name, Default: ":1"}},
		"URL":      {{Name: name, OneOf: []string{"redis", "rediss"}}},
		"List":     {{Name: name}},
	}
	f.Fuzz(func(t *testing.T, v string) {
		reader := func(kind string) *Reader { return New(FromMap(map[string]string{name: v}), tables[kind]) }
		var r *Reader
		checks := []struct {
			what string
			read func() bool // reports whether the value returned is acceptable
		}{
			{"Int", func() bool { n := r.Int(name); return n >= -10 && n <= 100 }},
			{"Float", func() bool {
				x := r.Float(name)
				return !math.IsNaN(x) && x >= 0 && x <= 1
			}},
			{"Duration", func() bool {
				d := r.Duration(name)
				return d >= time.Millisecond && d <= time.Hour
			}},
			{"Bool", func() bool { r.Bool(name); return true }},
			{"OneOf", func() bool { s := r.OneOf(name); return s == "a" || s == "b" }},
			{"Addr", func() bool { return HostPort(r.Addr(name)) == nil }},
			{"URL", func() bool {
				u := r.URL(name)
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
			r = reader(c.what)
			if !c.read() {
				t.Fatalf("%s(%q) returned a value outside its range", c.what, v)
			}
			if err := r.Err(); err != nil && !strings.HasPrefix(err.Error(), name+": ") {
				t.Fatalf("%s(%q): error %q does not start with the variable's name", c.what, v, err)
			}
		}
	})
}
