package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"lbscale/internal/testenv"
)

// TestStep is the step a new user tries first (scripts/exp-step runs it,
// about 3 minutes; it runs only with STEP_RUN=1): a cluster with the
// defaults, idle, then 60 req/s of /?sleep_ms=200 through both balancers
// (alternately) for 40 s; STEP_ENV changes settings. The need is 12 in flight, 3 containers at the
// default target of 4. It logs the pool's containers over time (every
// container of the pool, starting ones too), the peak and the latency,
// and fails on a failed request.
func TestStep(t *testing.T) {
	if os.Getenv("STEP_RUN") == "" {
		t.Skip("STEP_RUN unset: the step runs from scripts/exp-step")
	}
	needDocker(t)
	// STEP_ENV: settings to try instead of the defaults, e.g.
	// "BACKLOG_DRAIN=4s LATENCY_TARGET=0".
	up(t, strings.Fields(os.Getenv("STEP_ENV"))...)
	testenv.Eventually(t, 60*time.Second, "pool settles at 1 replica", func() bool { return getStatus(t, adminA).Replicas == 1 })
	time.Sleep(5 * time.Second)
	sh := shape{name: "step", dur: 40 * time.Second, rate: func(float64) float64 { return 60 }}
	smp := startSampler(t, 250*time.Millisecond)
	res := driveTo(t, sh, func(k int) string {
		if k%2 == 1 {
			return proxyB + "/?sleep_ms=200"
		}
		return proxyA + "/?sleep_ms=200"
	})
	samples := smp.end()
	var all []float64
	failed := 0
	for _, o := range res {
		if o.code != http.StatusOK {
			failed++
			continue
		}
		all = append(all, float64(o.latency.Microseconds())/1000)
	}
	peak, path, last := 0, "", -1
	var peakAt float64
	for _, s := range samples {
		if s.containers > peak {
			peak, peakAt = s.containers, s.at
		}
		if s.containers != last {
			path += fmt.Sprintf(" %d@%.1fs", s.containers, s.at)
			last = s.containers
		}
	}
	sc := getScaler(t)
	t.Logf("step 0 → 60 req/s (need 3): %d requests, %d failed; p50 %.0f ms, p90 %.0f ms, p99 %.0f ms, max %.0f ms; peak %d containers at %.1f s; flaps %d; containers over time:%s",
		len(res), failed, quantile(all, 0.5), quantile(all, 0.9), quantile(all, 0.99), quantile(all, 1), peak, peakAt, sc.Flaps, path)
	for _, e := range sc.Events {
		if e.Direction == "up" {
			t.Logf("scale-up %s +%d at %s: desired %d, %.1f req/s, S %.0f ms, %d in flight, %d queued",
				e.Reason, e.Count, e.Time.Format("15:04:05.000"), e.Desired, e.Arrivals, e.ServiceMs, e.Inflight, e.Queued)
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d requests failed", failed, len(res))
	}
}
