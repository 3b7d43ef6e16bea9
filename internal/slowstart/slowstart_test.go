package slowstart

import (
	"testing"
	"time"
)

func TestLimit(t *testing.T) {
	cases := []struct {
		limit     int64
		age, ramp time.Duration
		want      int64
	}{
		{8, 0, 4 * time.Second, 1},
		{8, time.Second, 4 * time.Second, 2},
		{8, 2 * time.Second, 4 * time.Second, 4},
		{8, 3900 * time.Millisecond, 4 * time.Second, 8},
		{8, 5 * time.Second, 4 * time.Second, 8},
		{8, -time.Second, 4 * time.Second, 1}, // clock skew: never 0
		{1, 0, 4 * time.Second, 1},
		{8, 0, 0, 8}, // SLOW_START=0 disables the ramp
	}
	for _, tc := range cases {
		if got := Limit(tc.limit, tc.age, tc.ramp); got != tc.want {
			t.Errorf("Limit(%d, %v, %v) = %d, want %d", tc.limit, tc.age, tc.ramp, got, tc.want)
		}
	}
}
