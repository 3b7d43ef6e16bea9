package forecast

import (
	"math"
	"testing"
	"time"
)

var day5m = Bucketing{Bucket: 5 * time.Minute, Period: 24 * time.Hour, Days: 7}

func TestSlot(t *testing.T) {
	at := time.Date(1970, 1, 2, 8, 7, 0, 0, time.UTC)
	if got := day5m.Slot(at); got != (Slot{Period: 1, Bucket: 97}) {
		t.Fatalf("Slot(%s) = %+v, want period 1 bucket 97", at, got)
	}
	if got := day5m.Start(Slot{Period: 1, Bucket: 97}); !got.Equal(time.Date(1970, 1, 2, 8, 5, 0, 0, time.UTC)) {
		t.Fatalf("Start = %s", got)
	}
	// Before the epoch the period is still the one that holds t.
	if got := day5m.Slot(time.Date(1969, 12, 31, 23, 59, 0, 0, time.UTC)); got != (Slot{Period: -1, Bucket: 287}) {
		t.Fatalf("Slot before the epoch = %+v", got)
	}
	// A time zone does not move the slot: periods are UTC days.
	tokyo := time.FixedZone("JST", 9*3600)
	if day5m.Slot(at.In(tokyo)) != day5m.Slot(at) {
		t.Fatal("the slot depends on the time's zone")
	}
}

func TestPredict(t *testing.T) {
	d := func(day, hour, minute, sec int) time.Time {
		return time.Date(2026, 12, day, hour, minute, sec, 0, time.UTC)
	}
	// Yesterday (the 6th): 4 req/s at 07:55 and 08:00, 40 at 08:05, 12 at
	// 08:10. Two days ago: 20 at 08:00. Eight days ago (outside Days 7):
	// 90 at 08:05.
	h := History{
		d(6, 7, 55, 0): 4, d(6, 8, 0, 0): 4, d(6, 8, 5, 0): 40, d(6, 8, 10, 0): 12,
		d(5, 8, 0, 0): 20,
		time.Date(2026, 11, 28, 8, 5, 0, 0, time.UTC): 90,
	}
	lead := 10 * time.Second
	for _, c := range []struct {
		name string
		t    time.Time
		lead time.Duration
		want float64
	}{
		{"07:50: 07:50 and 07:55 buckets", d(7, 7, 50, 0), lead, 4},
		{"07:54:49 +10s is still in 07:50", d(7, 7, 54, 49), lead, 4},
		{"07:54:50 +10s is 07:55: its next bucket, 08:00, had 20 two days ago", d(7, 7, 54, 50), lead, 20},
		{"08:00: 08:00 and 08:05 buckets, 40 yesterday", d(7, 8, 0, 0), lead, 40},
		{"07:59:55 with no lead: 07:55 and 08:00", d(7, 7, 59, 55), 0, 20},
		{"07:59:55 with 10s: the lead reaches 08:00, and 08:05 next", d(7, 7, 59, 55), lead, 40},
		{"08:10: 12 and nothing after", d(7, 8, 10, 0), lead, 12},
		{"08:15: nothing recorded", d(7, 8, 15, 0), lead, 0},
		{"the 90 of eight days ago is forgotten", d(7, 8, 5, 0), 0, 40},
	} {
		if got := h.Predict(day5m, c.t, c.lead); got != c.want {
			t.Errorf("%s: Predict = %g, want %g", c.name, got, c.want)
		}
	}
	// The last bucket of a period looks ahead into the first bucket.
	wrap := History{d(6, 0, 0, 0): 7}
	if got := wrap.Predict(day5m, d(7, 23, 56, 0), 0); got != 7 {
		t.Errorf("23:56 does not see 00:00's rate: %g", got)
	}
	// Days 1 reads yesterday and today only.
	one := day5m
	one.Days = 1
	if got := h.Predict(one, d(7, 8, 0, 0), 0); got != 40 {
		t.Errorf("Days 1 at 08:00: %g, want yesterday's 40", got)
	}
	if got := h.Predict(one, d(7, 7, 55, 0), 0); got != 4 {
		t.Errorf("Days 1 at 07:55: %g, want 4 (the 20 is two days old)", got)
	}
	if got := (History{}).Predict(day5m, d(7, 8, 0, 0), lead); got != 0 {
		t.Errorf("empty history predicts %g", got)
	}
}

// A history recorded with 5m buckets still predicts after the bucket grew
// to 10m: each rate lands in the bucket that holds its start.
func TestPredictAfterBucketChange(t *testing.T) {
	h := History{time.Date(2026, 12, 6, 8, 5, 0, 0, time.UTC): 40}
	b := Bucketing{Bucket: 10 * time.Minute, Period: 24 * time.Hour, Days: 7}
	if got := h.Predict(b, time.Date(2026, 12, 7, 7, 55, 0, 0, time.UTC), 0); got != 40 {
		t.Errorf("Predict = %g, want 40 (08:05 is in the 08:00 bucket, the next of 07:50)", got)
	}
}

func TestTrim(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	h := History{
		time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC):   1, // 7 periods back: kept
		time.Date(2026, 11, 29, 23, 55, 0, 0, time.UTC): 2, // 8 back: dropped
		time.Date(2026, 12, 7, 11, 0, 0, 0, time.UTC):   3,
	}
	if o := day5m.Oldest(now); !o.Equal(time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("Oldest = %s", o)
	}
	h.Trim(day5m, now)
	if len(h) != 2 || h[time.Date(2026, 11, 29, 23, 55, 0, 0, time.UTC)] != 0 {
		t.Fatalf("after Trim: %v", h)
	}
}

func TestRecorder(t *testing.T) {
	at := func(m, s int) time.Time { return time.Date(2026, 12, 7, 8, m, s, 0, time.UTC) }
	r := Recorder{Bucketing: day5m}
	steps := []struct {
		t     time.Time
		rate  float64
		done  bool
		start time.Time
		mean  float64
	}{
		{at(1, 0), 10, false, time.Time{}, 0},
		{at(3, 0), 20, false, time.Time{}, 0},
		{at(0, 30), 99, false, time.Time{}, 0}, // from before the open bucket's last reading, same bucket: counts
		{at(5, 1), 50, true, at(0, 0), 43},     // (10+20+99)/3
		{at(4, 0), 7, false, time.Time{}, 0},   // an earlier bucket: ignored
		{at(20, 0), math.NaN(), true, at(5, 0), 50},
		{at(25, 0), 1, true, at(20, 0), 0}, // NaN read as 0
	}
	for i, s := range steps {
		start, mean, done := r.Add(s.t, s.rate)
		if done != s.done || !start.Equal(s.start) || mean != s.mean {
			t.Errorf("step %d: Add(%s, %g) = %s, %g, %v; want %s, %g, %v", i, s.t.Format("15:04:05"), s.rate,
				start.Format("15:04"), mean, done, s.start.Format("15:04"), s.mean, s.done)
		}
	}
	r.Reset()
	if _, _, done := r.Add(at(30, 0), 1); done {
		t.Error("a reset recorder closed a bucket")
	}
}
