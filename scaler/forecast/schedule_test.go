package forecast

import (
	"strings"
	"testing"
	"time"
)

func TestScheduleFloor(t *testing.T) {
	// 2026-12-07 is a Monday.
	at := func(day, hour, minute int) time.Time { return time.Date(2026, 12, day, hour, minute, 0, 0, time.UTC) }
	s, err := ParseSchedule("0 8 * * 1-5 10h 4; 0 20 * * * 30m 2")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		t    time.Time
		want int
	}{
		{"before the weekday entry", at(7, 7, 59), 0},
		{"the minute it fires", at(7, 8, 0), 4},
		{"inside it", at(7, 13, 30), 4},
		{"its last minute", at(7, 17, 59), 4},
		{"at its end: the 08:00 firing is 10h old", at(7, 18, 0), 0},
		{"the daily entry on a weekday", at(7, 20, 15), 2},
		{"the daily entry ends", at(7, 20, 30), 0},
		{"Saturday morning: weekdays only", at(12, 9, 0), 0},
		{"Saturday evening: every day", at(12, 20, 0), 2},
	} {
		if got := s.Floor(c.t); got != c.want {
			t.Errorf("%s: Floor(%s) = %d, want %d", c.name, c.t.Format("Mon 15:04"), got, c.want)
		}
	}
}

// Overlapping entries do not add up: the largest active one is the floor.
// An entry longer than the gap between its firings holds across midnight.
func TestScheduleOverlap(t *testing.T) {
	s, err := ParseSchedule("0 22 * * * 4h 3;0 0 * * * 1h 5")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		t    time.Time
		want int
	}{
		{time.Date(2026, 12, 7, 23, 0, 0, 0, time.UTC), 3},
		{time.Date(2026, 12, 8, 0, 30, 0, 0, time.UTC), 5}, // both active: 5, not 8
		{time.Date(2026, 12, 8, 1, 30, 0, 0, time.UTC), 3}, // the 22:00 entry runs to 02:00
		{time.Date(2026, 12, 8, 2, 0, 0, 0, time.UTC), 0},
	} {
		if got := s.Floor(c.t); got != c.want {
			t.Errorf("Floor(%s) = %d, want %d", c.t.Format("15:04"), got, c.want)
		}
	}
	if s.Most() != 5 {
		t.Errorf("Most = %d, want 5", s.Most())
	}
}

// A CRON_TZ= prefix reads the spec in that zone: 08:00 in Tokyo is 23:00
// UTC the day before.
func TestScheduleTimeZone(t *testing.T) {
	s, err := ParseSchedule("CRON_TZ=Asia/Tokyo 0 8 * * * 1h 2")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Floor(time.Date(2026, 12, 7, 23, 30, 0, 0, time.UTC)); got != 2 {
		t.Errorf("23:30 UTC = 08:30 Tokyo: floor %d, want 2", got)
	}
	if got := s.Floor(time.Date(2026, 12, 7, 8, 30, 0, 0, time.UTC)); got != 0 {
		t.Errorf("08:30 UTC: floor %d, want 0", got)
	}
}

func TestParseSchedule(t *testing.T) {
	for _, ok := range []string{"", " ; ", "@daily 1h 1", "*/15 * * * * 5m 0", "TZ=UTC 0 8 * * 1-5 10h 4;"} {
		if _, err := ParseSchedule(ok); err != nil {
			t.Errorf("ParseSchedule(%q): %v", ok, err)
		}
	}
	for _, c := range []struct{ in, says string }{
		{"0 8 * * *", "duration"},
		{"10h 4", "want <cron spec>"},
		{"0 8 * * * ten 4", "duration"},
		{"0 8 * * * 0s 4", "duration"},
		{"0 8 * * * 200h 4", "duration"},
		{"0 8 * * * 1h -1", "replicas"},
		{"0 8 * * * 1h x", "replicas"},
		{"0 25 * * * 1h 2", "cron spec"},
		{"0 8 * * 1-5 1h 2; nonsense 1h 2", "entry 2"},
		{"CRON_TZ=Nowhere/Else 0 8 * * * 1h 2", "cron spec"},
	} {
		_, err := ParseSchedule(c.in)
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("ParseSchedule(%q) = %v, want an error saying %q", c.in, err, c.says)
		}
	}
	if s, _ := ParseSchedule(""); s.Floor(time.Now()) != 0 || len(s.Entries) != 0 {
		t.Error("the empty schedule has a floor")
	}
}
