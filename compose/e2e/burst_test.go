package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"lbscale/internal/testenv"
)

// TestBurstScalesUpAndBack is the autoscaling claim end to end: with
// MIN_REPLICAS=1, MAX_REPLICAS=4 and web servers of CAPACITY=2, SLEEP_MS=200,
// a burst of 1,000 requests through both balancers grows the pool past one
// container, every request answers 200, MAX_REPLICAS holds, and after the
// burst the pool is back to 1 within IDLE_TIMEOUT + 2 cron periods.
func TestBurstScalesUpAndBack(t *testing.T) {
	needDocker(t)
	const (
		idle     = 10 * time.Second
		cron     = 2 * time.Second
		requests = 1000
		rate     = 100 // per second, open loop; capacity is 10/s per container
		maxRepl  = 4
	)
	up(t, "MIN_REPLICAS=1", fmt.Sprintf("MAX_REPLICAS=%d", maxRepl), "WEB_ENV=CAPACITY=2,SLEEP_MS=200",
		"MAX_INFLIGHT=2", "IDLE_TIMEOUT="+idle.String(), "SCALE_DOWN_INTERVAL="+cron.String(), "QUEUE_TIMEOUT=150s")
	testenv.Eventually(t, 60*time.Second, "pool settles at 1 replica", func() bool {
		return getStatus(t, adminA).Replicas == 1 && getStatus(t, adminB).Replicas == 1
	})

	// Sample the replica count through the whole run.
	type sample struct {
		at       time.Duration
		replicas int
	}
	var (
		mu      sync.Mutex
		samples []sample
		stop    = make(chan struct{})
		sampled sync.WaitGroup
	)
	start := time.Now()
	sampled.Add(1)
	go func() {
		defer sampled.Done()
		for {
			s := getStatus(t, adminA)
			mu.Lock()
			samples = append(samples, sample{time.Since(start), s.Replicas})
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()

	client := &http.Client{Timeout: 200 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 500}}
	codes := make([]int, requests)
	var wg sync.WaitGroup
	for i := range requests {
		due := start.Add(time.Duration(i) * time.Second / rate)
		time.Sleep(time.Until(due))
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := proxyA + "/"
			if i%2 == 1 {
				url = proxyB + "/"
			}
			res, err := client.Get(url)
			if err != nil {
				codes[i] = -1
				return
			}
			res.Body.Close()
			codes[i] = res.StatusCode
		}()
	}
	wg.Wait()
	burstEnd := time.Since(start)

	failed := map[int]int{}
	for _, c := range codes {
		if c != http.StatusOK {
			failed[c]++
		}
	}
	peak := 0
	mu.Lock()
	for _, s := range samples {
		peak = max(peak, s.replicas)
	}
	mu.Unlock()
	t.Logf("burst of %d requests at %d/s finished after %v; peak replicas %d; non-200: %v", requests, rate, burstEnd.Round(100*time.Millisecond), peak, failed)
	if len(failed) > 0 {
		t.Errorf("every request should answer 200, got %v", failed)
	}
	if peak <= 1 {
		t.Errorf("the pool never grew past 1 container")
	}
	if peak > maxRepl {
		t.Errorf("peak replicas %d > MAX_REPLICAS %d", peak, maxRepl)
	}

	bound := idle + 2*cron
	back := testenv.Eventually(t, bound+30*time.Second, "pool returns to 1 replica", func() bool {
		return getStatus(t, adminA).Replicas == 1
	})
	close(stop)
	sampled.Wait()
	t.Logf("back to 1 replica %v after the burst ended (bound IDLE_TIMEOUT + 2 cron periods = %v)", back.Round(100*time.Millisecond), bound)
	if back > bound {
		t.Errorf("scale-down took %v, want within %v", back, bound)
	}
	// Draining containers leave the ready count at once and are stopped once
	// their in-flight reaches 0 and every balancer has seen them draining.
	stopped := testenv.Eventually(t, 30*time.Second, "drained containers are stopped and removed", func() bool {
		return len(splitLines(docker(t, "ps", "-aq", "--filter", poolFilter))) == 1
	})
	t.Logf("drained containers removed %v later", stopped.Round(100*time.Millisecond))
}

func splitLines(s string) []string { return strings.Fields(s) }
