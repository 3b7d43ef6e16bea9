package forecast

import (
	"math"
	"time"
)

// Bucketing cuts time into periods (a day, a week) and each period into
// buckets of equal length: the learned floor compares the same bucket of
// different periods. Periods are counted from the Unix epoch, so a day
// runs from 00:00 UTC (a week, 168h, from Thursday 00:00 UTC).
type Bucketing struct {
	// Bucket is FORECAST_BUCKET, Period FORECAST_PERIOD (a multiple of
	// Bucket); Days is FORECAST_DAYS, how many past periods count.
	Bucket, Period time.Duration
	Days           int
}

// Slot is one bucket of one period.
type Slot struct {
	Period int64
	Bucket int
}

// Slot is the bucket that holds t. E.g. 5m buckets of 24h: 1970-01-02
// 08:07 UTC is period 1, bucket 97 (08:05–08:10).
func (b Bucketing) Slot(t time.Time) Slot {
	ns := t.UnixNano()
	p := floorDiv(ns, int64(b.Period))
	return Slot{Period: p, Bucket: int((ns - p*int64(b.Period)) / int64(b.Bucket))}
}

// Start is when slot s begins.
func (b Bucketing) Start(s Slot) time.Time {
	return time.Unix(0, s.Period*int64(b.Period)+int64(s.Bucket)*int64(b.Bucket)).UTC()
}

// buckets is the number of buckets in a period.
func (b Bucketing) buckets() int { return int(b.Period / b.Bucket) }

// Oldest is the start of the oldest period a prediction at now reads: the
// store may forget every bucket before it.
func (b Bucketing) Oldest(now time.Time) time.Time {
	return b.Start(Slot{Period: b.Slot(now).Period - int64(b.Days)})
}

func floorDiv(a, n int64) int64 {
	q := a / n
	if a%n != 0 && (a < 0) != (n < 0) {
		q--
	}
	return q
}

// History is the mean offered arrival rate (requests per second) recorded
// in each bucket, by the start of the bucket. Keying by time rather than by
// slot keeps a history readable after FORECAST_BUCKET or FORECAST_PERIOD
// changed: each rate lands in the new bucket that holds its start.
type History map[time.Time]float64

// Predict is the arrival rate the history expects at t + lead: the highest
// rate any of the last Days periods (and the current one) recorded in the
// bucket that holds t + lead or in the one after it.
//
// Why the highest rather than a mean: the floor exists to have containers
// up before a rise, and a rise that came on one day of the last week is
// one that may come today; a floor too high costs idle containers until
// scale-down, one too low costs cold starts in the requests' latency.
// Why the next bucket too: a bucket's rate is its mean, so a rise at 08:04
// inside the 08:00–08:05 bucket reads as a fraction of itself there and in
// full only in 08:05's; looking one bucket ahead has the full rate in place
// before the rise, whenever within its bucket it came.
// Why t + lead: lead is the cold start, so containers started now for
// that bucket are ready when it begins.
//
// E.g. 5m buckets of 24h, Days 7, yesterday 08:00–08:05 at 4 req/s and
// 08:05–08:10 at 40: at 07:58 with a 10 s lead, 07:58:10 is in the 07:55
// bucket and the next is 08:00's: 4. At 08:00 it is 40 (the next bucket is
// 08:05's), so the pool is sized for 40 five minutes ahead of the rise. A
// rate of 90 recorded 8 days ago does not count.
func (h History) Predict(b Bucketing, t time.Time, lead time.Duration) float64 {
	if b.Bucket <= 0 || b.Period < b.Bucket {
		return 0
	}
	at := b.Slot(t.Add(lead))
	n := b.buckets()
	next := (at.Bucket + 1) % n
	oldest := b.Slot(t).Period - int64(b.Days)
	var rate float64
	for start, r := range h {
		s := b.Slot(start)
		if s.Period < oldest || (s.Bucket != at.Bucket && s.Bucket != next) || math.IsNaN(r) {
			continue
		}
		rate = max(rate, r)
	}
	return rate
}

// Trim forgets the buckets older than the oldest period a prediction at
// now reads.
func (h History) Trim(b Bucketing, now time.Time) {
	oldest := b.Oldest(now)
	for start := range h {
		if start.Before(oldest) {
			delete(h, start)
		}
	}
}

// Recorder accumulates the current bucket's arrival rates, and hands the
// bucket's mean over once a reading falls in a later bucket. Only the
// leader records, one reading per poll; a reading that comes late (a
// leader that took over mid-bucket) makes a mean of what it saw.
type Recorder struct {
	Bucketing Bucketing
	start     time.Time // the open bucket's start (zero: none open)
	sum       float64
	n         int
}

// Add records rate at t. When t is in a later bucket than the open one,
// it closes that one and returns its start and mean rate (done true), and
// opens t's bucket. Readings from before the open bucket are ignored.
//
// E.g. 5m buckets: 10 at 08:01, 20 at 08:03, then 50 at 08:05:01 → done
// (08:00, 15); the 08:05 bucket now holds 50.
func (r *Recorder) Add(t time.Time, rate float64) (start time.Time, mean float64, done bool) {
	if math.IsNaN(rate) || math.IsInf(rate, 0) || rate < 0 {
		rate = 0
	}
	s := r.Bucketing.Start(r.Bucketing.Slot(t))
	switch {
	case r.start.IsZero():
		r.start = s
	case s.Before(r.start):
		return time.Time{}, 0, false
	case s.After(r.start):
		start, mean, done = r.start, r.sum/float64(r.n), r.n > 0
		r.start, r.sum, r.n = s, 0, 0
	}
	r.sum += rate
	r.n++
	return start, mean, done
}

// Reset forgets the open bucket (a leader stepping down leaves it to the
// next).
func (r *Recorder) Reset() { r.start, r.sum, r.n = time.Time{}, 0, 0 }
