package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFaultyBackendUnderLoad (faults under load, fault 6): two healthy web
// servers and one with FAULT=hang (accepts, never answers) or FAULT=error
// (500 at once), whose /healthz passes throughout. 300 GETs arrive open
// loop at 200/s. Every GET gets 200: a hung attempt is cut at
// UPSTREAM_TIMEOUT (the per-try timeout) and a 500 dropped, and either is
// retried on a healthy backend, so no GET waits much more than one
// UPSTREAM_TIMEOUT. The bad backend is ejected after
// OUTLIER_CONSECUTIVE_5XX failures, and its failures show in /status and
// /metrics. A POST is never retried: it gets the bad backend's 500, or a
// 504 after one UPSTREAM_TIMEOUT.
func TestFaultyBackendUnderLoad(t *testing.T) {
	const (
		tryTimeout = 500 * time.Millisecond
		requests   = 300
		interval   = 5 * time.Millisecond // 200 requests/s
		// maxLatency bounds every GET: at worst one try cut at the timeout,
		// then a healthy backend's 5 ms, with room for a busy test host;
		// below the 2 x UPSTREAM_TIMEOUT of two tries that both time out.
		maxLatency = tryTimeout + 400*time.Millisecond
	)
	for _, tc := range []struct {
		fault    string
		postCode int    // what the POST sent to the bad backend gets
		reason   string // the retries' reason
	}{
		{fault: "hang", postCode: http.StatusGatewayTimeout, reason: "timeout"},
		{fault: "error", postCode: http.StatusInternalServerError, reason: "status"},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			good1, good2 := web(t, "good1", "SLEEP_MS=5"), web(t, "good2", "SLEEP_MS=5")
			bad := web(t, "bad", "FAULT="+tc.fault)
			b := balancer(t, "BACKENDS="+strings.Join([]string{good1, good2, bad}, ","), "LB_POLICY=round-robin",
				"UPSTREAM_TIMEOUT="+tryTimeout.String(), "MAX_INFLIGHT=16",
				"OUTLIER_CONSECUTIVE_5XX=5", "OUTLIER_BASE_EJECTION=30s", "OUTLIER_MAX_EJECTION_PERCENT=50")
			waitReplicas(t, b.admin, 3)
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 200}}

			// Round robin: three POSTs, one per backend. Not idempotent, so
			// the bad backend's failure reaches the client as it is.
			posts := map[int]int{}
			for range 3 {
				start := time.Now()
				res, err := c.Post(b.proxy+"/", "text/plain", strings.NewReader("order"))
				if err != nil {
					t.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				posts[res.StatusCode]++
				if res.StatusCode == http.StatusGatewayTimeout && (time.Since(start) < tryTimeout || time.Since(start) > tryTimeout+300*time.Millisecond) {
					t.Errorf("POST 504 after %v, want one UPSTREAM_TIMEOUT (%v)", time.Since(start), tryTimeout)
				}
			}
			if posts[200] != 2 || posts[tc.postCode] != 1 {
				t.Fatalf("POSTs: %v, want 2 x 200 and the bad backend's %d passed through", posts, tc.postCode)
			}
			if st := status(t, b.admin); st.Retries != 0 {
				t.Fatalf("a POST was retried: %+v", st)
			}

			// Watch for the ejection while the load runs.
			loadStart := time.Now()
			stop := make(chan struct{})
			ejectedAfter := make(chan time.Duration, 1)
			go func() {
				defer close(ejectedAfter)
				for {
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
					if ejectedNow(b.admin, bad) {
						ejectedAfter <- time.Since(loadStart)
						return
					}
				}
			}()

			type outcome struct {
				code    int
				err     error
				latency time.Duration
			}
			out := make([]outcome, requests)
			var wg sync.WaitGroup
			for i := range requests {
				time.Sleep(time.Until(loadStart.Add(time.Duration(i) * interval)))
				wg.Add(1)
				go func() {
					defer wg.Done()
					start := time.Now()
					res, err := c.Get(b.proxy + "/")
					if err != nil {
						out[i] = outcome{err: err, latency: time.Since(start)}
						return
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					out[i] = outcome{code: res.StatusCode, latency: time.Since(start)}
				}()
			}
			wg.Wait()
			close(stop)
			ejected, wasEjected := <-ejectedAfter

			var bad2xx []string
			lat := make([]time.Duration, 0, requests)
			for i, o := range out {
				lat = append(lat, o.latency)
				if o.err != nil || o.code/100 != 2 {
					bad2xx = append(bad2xx, fmt.Sprintf("#%d: %d %v", i, o.code, o.err))
				}
			}
			slices.Sort(lat)
			p50, p99, worst := lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
			st := status(t, b.admin)
			be := backendStatus(t, b.admin, bad)
			t.Logf("FAULT=%s, %d GETs at %d/s, UPSTREAM_TIMEOUT %v: %d not 2xx; latency p50 %v, p99 %v, max %v; bad ejected %v after the load began (%v); its failures %d, retries %v",
				tc.fault, requests, time.Second/interval, tryTimeout, len(bad2xx), p50.Round(time.Millisecond), p99.Round(time.Millisecond),
				worst.Round(time.Millisecond), ejected.Round(time.Millisecond), wasEjected, be.Failures, st.RetriesByReason)

			if len(bad2xx) != 0 {
				t.Errorf("%d GETs failed: %v", len(bad2xx), bad2xx[:min(len(bad2xx), 10)])
			}
			if worst > maxLatency {
				t.Errorf("slowest GET took %v, want at most %v", worst, maxLatency)
			}
			if !wasEjected || !be.Ejected || be.EjectedUntil == nil || be.Ejections != 1 {
				t.Errorf("bad backend not ejected: %+v", be)
			}
			// 5 in a row (the POST's the first) eject; attempts already on
			// their way when it went out add theirs.
			if be.Failures < 5 || be.InflightLocal != 0 {
				t.Errorf("bad backend: %d failures (want at least 5), %d slots still held", be.Failures, be.InflightLocal)
			}
			if st.RetriesByReason[tc.reason] != be.Failures-1 || st.Retries != st.RetriesByReason[tc.reason] || st.RetriesRefused != 0 {
				t.Errorf("retries %v (refused %d); want every GET that failed on bad (%d) retried for %s",
					st.RetriesByReason, st.RetriesRefused, be.Failures-1, tc.reason)
			}
			for _, g := range []string{good1, good2} {
				if gs := backendStatus(t, b.admin, g); gs.Failures != 0 || gs.Ejected {
					t.Errorf("healthy backend %s: %+v", g, gs)
				}
			}

			metrics := scrape(t, b.admin)
			for series, want := range map[string]uint64{
				`lbscale_balancer_backend_failures_total{backend="` + bad + `",pool="web"}`:   be.Failures,
				`lbscale_balancer_backend_failures_total{backend="` + good1 + `",pool="web"}`: 0,
				`lbscale_balancer_backend_ejected{backend="` + bad + `",pool="web"}`:          1,
				`lbscale_balancer_retries_total{pool="web",reason="` + tc.reason + `"}`:       be.Failures - 1,
			} {
				if got, ok := metrics[series]; !ok || got != want {
					t.Errorf("/metrics %s = %d (present %v), want %d", series, got, ok, want)
				}
			}
		})
	}
}

// ejectedNow reports whether /status shows addr ejected (false when it
// cannot tell); it runs off the test goroutine, so it cannot fail the test.
func ejectedNow(admin, addr string) bool {
	res, err := http.Get(admin + "/status")
	if err != nil {
		return false
	}
	defer res.Body.Close()
	var st adminStatus
	if json.NewDecoder(res.Body).Decode(&st) != nil {
		return false
	}
	for _, b := range st.Backends {
		if b.Addr == addr {
			return b.Ejected
		}
	}
	return false
}

var sample = regexp.MustCompile(`(?m)^(lbscale_\S+) (\S+)$`)

// scrape reads the balancer's lbscale_ series with whole values.
func scrape(t *testing.T, admin string) map[string]uint64 {
	t.Helper()
	res, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := map[string]uint64{}
	for _, s := range sample.FindAllStringSubmatch(string(body), -1) {
		if v, err := strconv.ParseFloat(s[2], 64); err == nil {
			m[s[1]] = uint64(v)
		}
	}
	return m
}
