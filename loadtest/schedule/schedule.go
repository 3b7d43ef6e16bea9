package schedule

import (
	"math"
	"time"
)

// Schedule yields the intended send time of each request of a profile, in
// order. The k-th request (k = 0, 1, …) is due when the integral of the rate
// reaches k + ½: each request sits in the middle of its share of the
// timeline, so a constant 50 req/s over 1 s yields exactly 50 times, at
// 10 ms, 30 ms, … 990 ms, and a stretch at rate 0 yields none.
//
// A Schedule is not safe for concurrent use; the open-loop dispatcher owns it.
type Schedule struct {
	prof  Profile
	start time.Time
	limit int64 // 0: no limit

	k    int64   // index of the next request
	seg  int     // segment the next request falls in (or past)
	base float64 // requests offered before prof[seg].Start
}

// New returns the schedule of p starting at start. limit caps the number of
// requests (the --requests flag); 0 means the profile's end is the only bound.
func New(p Profile, start time.Time, limit int64) *Schedule {
	return &Schedule{prof: p, start: start, limit: limit}
}

// Next returns the intended time of the next request, or false when the
// profile (or the limit) is exhausted.
func (s *Schedule) Next() (time.Time, bool) {
	if s.limit > 0 && s.k >= s.limit {
		return time.Time{}, false
	}
	want := float64(s.k) + 0.5
	for s.seg < len(s.prof) {
		seg := s.prof[s.seg]
		length := (seg.End - seg.Start).Seconds()
		if x, ok := solve(seg.From, seg.slope(), want-s.base, length); ok {
			s.k++
			return s.start.Add(seg.Start + time.Duration(x*float64(time.Second))), true
		}
		s.base += seg.count(length)
		s.seg++
	}
	return time.Time{}, false
}

// Tail reports when the profile ends and whether the run should last until
// then. A profile may end in a stretch at rate 0 (a cool-down whose purpose is
// to watch the system settle), so the last request is not the end of the run;
// but when the --requests limit stopped the schedule, the run ends with it.
func (s *Schedule) Tail() (end time.Time, wait bool) {
	return s.start.Add(s.prof.Duration()), s.limit == 0 || s.k < s.limit
}

// Sent is how many times Next has returned true.
func (s *Schedule) Sent() int64 { return s.k }

// solve finds x in [0, length) with a·x + b·x²/2 = c, the point where a
// linear rate a + b·x has offered c requests. It uses the form
// 2c / (a + √(a² + 2bc)), which stays exact when b is 0 and does not cancel
// when a is large.
func solve(a, b, c, length float64) (float64, bool) {
	if c <= 0 {
		return 0, length > 0
	}
	disc := a*a + 2*b*c
	if disc < 0 {
		return 0, false // a falling rate reaches 0 before offering c
	}
	den := a + math.Sqrt(disc)
	if den <= 0 {
		return 0, false
	}
	x := 2 * c / den
	return x, x < length
}
