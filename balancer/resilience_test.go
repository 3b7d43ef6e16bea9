package main_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lbscale/balancer/admin"
)

// backendStatus returns addr's entry in the balancer's /status.
func backendStatus(t *testing.T, adminURL, addr string) admin.BackendStatus {
	t.Helper()
	for _, b := range status(t, adminURL).Backends {
		if b.Addr == addr {
			return b
		}
	}
	t.Fatalf("%s not in %s/status", addr, adminURL)
	return admin.BackendStatus{}
}

// TestOutlierEjection: a backend answering 500 (its health check passes) is
// ejected after OUTLIER_CONSECUTIVE_5XX answers, traffic moves to the healthy
// one, it returns after OUTLIER_BASE_EJECTION, and failing again at once it
// is ejected for twice as long. RETRY_ON=none lets each 500 reach the
// client, so the test sees every one (TestFaultyBackendUnderLoad retries
// them).
func TestOutlierEjection(t *testing.T) {
	var hits atomic.Int64
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		hits.Add(1)
		http.Error(w, "broken", http.StatusInternalServerError)
	}))
	defer bad.Close()
	badAddr := strings.TrimPrefix(bad.URL, "http://")
	good := web(t, "good")
	b := balancer(t, "BACKENDS="+badAddr+","+good, "LB_POLICY=round-robin", "RETRY_ON=none",
		"OUTLIER_CONSECUTIVE_5XX=3", "OUTLIER_BASE_EJECTION=1s", "OUTLIER_MAX_EJECTION=10s")
	c := &http.Client{Timeout: 5 * time.Second}

	// Until ejected: round robin alternates, so 3 failures in a row on bad.
	codes := map[int]int{}
	for i := 0; backendStatus(t, b.admin, badAddr).EjectedUntil == nil; i++ {
		if i == 20 {
			t.Fatalf("not ejected after 20 requests: %v, %+v", codes, backendStatus(t, b.admin, badAddr))
		}
		codes[get(t, c, b.proxy+"/").StatusCode]++
	}
	ejectedAt := time.Now()
	st := backendStatus(t, b.admin, badAddr)
	if codes[500] != 3 || st.Ejections != 1 || st.Failures != 3 {
		t.Fatalf("first ejection: codes %v, status %+v; want 3 x 500 then ejected once", codes, st)
	}
	if left := time.Until(*st.EjectedUntil); left <= 0 || left > time.Second {
		t.Fatalf("ejected until %v, %v from now; want within the 1s base", st.EjectedUntil, left)
	}

	// While ejected every request goes to good; then bad takes traffic again.
	hitsAtEjection := hits.Load()
	var during int
	var returned time.Time
	for time.Since(ejectedAt) < 3*time.Second && returned.IsZero() {
		res := get(t, c, b.proxy+"/")
		switch {
		case hits.Load() > hitsAtEjection:
			returned = time.Now()
		case res.StatusCode == http.StatusOK:
			during++
		default:
			t.Fatalf("status %d while bad was ejected", res.StatusCode)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if returned.IsZero() {
		t.Fatalf("bad never got traffic again within 3s of its 1s ejection (%d requests to good)", during)
	}
	out := returned.Sub(ejectedAt)
	t.Logf("ejected after 3 x 500; %d requests all to good while out; back after %v (base 1s)", during, out.Round(time.Millisecond))
	if out < 900*time.Millisecond || out > 1500*time.Millisecond || during < 20 {
		t.Fatalf("out for %v with %d requests served meanwhile; want about 1s", out, during)
	}

	// Failing again at once, it is out for 2 x base.
	for i := 0; backendStatus(t, b.admin, badAddr).Ejections < 2; i++ {
		if i == 20 {
			t.Fatalf("not ejected again after 20 requests: %+v", backendStatus(t, b.admin, badAddr))
		}
		get(t, c, b.proxy+"/")
	}
	st = backendStatus(t, b.admin, badAddr)
	if st.EjectedUntil == nil || time.Until(*st.EjectedUntil) < 1500*time.Millisecond {
		t.Fatalf("second ejection until %v; want about 2s from now", st.EjectedUntil)
	}

	res, err := http.Get(b.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{
		`lbscale_balancer_backend_ejections_total{backend="` + badAddr + `",pool="web"} 2`,
		`lbscale_balancer_backend_ejected{backend="` + badAddr + `",pool="web"} 1`,
		`lbscale_balancer_backend_ejected{backend="` + good + `",pool="web"} 0`,
		`lbscale_balancer_retries_refused_total{pool="web"} 0`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestLeastLatencyAvoidsSlowBackend: two web servers, one 10x slower (100ms
// against 10ms per request), neither failing. least-latency gives the slow
// one a small share; least-connections, for comparison, gives it each
// client in turn.
func TestLeastLatencyAvoidsSlowBackend(t *testing.T) {
	fast, slow := web(t, "fast", "SLEEP_MS=10"), web(t, "slow", "SLEEP_MS=100")
	share := map[string]float64{}
	for _, pol := range []string{"least-latency", "least-connections"} {
		b := balancer(t, "BACKENDS="+fast+","+slow, "LB_POLICY="+pol, "MAX_INFLIGHT=8")
		var r result
		var wg sync.WaitGroup
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		closedLoop(ctx, &wg, &r, b.proxy+"/", 4)
		wg.Wait()
		cancel()
		n := func(id string) int64 {
			if v, ok := r.byServer.Load(id); ok {
				return v.(*atomic.Int64).Load()
			}
			return 0
		}
		share[pol] = float64(n("slow")) / float64(n("slow")+n("fast"))
		t.Logf("%s, 4 clients for 3s: fast served %d, slow %d (%.1f%%), failed %d", pol, n("fast"), n("slow"), 100*share[pol], r.failed.Load())
		if r.failed.Load() != 0 {
			t.Errorf("%s: %d requests failed", pol, r.failed.Load())
		}
	}
	if share["least-latency"] > 0.05 {
		t.Errorf("least-latency gave the 10x slower backend %.1f%% of requests, want under 5%%", 100*share["least-latency"])
	}
}
