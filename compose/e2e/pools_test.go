package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lbscale/internal/testenv"
)

// The pools of TestPools, named apart from the user's and from the other
// tests' pool (they carry the test cluster's name).
var (
	webPool = pool + "-web"
	binPool = pool + "-bin"
	newPool = pool + "-new"
)

// poolFile is TestPools' pool file: lbscale's web server as one service
// and go-httpbin, a server nobody here wrote, as another, routed by host;
// extra is appended under pools:.
func poolFile(extra string) string {
	return fmt.Sprintf(`defaults:
  max_inflight: 2
  scale_down_interval: 1s
pools:
  %s:
    hosts: [web.test]
    image: lbscale/webserver:local
    env: {CAPACITY: "2"}
    min_replicas: 1
    max_replicas: 4
  %s:
    hosts: [bin.test, "*.bin.test"]
    image: lbscale/httpbin:local
    port: 8080
    health_path: /status/200
    min_replicas: 0
    max_replicas: 2
%s`, webPool, binPool, extra)
}

// hostGet sends GET url with Host host.
func hostGet(client *http.Client, url, host string) (int, http.Header, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Host = host
	res, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return res.StatusCode, res.Header, body, err
}

func containersOf(t *testing.T, name string) int {
	t.Helper()
	return len(strings.Fields(docker(t, "ps", "-q", "--filter", "label=lbscale.pool="+name)))
}

// hostLoad offers rate req/s for host through both balancers (3:1) in
// open loop until stop is closed, and counts answers by status.
type hostLoad struct {
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	codes map[int]int
	errs  []string
	sent  atomic.Int64
}

func startHostLoad(host, path string, rate float64) *hostLoad {
	return startHostLoadOn("", host, path, rate)
}

// startHostLoadOn is startHostLoad through the one balancer at base
// ("" : both of the compose cluster, 3:1).
func startHostLoadOn(base, host, path string, rate float64) *hostLoad {
	l := &hostLoad{stop: make(chan struct{}), codes: map[int]int{}}
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 200}}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		for k := 0; ; k++ {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			target := proxyA
			if k%4 == 3 {
				target = proxyB
			}
			if base != "" {
				target = base
			}
			l.sent.Add(1)
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				code, _, _, err := hostGet(client, target+path, host)
				l.mu.Lock()
				defer l.mu.Unlock()
				if err != nil {
					l.errs = append(l.errs, err.Error())
					return
				}
				l.codes[code]++
			}()
		}
	}()
	return l
}

// end stops the load and waits for every request's answer.
func (l *hostLoad) end() (map[int]int, []string) {
	close(l.stop)
	l.wg.Wait()
	return l.codes, l.errs
}

// balancerHasPool reports whether a balancer's /status lists pool.
func balancerHasPool(t *testing.T, admin, name string) bool {
	t.Helper()
	res, err := http.Get(admin + "/status")
	if err != nil {
		return false
	}
	defer res.Body.Close()
	var s struct {
		Pools []struct {
			Name string `json:"name"`
		} `json:"pools"`
	}
	if json.NewDecoder(res.Body).Decode(&s) != nil {
		return false
	}
	for _, p := range s.Pools {
		if p.Name == name {
			return true
		}
	}
	return false
}

// scalerPools is a scaler's /status as far as the pool list goes.
type scalerPools struct {
	Pools []string `json:"pools"`
}

// TestPools: two services behind one cluster, routed by host. Load on one
// grows its pool while the other stays at its minimum (zero), with no
// failed request; go-httpbin's pool, whose health path is not /healthz,
// scales from zero on its first request; an unknown host gets 404; a pool
// added to the file while load runs serves within 2 s, and a pool removed
// leaves no container.
func TestPools(t *testing.T) {
	needDocker(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "pools.yml")
	testenv.ReplaceFile(t, file, poolFile(""))
	// Registered first, so it runs after scripts/down: no pool's
	// container outlives the cluster.
	t.Cleanup(func() {
		for _, p := range []string{webPool, binPool, newPool} {
			if ids := docker(t, "ps", "-aq", "--filter", "label=lbscale.pool="+p); ids != "" {
				t.Errorf("container(s) of pool %s left behind: %s", p, ids)
			}
		}
	})
	up(t, "LBSCALE_CONFIG="+file, "IDLE_TIMEOUT=120s", "STABLE_WINDOW=20s")
	client := &http.Client{Timeout: 60 * time.Second}

	testenv.Eventually(t, 60*time.Second, "the web pool's first container on both balancers", func() bool {
		code, _, _, err := hostGet(client, proxyA+"/", "web.test")
		codeB, _, _, errB := hostGet(client, proxyB+"/", "web.test")
		return err == nil && errB == nil && code == 200 && codeB == 200
	})
	for _, admin := range []string{adminScaler, adminScalerB} {
		var s scalerPools
		res, err := http.Get(admin + "/status")
		if err != nil {
			t.Fatal(err)
		}
		_ = json.NewDecoder(res.Body).Decode(&s)
		res.Body.Close()
		if strings.Join(s.Pools, ",") != webPool+","+binPool {
			t.Errorf("scaler %s lists pools %v, want %s and %s", admin, s.Pools, webPool, binPool)
		}
	}

	// What a pool costs in Redis at rest: its keys and their memory.
	redis := serviceContainer(t, "redis")
	for _, p := range []string{webPool, binPool} {
		keys := strings.Fields(docker(t, "exec", redis, "redis-cli", "--scan", "--pattern", "lbscale:{"+p+"}:*"))
		bytes := 0
		for _, k := range keys {
			var n int
			_, _ = fmt.Sscan(docker(t, "exec", redis, "redis-cli", "memory", "usage", k), &n)
			bytes += n
		}
		t.Logf("pool %s at rest in Redis: %d keys, %d bytes (%v)", p, len(keys), bytes, keys)
	}

	// An unknown host: 404 from both balancers, naming nothing.
	for _, p := range []string{proxyA, proxyB} {
		code, _, body, err := hostGet(client, p+"/", "nobody.test")
		if err != nil || code != http.StatusNotFound || strings.Contains(string(body), pool) {
			t.Errorf("unknown host via %s: %d %q %v, want 404 that names no pool", p, code, body, err)
		}
	}

	// Load on the web pool: 40 req/s of 200 ms is 8 in flight, 4
	// containers at MAX_INFLIGHT 2. The httpbin pool gets nothing and
	// must stay at zero.
	if n := containersOf(t, binPool); n != 0 {
		t.Fatalf("the httpbin pool has %d containers before any request, want 0 (min_replicas 0)", n)
	}
	load := startHostLoad("web.test", "/?sleep_ms=200", 40)
	grew := false
	peakBin := 0
	deadline := time.Now().Add(25 * time.Second)
	for time.Now().Before(deadline) {
		if containersOf(t, webPool) > 1 {
			grew = true
		}
		peakBin = max(peakBin, containersOf(t, binPool))
		if grew && time.Until(deadline) < 15*time.Second {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}

	// While the load runs: a third pool comes in through the file.
	testenv.ReplaceFile(t, file, poolFile(fmt.Sprintf(`  %s:
    hosts: [new.test]
    image: lbscale/webserver:local
    min_replicas: 1
`, newPool)))
	added := time.Now()
	// The reload: both balancers list the new pool in /status.
	reloaded := testenv.Eventually(t, 10*time.Second, "both balancers list the added pool", func() bool {
		return balancerHasPool(t, adminA, newPool) && balancerHasPool(t, adminB, newPool)
	})
	t.Logf("both balancers serve the added pool %v after the file changed", reloaded.Round(time.Millisecond))
	if reloaded > 2*time.Second {
		t.Errorf("the reload took %v, want within 2 s", reloaded)
	}
	var routed time.Duration
	for routed == 0 {
		code, _, _, err := hostGet(client, proxyA+"/", "new.test")
		codeB, _, _, errB := hostGet(client, proxyB+"/", "new.test")
		switch {
		case err == nil && errB == nil && code == 200 && codeB == 200:
			routed = time.Since(added)
		case time.Since(added) > 30*time.Second:
			t.Fatalf("the added pool does not serve 30 s after the file changed: %d %v / %d %v", code, err, codeB, errB)
		case code != 404 && code != 200 || codeB != 404 && codeB != 200:
			t.Fatalf("the added pool answered %d / %d while it came up, want 404 before the reload and 200 after", code, codeB)
		}
	}
	t.Logf("a pool added to the file served on both balancers %v after the change (reload, then its first container's cold start)", routed.Round(time.Millisecond))

	codes, errs := load.end()
	t.Logf("web load: %d sent, answers %v, transport errors %d; web pool grew: %v; httpbin pool peak %d", load.sent.Load(), codes, len(errs), grew, peakBin)
	if len(errs) > 0 || codes[200] != int(load.sent.Load()) {
		t.Errorf("failed requests during the load and the reload: %v, errors %v", codes, errs[:min(len(errs), 5)])
	}
	if !grew {
		t.Error("the loaded pool never grew past one container")
	}
	if peakBin != 0 {
		t.Errorf("the idle httpbin pool reached %d containers, want 0", peakBin)
	}

	// go-httpbin from zero: the first request waits in its pool's queue
	// while a container starts and passes its health gate (/status/200).
	start := time.Now()
	code, _, body, err := hostGet(client, proxyB+"/get", "x.bin.test")
	if err != nil || code != 200 || !strings.Contains(string(body), `"url"`) {
		t.Fatalf("first request to the httpbin pool: %d %v %.200s", code, err, body)
	}
	t.Logf("go-httpbin served its first request from zero containers after %v", time.Since(start).Round(time.Millisecond))

	// The added pool is removed again: no route, then no container.
	testenv.ReplaceFile(t, file, poolFile(""))
	testenv.Eventually(t, 5*time.Second, "the removed pool's host gets 404 on both balancers", func() bool {
		code, _, _, _ := hostGet(client, proxyA+"/", "new.test")
		codeB, _, _, _ := hostGet(client, proxyB+"/", "new.test")
		return code == 404 && codeB == 404
	})
	testenv.Eventually(t, 60*time.Second, "the removed pool's containers are stopped", func() bool {
		return len(strings.Fields(docker(t, "ps", "-aq", "--filter", "label=lbscale.pool="+newPool))) == 0
	})
	if code, _, _, err := hostGet(client, proxyA+"/", "web.test"); err != nil || code != 200 {
		t.Errorf("the web pool after the removal of another: %d %v", code, err)
	}
}
