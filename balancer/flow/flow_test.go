package flow

import (
	"sync"
	"testing"
	"time"
)

// TestWindow drives a counter and its window with a made-up clock.
func TestWindow(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	type step struct {
		at           time.Duration // since t0
		arrive, done int
		each         time.Duration // service of each done request
		rate, served float64
		service      time.Duration
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"first reading has no rate", []step{{0, 5, 0, 0, 0, 0, 0}}},
		{"steady 30/s at 200ms", []step{
			{0, 0, 0, 0, 0, 0, 0},
			{500 * ms, 15, 15, 200 * ms, 30, 30, 200 * ms},
			{1000 * ms, 15, 15, 200 * ms, 30, 30, 200 * ms},
			{1500 * ms, 15, 15, 200 * ms, 30, 30, 200 * ms},
		}},
		{"a step down shows within the span", []step{
			{0, 0, 0, 0, 0, 0, 0},
			{1000 * ms, 40, 40, 200 * ms, 40, 40, 200 * ms},
			{1500 * ms, 2, 2, 200 * ms, 28, 28, 200 * ms}, // base still the reading at 0: 42 over 1.5 s
			{2000 * ms, 2, 2, 200 * ms, 4, 4, 200 * ms},
		}},
		{"no completion keeps the last service time", []step{
			{0, 0, 0, 0, 0, 0, 0},
			{1000 * ms, 10, 10, 300 * ms, 10, 10, 300 * ms},
			{2000 * ms, 0, 0, 0, 0, 0, 300 * ms},
			{3000 * ms, 0, 0, 0, 0, 0, 300 * ms},
		}},
		{"refused requests count as arrivals, not service", []step{
			{0, 0, 0, 0, 0, 0, 0},
			{1000 * ms, 50, 10, 100 * ms, 50, 10, 100 * ms},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Counter{}
			w := NewWindow(c, time.Second)
			for i, s := range tc.steps {
				for range s.arrive {
					c.Arrive()
				}
				for range s.done {
					c.Done(s.each)
				}
				got := w.Rates(t0.Add(s.at))
				if got.Arrivals != s.rate || got.Done != s.served || got.Service != s.service {
					t.Fatalf("step %d: %+v; want arrivals %v, done %v, service %v", i, got, s.rate, s.served, s.service)
				}
			}
		})
	}
}

// TestCounterConcurrent: counts from many goroutines add up (run with -race).
func TestCounterConcurrent(t *testing.T) {
	c := &Counter{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				c.Arrive()
				c.Done(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	r := c.read(time.Time{})
	if r.arrived != 8000 || r.done != 8000 || r.nanos != uint64(8000*time.Millisecond) {
		t.Fatalf("counter = %+v", r)
	}
}
