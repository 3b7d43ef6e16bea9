package config

import "testing"

func TestGCSettings(t *testing.T) {
	env := func(kv ...string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1], true
				}
			}
			return "", false
		}
	}
	for _, tc := range []struct {
		name  string
		env   func(string) (string, bool)
		limit int64
		want  GC
	}{
		{"nothing set, no container limit", env(), 0, GC{Percent: 400}},
		{"nothing set, 1 GiB container", env(), 1 << 30, GC{Percent: 400, MemoryLimit: (1 << 30) / 10 * 9}},
		{"GOGC set: the user's choice stands", env("GOGC", "100"), 1 << 30, GC{}},
		{"GOGC=off stands too", env("GOGC", "off"), 0, GC{}},
		{"GOGC empty counts as unset", env("GOGC", ""), 0, GC{Percent: 400}},
		{"GOMEMLIMIT set: kept, GOGC still raised", env("GOMEMLIMIT", "300MiB"), 1 << 30, GC{Percent: 400}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := GCSettings(tc.env, tc.limit); got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"536870912\n":           536870912,
		"max\n":                 0,
		"9223372036854771712\n": 0, // cgroup v1's "none"
		"":                      0,
		"-1":                    0,
		"garbage":               0,
	} {
		if got := parseMemoryLimit(in); got != want {
			t.Errorf("parseMemoryLimit(%q) = %d, want %d", in, got, want)
		}
	}
}
