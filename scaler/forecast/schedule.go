// Package forecast holds the autoscaler's floors that do not come from the
// load it measures now: a scheduled minimum (MIN_SCHEDULE) that an
// operator writes down for the hours they know are busy, and a learned one
// (FORECAST) that the pool's own arrival rate at the same time of the
// previous days predicts.
//
// Both exist for the same reason: reactive scaling meets a rise only once
// it is measured, and every container it starts then makes requests wait a
// cold start. A floor that is in place before the rise takes that wait
// away. Both only ever raise the pool's minimum, so a wrong schedule or a
// wrong forecast costs idle containers, never capacity the load needs.
//
// Like package decide, everything here is pure: time comes in as an
// argument, and the controller does the I/O (the history lives in the
// store, see state.Forecasts).
package forecast

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"lbscale/scaler/cronspec"
)

// Entry is one line of a Schedule: from each time Spec fires, for For, at
// least Replicas.
type Entry struct {
	// Spec is the 5-field cron spec as written (with its CRON_TZ= or TZ=
	// prefix, if any).
	Spec     string
	For      time.Duration
	Replicas int
	sched    cron.Schedule
}

// Active reports whether the entry holds at t: its schedule fired in
// (t − For, t]. E.g. "0 8 * * 1-5" for 10h holds on a weekday from 08:00
// to 17:59:59 (at 18:00 the 08:00 firing is 10h old and no longer counts).
func (e Entry) Active(t time.Time) bool {
	next := e.sched.Next(t.Add(-e.For))
	return !next.IsZero() && !next.After(t)
}

// Schedule is a parsed MIN_SCHEDULE: the least replicas by time of day or
// week. The zero Schedule holds no entry and its floor is always 0.
type Schedule struct {
	Entries []Entry
	text    string
}

// maxEntryFor bounds one entry's duration: a week covers every weekly
// pattern, and a longer one would make Next walk back over a long span.
const maxEntryFor = 7 * 24 * time.Hour

// ParseSchedule reads a MIN_SCHEDULE value: entries separated by ";", each
// "<cron spec> <duration> <replicas>", the spec in robfig/cron's standard
// 5-field form (minute hour day-of-month month day-of-week, descriptors
// such as @daily allowed) with an optional CRON_TZ=<zone> or TZ=<zone>
// prefix; without one the spec reads the scaler's local time. E.g.
//
//	0 8 * * 1-5 10h 4; 0 20 * * * 30m 2
//
// holds at least 4 replicas on weekdays from 08:00 to 18:00 and at least 2
// from 20:00 to 20:30 every day. An empty value is the empty Schedule.
func ParseSchedule(s string) (Schedule, error) {
	out := Schedule{text: strings.TrimSpace(s)}
	for i, raw := range strings.Split(s, ";") {
		f := strings.Fields(raw)
		if len(f) == 0 {
			continue
		}
		if len(f) < 3 {
			return Schedule{}, fmt.Errorf("entry %d %q: want <cron spec> <duration> <replicas>", i+1, strings.TrimSpace(raw))
		}
		spec := strings.Join(f[:len(f)-2], " ")
		d, err := time.ParseDuration(f[len(f)-2])
		if err != nil || d <= 0 || d > maxEntryFor {
			return Schedule{}, fmt.Errorf("entry %d %q: duration %q is not a Go duration from 1s to 168h", i+1, strings.TrimSpace(raw), f[len(f)-2])
		}
		n, err := strconv.Atoi(f[len(f)-1])
		if err != nil || n < 0 {
			return Schedule{}, fmt.Errorf("entry %d %q: replicas %q is not a whole number ≥ 0", i+1, strings.TrimSpace(raw), f[len(f)-1])
		}
		sched, err := cronspec.Parse(spec)
		if err != nil {
			return Schedule{}, fmt.Errorf("entry %d %q: cron spec %q: %w", i+1, strings.TrimSpace(raw), spec, err)
		}
		out.Entries = append(out.Entries, Entry{Spec: spec, For: d, Replicas: n, sched: sched})
	}
	return out, nil
}

// String is the value the Schedule was parsed from.
func (s Schedule) String() string { return s.text }

// Most is the highest Replicas of any entry (0 with none): the floor the
// schedule may ever ask for.
func (s Schedule) Most() int {
	n := 0
	for _, e := range s.Entries {
		n = max(n, e.Replicas)
	}
	return n
}

// Floor is the least replicas the schedule asks for at t: the largest
// Replicas of the entries active at t, 0 when none is. Overlapping entries
// do not add up: each says how many the pool needs then, and the largest
// need covers the others.
func (s Schedule) Floor(t time.Time) int {
	n := 0
	for _, e := range s.Entries {
		if e.Replicas > n && e.Active(t) {
			n = e.Replicas
		}
	}
	return n
}
