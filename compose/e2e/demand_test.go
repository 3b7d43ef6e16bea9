package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"lbscale/internal/testenv"
)

// The web servers of the autoscaling tests: 2 workers that sleep 200 ms, so
// one container serves 2 / 0.2 s = 10 req/s at MAX_INFLIGHT = TARGET = 2.
const (
	webService  = 200 * time.Millisecond
	webCapacity = 2
)

// shape is offered load: rate(s) requests per second at s seconds.
type shape struct {
	name string
	dur  time.Duration
	rate func(s float64) float64
}

// outcome is one request of a drive.
type outcome struct {
	at      float64 // intended send time, seconds since the start
	latency time.Duration
	code    int // -1: transport error
}

// drive offers sh through both balancers (9:1, one taking most traffic) in
// open loop: the k-th request leaves when the rate's integral reaches
// k + ½, whatever earlier ones are doing, and its latency counts from that
// intended time. It returns every request's outcome once all have ended.
func drive(t *testing.T, sh shape) []outcome {
	t.Helper()
	return driveTo(t, sh, func(k int) string {
		if k%10 == 9 {
			return proxyB + "/"
		}
		return proxyA + "/"
	})
}

// driveTo is drive with the k-th request's URL from target.
func driveTo(t *testing.T, sh shape, target func(k int) string) []outcome {
	t.Helper()
	client := &http.Client{Timeout: 120 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 500}}
	defer client.CloseIdleConnections()
	var (
		mu  sync.Mutex
		out []outcome
		wg  sync.WaitGroup
	)
	start := time.Now()
	const dt = 0.001 // integration step, seconds
	var sum float64
	k := 0
	for s := 0.0; s < sh.dur.Seconds(); s += dt {
		sum += sh.rate(s) * dt
		for sum >= float64(k)+0.5 {
			due := start.Add(time.Duration(s * float64(time.Second)))
			time.Sleep(time.Until(due))
			url := target(k)
			k++
			wg.Add(1)
			go func(at float64) {
				defer wg.Done()
				o := outcome{at: at, code: -1}
				res, err := client.Get(url)
				if err == nil {
					res.Body.Close()
					o.code = res.StatusCode
				}
				o.latency = time.Since(due)
				mu.Lock()
				out = append(out, o)
				mu.Unlock()
			}(s)
		}
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b outcome) int { return compareF(a.at, b.at) })
	return out
}

func compareF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// poolSample is one reading of the cluster while load runs.
type poolSample struct {
	at         float64 // seconds since the sampler started
	containers int     // every container of the pool (starting, ready, draining)
	ready      int     // balancer A's ready backends
}

// scalerStatus is the part of a scaler's /status these tests read.
type scalerStatus struct {
	ID       string `json:"id"`
	Instance string `json:"instance"`
	Leader   bool   `json:"leader"`
	LeaderID string `json:"leader_id"`
	Desired  int    `json:"desired"`
	Starting int    `json:"starting"`
	Flaps    int    `json:"flaps"`
	Events   []struct {
		Direction string `json:"direction"`
		Reason    string `json:"reason"`
		Count     int    `json:"count"`
		Flap      bool   `json:"flap"`
		// What the decision saw (scale-ups).
		Time      time.Time `json:"time"`
		Desired   int       `json:"desired"`
		Inflight  int64     `json:"inflight"`
		Queued    int64     `json:"queued"`
		Arrivals  float64   `json:"arrivals"`
		ServiceMs float64   `json:"service_ms"`
	} `json:"events"`
	Problems map[string]string `json:"problems"`
}

// readScaler reads one scaler's /status.
func readScaler(admin string) (scalerStatus, error) {
	var s scalerStatus
	c := &http.Client{Timeout: 5 * time.Second}
	res, err := c.Get(admin + "/status")
	if err != nil {
		return s, err
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		return s, fmt.Errorf("decode %s/status: %w", admin, err)
	}
	return s, nil
}

// getScaler returns the leading scaler's /status (the leader's view of
// the pool and its events), waiting up to 15 s for one to lead.
func getScaler(t *testing.T) scalerStatus {
	t.Helper()
	var last error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for _, admin := range []string{adminScaler, adminScalerB} {
			s, err := readScaler(admin)
			if err != nil {
				last = err
				continue
			}
			if s.Leader {
				return s
			}
		}
	}
	t.Fatalf("no scaler leads (last error %v)", last)
	return scalerStatus{}
}

// sampler reads the pool every interval until stop is called.
type sampler struct {
	mu      sync.Mutex
	samples []poolSample
	stop    chan struct{}
	done    chan struct{}
}

func startSampler(t *testing.T, every time.Duration) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	start := time.Now()
	go func() {
		defer close(s.done)
		for {
			n := len(splitLines(docker(t, "ps", "-q", "--filter", poolFilter)))
			ready := getStatus(t, adminA).Replicas
			s.mu.Lock()
			s.samples = append(s.samples, poolSample{at: time.Since(start).Seconds(), containers: n, ready: ready})
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-time.After(every):
			}
		}
	}()
	return s
}

func (s *sampler) end() []poolSample {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.samples)
}

// TestDemandScaleDown is issue #8's claim end to end: a burst grows the
// pool, then sustained low load (not zero) shrinks it to what that load
// needs, by demand and not by idleness (every container keeps getting
// requests, so none is ever idle), within STABLE_WINDOW + 2 scale-down
// periods + the drain, with no failed request and no flap.
//
// 40 req/s for 10 s needs 4 containers (40 × 0.2 s / 2); 4 req/s needs 1.
// The bound adds to the STABLE_WINDOW + 2 × SCALE_DOWN_INTERVAL +
// drain the one second over which balancers measure the arrival rate (the
// last burst reading is taken up to a second after the burst ends) and the
// sampling period.
func TestDemandScaleDown(t *testing.T) {
	needDocker(t)
	const (
		stable  = 15 * time.Second
		cron    = 2 * time.Second
		settle  = time.Second
		burst   = 10 * time.Second
		maxRepl = 6
	)
	tail := stable + 2*cron + settle + 15*time.Second
	// LATENCY_TARGET=0: the tail's need is one container at target. With
	// the staffing headroom (200 ms by default) a 4 req/s tail on
	// containers of 2 slots needs 2 for its p99 queue wait, and this test
	// times the way down, not the headroom.
	up(t, "MIN_REPLICAS=1", fmt.Sprintf("MAX_REPLICAS=%d", maxRepl), "LATENCY_TARGET=0",
		fmt.Sprintf("WEB_ENV=CAPACITY=%d,SLEEP_MS=%d", webCapacity, webService.Milliseconds()),
		fmt.Sprintf("MAX_INFLIGHT=%d", webCapacity), "IDLE_TIMEOUT=10s", "SCALE_DOWN_INTERVAL="+cron.String(),
		"STABLE_WINDOW="+stable.String(), "PANIC_WINDOW=3s", "DRAIN_SETTLE="+settle.String(), "QUEUE_TIMEOUT=60s")
	testenv.Eventually(t, 60*time.Second, "pool settles at 1 replica", func() bool {
		return getStatus(t, adminA).Replicas == 1 && getStatus(t, adminB).Replicas == 1
	})
	// The leader's stable window must hold a whole window of history before
	// it shrinks anything; the cluster has been up for part of it already.
	time.Sleep(stable)

	smp := startSampler(t, 250*time.Millisecond)
	sh := shape{name: "burst then low", dur: burst + tail, rate: func(s float64) float64 {
		if s < burst.Seconds() {
			return 40
		}
		return 4
	}}
	res := drive(t, sh)
	samples := smp.end()

	failed := map[int]int{}
	for _, o := range res {
		if o.code != http.StatusOK {
			failed[o.code]++
		}
	}
	peak := 0
	for _, s := range samples {
		peak = max(peak, s.containers)
	}
	// When did the ready count reach 1 for good after the burst?
	reached := -1.0
	for i := len(samples) - 1; i >= 0 && samples[i].ready == 1; i-- {
		reached = samples[i].at
	}
	sc := getScaler(t)
	reasons := map[string]int{}
	for _, e := range sc.Events {
		reasons[e.Direction+"/"+e.Reason] += e.Count
	}
	bound := (stable + 2*cron + settle + time.Second + 250*time.Millisecond).Seconds()
	t.Logf("%d requests, non-200 %v; peak containers %d; 1 ready %.1fs after the burst ended (bound %.1fs); flaps %d; events %v",
		len(res), failed, peak, reached-burst.Seconds(), bound, sc.Flaps, reasons)
	if len(failed) > 0 {
		t.Errorf("every request should answer 200, got %v", failed)
	}
	if peak <= 1 || peak > maxRepl {
		t.Errorf("peak containers %d: want growth past 1 and at most MAX_REPLICAS=%d", peak, maxRepl)
	}
	if reached < 0 || reached-burst.Seconds() > bound {
		t.Errorf("ready count reached 1 %.1fs after the burst, want within %.1fs (last samples %v)", reached-burst.Seconds(), bound, samples[max(0, len(samples)-5):])
	}
	if reasons["down/surplus"] == 0 || reasons["down/idle"] != 0 {
		t.Errorf("the pool should shrink by demand (surplus), not idleness: events %v", reasons)
	}
	if sc.Flaps != 0 {
		t.Errorf("flaps = %d, want 0", sc.Flaps)
	}
}

// idealReplicas is ceil(rate × service / target) for each second of sh:
// the pool an oracle that knows the offered rate would run, never below min.
func idealReplicas(sh shape, target, minRepl int) []int {
	n := int(math.Ceil(sh.dur.Seconds()))
	out := make([]int, n)
	for i := range out {
		// The mean rate over the second, so that a step inside a second
		// counts in proportion.
		var sum float64
		for j := range 10 {
			sum += sh.rate(float64(i) + (float64(j)+0.5)/10)
		}
		need := sum / 10 * webService.Seconds() / float64(target)
		out[i] = max(int(math.Ceil(need-1e-9)), minRepl)
	}
	return out
}
