// Package schedule turns a rate profile into intended send times.
//
// It is pure: a Profile is a list of linear segments of request rate over
// elapsed time, and a Schedule walks the integral of that rate, yielding the
// instant at which the k-th request is due. Nothing here reads a clock; the
// caller supplies the start time, so the same profile always yields the same
// times and tests need no sleeping.
package schedule

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Segment is a stretch of the profile over which the rate changes linearly
// from From to To requests per second (From == To: constant rate).
type Segment struct {
	Start, End time.Duration
	From, To   float64
}

// Profile is the offered rate over elapsed time: contiguous segments starting
// at 0. Past the last segment the rate is zero, so a profile also bounds the
// run's length.
type Profile []Segment

// Duration is where the profile ends.
func (p Profile) Duration() time.Duration {
	if len(p) == 0 {
		return 0
	}
	return p[len(p)-1].End
}

// Rate is the offered rate at elapsed time t (requests per second).
func (p Profile) Rate(t time.Duration) float64 {
	for _, s := range p {
		if t >= s.Start && t < s.End {
			return s.rate(t - s.Start)
		}
	}
	return 0
}

// Expected is the number of requests the profile offers in [from, to): the
// integral of the rate, used for the "offered" column and by tests.
func (p Profile) Expected(from, to time.Duration) float64 {
	var n float64
	for _, s := range p {
		a, b := max(from, s.Start), min(to, s.End)
		if b <= a {
			continue
		}
		n += s.count((b - s.Start).Seconds()) - s.count((a - s.Start).Seconds())
	}
	return n
}

// Validate reports a profile that cannot be driven: gaps, negative rates, or
// no traffic at all.
func (p Profile) Validate() error {
	if len(p) == 0 {
		return errors.New("profile is empty")
	}
	var prev time.Duration
	positive := false
	for i, s := range p {
		switch {
		case s.Start != prev:
			return fmt.Errorf("segment %d starts at %v, want %v", i, s.Start, prev)
		case s.End < s.Start:
			return fmt.Errorf("segment %d ends before it starts", i)
		case s.From < 0 || s.To < 0 || math.IsNaN(s.From) || math.IsNaN(s.To) || math.IsInf(s.From, 0) || math.IsInf(s.To, 0):
			return fmt.Errorf("segment %d has an invalid rate", i)
		}
		if s.End > s.Start && (s.From > 0 || s.To > 0) {
			positive = true
		}
		prev = s.End
	}
	if !positive {
		return errors.New("profile offers no requests (every rate is 0)")
	}
	return nil
}

func (s Segment) slope() float64 {
	d := (s.End - s.Start).Seconds()
	if d <= 0 {
		return 0
	}
	return (s.To - s.From) / d
}

func (s Segment) rate(t time.Duration) float64 { return s.From + s.slope()*t.Seconds() }

// count is the integral of the rate over the first x seconds of the segment.
func (s Segment) count(x float64) float64 { return s.From*x + s.slope()*x*x/2 }

// Constant offers rate for d.
func Constant(rate float64, d time.Duration) Profile {
	return Profile{{Start: 0, End: d, From: rate, To: rate}}
}

// Ramp offers a rate rising (or falling) linearly from `from` to `to` over d.
func Ramp(from, to float64, d time.Duration) Profile {
	return Profile{{Start: 0, End: d, From: from, To: to}}
}

// Step offers start, then adds by every `every` until d: a staircase, the
// usual way to find where a system stops keeping up. The last step is cut
// short if d is not a multiple of every.
func Step(start, by float64, every, d time.Duration) Profile {
	if every <= 0 {
		return Constant(start, d)
	}
	var p Profile
	rate := start
	for t := time.Duration(0); t < d; {
		// Not t+every, which overflows for long runs and large steps.
		end := d
		if every < d-t {
			end = t + every
		}
		p = append(p, Segment{Start: t, End: end, From: rate, To: rate})
		rate = max(rate+by, 0)
		t = end
	}
	return p
}

// Spike offers base, jumps to peak at `at` for `length`, then returns to base
// until d: the burst an autoscaler must absorb. Parts of the spike past d are
// cut off.
func Spike(base, peak float64, at, length, d time.Duration) Profile {
	at = min(max(at, 0), d)
	end := d
	if length < d-at { // not at+length, which may overflow
		end = at + max(length, 0)
	}
	var p Profile
	add := func(a, b time.Duration, r float64) {
		if b > a {
			p = append(p, Segment{Start: a, End: b, From: r, To: r})
		}
	}
	add(0, at, base)
	add(at, end, peak)
	add(end, d, base)
	return p
}

// Extend holds the last rate of p until d (a no-op when p already reaches d)
// and cuts p at d when it is longer, so a profile file can be combined with
// --duration.
func (p Profile) Extend(d time.Duration) Profile {
	var out Profile
	for _, s := range p {
		if s.Start >= d {
			break
		}
		if s.End > d {
			s.To = s.rate(d - s.Start)
			s.End = d
		}
		out = append(out, s)
	}
	if end := out.Duration(); end < d && len(out) > 0 {
		last := out[len(out)-1].To
		out = append(out, Segment{Start: end, End: d, From: last, To: last})
	}
	return out
}

// Read parses a profile file: one "time,rate" row per line, time a Go
// duration (or plain seconds) from the start of the run, rate in requests per
// second. The rate changes linearly between rows; two rows with the same time
// make an instant step. Blank lines, lines starting with '#', and a header row
// "time,rate" are skipped. Times must not decrease; the first row must be at 0.
func Read(r io.Reader) (Profile, error) {
	type point struct {
		t    time.Duration
		rate float64
	}
	var pts []point
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Split(text, ",")
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"time,rate\", got %q", line, text)
		}
		ts, rs := strings.TrimSpace(fields[0]), strings.TrimSpace(fields[1])
		if len(pts) == 0 && strings.EqualFold(ts, "time") {
			continue // header
		}
		t, err := parseOffset(ts)
		if err != nil {
			return nil, fmt.Errorf("line %d: time %q: %w", line, ts, err)
		}
		rate, err := strconv.ParseFloat(rs, 64)
		if err != nil || rate < 0 || math.IsNaN(rate) || math.IsInf(rate, 0) {
			return nil, fmt.Errorf("line %d: rate %q: want a number >= 0", line, rs)
		}
		if len(pts) == 0 && t != 0 {
			return nil, fmt.Errorf("line %d: the first row must be at time 0, got %v", line, t)
		}
		if len(pts) > 0 && t < pts[len(pts)-1].t {
			return nil, fmt.Errorf("line %d: time %v goes back before %v", line, t, pts[len(pts)-1].t)
		}
		pts = append(pts, point{t, rate})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read profile: %w", err)
	}
	if len(pts) < 2 {
		return nil, errors.New("profile needs at least two rows (start and end)")
	}
	var p Profile
	for i := 1; i < len(pts); i++ {
		a, b := pts[i-1], pts[i]
		if b.t == a.t {
			continue // an instant step: the next segment starts from b.rate
		}
		p = append(p, Segment{Start: a.t, End: b.t, From: a.rate, To: b.rate})
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// maxOffsetSeconds is the longest time a Duration holds, in seconds (about
// 292 years).
const maxOffsetSeconds = float64(math.MaxInt64) / float64(time.Second)

func parseOffset(s string) (time.Duration, error) {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
			return 0, errors.New("want a time >= 0")
		}
		// Past this, converting to a Duration overflows (to a negative time
		// on amd64), and the row would be reported as going back in time.
		if f >= maxOffsetSeconds {
			return 0, fmt.Errorf("want at most %.0f seconds", maxOffsetSeconds)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("want a duration such as 30s or a number of seconds")
	}
	if d < 0 {
		return 0, errors.New("want a time >= 0")
	}
	return d, nil
}
