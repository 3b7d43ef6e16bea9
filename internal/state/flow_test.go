package state_test

import (
	"testing"
	"time"

	"lbscale/internal/state"
)

func TestSumFlows(t *testing.T) {
	ms := time.Millisecond
	for _, tc := range []struct {
		name    string
		in      []state.Flow
		rate    float64
		service time.Duration
	}{
		{"none", nil, 0, 0},
		{"weighted by served", []state.Flow{{30, 30, 200 * ms}, {10, 10, 600 * ms}}, 40, 300 * ms},
		{"a balancer that served none does not dilute", []state.Flow{{30, 30, 200 * ms}, {0, 0, 900 * ms}}, 30, 200 * ms},
		{"nothing served: longest last-known mean", []state.Flow{{5, 0, 200 * ms}, {0, 0, 900 * ms}}, 5, 900 * ms},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rate, service := state.SumFlows(tc.in)
			if rate != tc.rate || service != tc.service {
				t.Fatalf("SumFlows = %v, %v; want %v, %v", rate, service, tc.rate, tc.service)
			}
		})
	}
}
