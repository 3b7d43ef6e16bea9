package server

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// FuzzCost parses arbitrary raw query strings the way serveHello does. A
// query that parses yields a cost within [0, MaxCostMS] for both knobs, the
// configured defaults when a knob is absent, or an error naming the knob.
func FuzzCost(f *testing.F) {
	for _, q := range []string{
		"", "work_ms=5", "sleep_ms=0&work_ms=0", "work_ms=60000", "work_ms=60001",
		"work_ms=-1", "work_ms=1.5", "work_ms=", "work_ms=%zz", "sleep_ms=5;x",
		"work_ms=5&work_ms=6", "sleep_ms=99999999999999999999", "work_ms=+7",
		"sleep_ms=0x10", "work_ms=%2B3", "other=1",
	} {
		f.Add(q)
	}
	def := Config{Work: 3 * time.Millisecond, Sleep: 7 * time.Millisecond}
	s := New(def, nil)
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return // answered 400 "malformed query" before cost is asked
		}
		work, sleep, err := s.cost(q)
		if err != nil {
			msg := err.Error()
			if !strings.Contains(msg, ParamWorkMS) && !strings.Contains(msg, ParamSleepMS) {
				t.Fatalf("%q: error %q names neither parameter", raw, msg)
			}
			return
		}
		for _, c := range []struct {
			name string
			got  time.Duration
			def  time.Duration
		}{{ParamWorkMS, work, def.Work}, {ParamSleepMS, sleep, def.Sleep}} {
			if c.got < 0 || c.got > MaxCostMS*time.Millisecond || c.got%time.Millisecond != 0 {
				t.Fatalf("%q: %s = %v", raw, c.name, c.got)
			}
			if !q.Has(c.name) && c.got != c.def {
				t.Fatalf("%q: %s absent but %v, want the default %v", raw, c.name, c.got, c.def)
			}
		}
	})
}
