package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"lbscale/internal/testenv"
	"lbscale/internal/testenv/swarmtest"
)

// swarmNames are the swarm test's stack, pool and network: apart from the
// compose tests' and from a user's stack (lbscale, web, lbscale-web).
var (
	swarmStack   = "lbscale-" + pool + "-swarm"
	swarmPool    = pool + "swarm"
	swarmNetwork = "lbscale-" + pool + "-swarm"
)

// freePorts returns n distinct free loopback ports.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// webServices lists the pool's web services (one per web replica).
func webServices(t *testing.T) []string {
	return splitLines(docker(t, "service", "ls", "-q", "--filter", "label=lbscale.pool="+swarmPool))
}

// TestSwarmStack deploys compose/stack.yml on a swarm of its own: a burst
// through the balancer grows the pool of web services and sustained low
// load shrinks it again, with no failed request; a killed web task is
// replaced; scripts/stack-down leaves no service, container or network,
// and the test leaves the swarm.
//
// The pool: 2 workers sleeping 200 ms per web task, MAX_INFLIGHT = TARGET
// = 2, so one task serves 10 req/s. 30 req/s for 12 s needs 3; 3 req/s
// needs 1.
func TestSwarmStack(t *testing.T) {
	needDocker(t)
	// A single-node swarm of the test's own, left at the end; an engine
	// already in a swarm, or one that cannot start one, skips the test.
	swarmtest.Swarm(t)
	ports := freePorts(t, 4)
	proxy := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	admin := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	env := []string{
		"STACK_NAME=" + swarmStack, "POOL=" + swarmPool, "NETWORK=" + swarmNetwork,
		fmt.Sprintf("LB_PORT=%d", ports[0]), fmt.Sprintf("ADMIN_PORT=%d", ports[1]),
		fmt.Sprintf("SCALER_ADMIN_PORT=%d", ports[2]), fmt.Sprintf("SCALER_B_ADMIN_PORT=%d", ports[3]),
		"MIN_REPLICAS=1", "MAX_REPLICAS=4", "MAX_INFLIGHT=2", "TARGET_INFLIGHT=2",
		fmt.Sprintf("WEB_ENV=CAPACITY=%d,SLEEP_MS=%d", webCapacity, webService.Milliseconds()),
		"QUEUE_TIMEOUT=60s", "STABLE_WINDOW=8s", "SCALE_DOWN_INTERVAL=1s", "LEASE_TTL=3s",
		// The trickle's need is one service at target (no staffing
		// headroom): the test times the way back to it.
		"LATENCY_TARGET=0",
	}
	t.Cleanup(func() {
		script(t, "stack-down", env...)
		if s := webServices(t); len(s) > 0 {
			t.Errorf("web services left behind: %v", s)
		}
		for _, f := range []string{"label=lbscale.pool=" + swarmPool, "label=com.docker.stack.namespace=" + swarmStack} {
			if ids := docker(t, "ps", "-aq", "--filter", f); ids != "" {
				t.Errorf("containers left behind with %s: %s", f, ids)
			}
		}
		if nets := docker(t, "network", "ls", "-q", "--filter", "name=^"+swarmNetwork+"$"); nets != "" {
			t.Errorf("network %s left behind", swarmNetwork)
		}
	})
	start := time.Now()
	out := script(t, "stack-up", env...)
	t.Logf("scripts/stack-up took %v:\n%s", time.Since(start).Round(100*time.Millisecond), lastLines(out, 4))
	testenv.Eventually(t, 60*time.Second, "one ready web service", func() bool {
		return getStatus(t, admin).Replicas == 1 && len(webServices(t)) == 1
	})
	if ids := splitLines(docker(t, "ps", "-q", "--filter", "label=lbscale.pool="+swarmPool)); len(ids) != 1 {
		t.Fatalf("docker ps --filter label=lbscale.pool=%s lists %d containers, want the one web task", swarmPool, len(ids))
	}

	// A burst, then a trickle: grows, then shrinks by demand.
	const burst, trickle = 30.0, 3.0
	sh := shape{name: "burst then trickle", dur: 40 * time.Second, rate: func(s float64) float64 {
		if s < 12 {
			return burst
		}
		return trickle
	}}
	type sample struct {
		at float64 // seconds since the load started
		n  int     // web services
	}
	stop := make(chan struct{})
	sampled := make(chan []sample)
	go func() {
		start := time.Now()
		var samples []sample
		for {
			select {
			case <-stop:
				sampled <- samples
				return
			case <-time.After(500 * time.Millisecond):
			}
			samples = append(samples, sample{time.Since(start).Seconds(), len(webServices(t))})
		}
	}()
	outs := driveTo(t, sh, func(int) string { return proxy + "/" })
	close(stop)
	samples := <-sampled
	failed := 0
	for _, o := range outs {
		if o.code != http.StatusOK {
			failed++
		}
	}
	peak, shrunk := 0, -1.0
	for _, sm := range samples {
		peak = max(peak, sm.n)
		if sm.at >= 12 && sm.n == 1 && shrunk < 0 {
			shrunk = sm.at - 12
		}
		if sm.n > 1 {
			shrunk = -1
		}
	}
	t.Logf("%d requests, %d failed; web services peaked at %d; back to 1 service %.1fs after the burst ended (-1: not during the trickle)",
		len(outs), failed, peak, shrunk)
	if failed > 0 {
		t.Errorf("%d of %d requests failed across scale-up and scale-down", failed, len(outs))
	}
	if peak < 2 {
		t.Errorf("the burst did not grow the pool: peak %d web services", peak)
	}
	testenv.Eventually(t, 45*time.Second, "the pool shrinks back to 1 web service", func() bool {
		return len(webServices(t)) == 1 && getStatus(t, admin).Replicas == 1
	})

	// A killed web task comes back: Swarm restarts it, and the scaler starts
	// a replacement to hold MIN_REPLICAS meanwhile; the pool serves again
	// and then drains the surplus back to one service.
	before := readyIDs(getStatus(t, admin))
	victim := docker(t, "ps", "-q", "--filter", "label=lbscale.pool="+swarmPool)
	docker(t, "kill", victim)
	killed := time.Now()
	testenv.Eventually(t, 60*time.Second, "a web task other than the killed one serves", func() bool {
		running := splitLines(docker(t, "ps", "-q", "--filter", "label=lbscale.pool="+swarmPool))
		if len(running) == 0 || slices.Contains(running, victim) || getStatus(t, admin).Replicas < 1 {
			return false
		}
		code, _, err := tryHit(proxy + "/")
		return err == nil && code == http.StatusOK
	})
	serving := time.Since(killed)
	testenv.Eventually(t, 60*time.Second, "back to one web service after the kill", func() bool {
		return len(webServices(t)) == 1 && getStatus(t, admin).Replicas == 1 &&
			len(splitLines(docker(t, "ps", "-q", "--filter", "label=lbscale.pool="+swarmPool))) == 1
	})
	t.Logf("killed web task %s (backend %v): serving again after %v, back to one service (%v) after %v",
		victim, before, serving.Round(100*time.Millisecond), readyIDs(getStatus(t, admin)), time.Since(killed).Round(100*time.Millisecond))
}

// tryHit is one GET that reports a transport error instead of failing.
func tryHit(url string) (int, string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	res.Body.Close()
	return res.StatusCode, res.Header.Get("X-Server-Id"), nil
}

// TestSwarmPools deploys the stack with a pool file on a swarm of its own:
// lbscale's web server and go-httpbin as two pools routed by host, one
// single-replica web service per replica of each. The web pool serves at
// its minimum, go-httpbin scales from zero on its first request, an
// unknown host gets 404, and scripts/stack-down removes every pool's
// services and containers.
func TestSwarmPools(t *testing.T) {
	needDocker(t)
	swarmtest.Swarm(t)
	web, bin := swarmPool+"-web", swarmPool+"-bin"
	dir := t.TempDir()
	file := filepath.Join(dir, "pools.yml")
	testenv.ReplaceFile(t, file, fmt.Sprintf(`pools:
  %s:
    hosts: [web.test]
    image: lbscale/webserver:local
    min_replicas: 1
    max_replicas: 2
  %s:
    hosts: [bin.test]
    image: lbscale/httpbin:local
    health_path: /status/200
    min_replicas: 0
    max_replicas: 1
`, web, bin))
	ports := freePorts(t, 4)
	proxy := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	scalerAdmin := fmt.Sprintf("http://127.0.0.1:%d", ports[2])
	env := []string{
		"STACK_NAME=" + swarmStack, "POOL=" + swarmPool, "NETWORK=" + swarmNetwork, "LBSCALE_CONFIG=" + file,
		fmt.Sprintf("LB_PORT=%d", ports[0]), fmt.Sprintf("ADMIN_PORT=%d", ports[1]),
		fmt.Sprintf("SCALER_ADMIN_PORT=%d", ports[2]), fmt.Sprintf("SCALER_B_ADMIN_PORT=%d", ports[3]),
		"LEASE_TTL=3s", "DEPLOY_CANARY_TIME=3s", "DEPLOY_CANARY_REQUESTS=20",
	}
	services := func(p string) []string {
		return splitLines(docker(t, "service", "ls", "-q", "--filter", "label=lbscale.pool="+p))
	}
	t.Cleanup(func() {
		script(t, "stack-down", env...)
		for _, p := range []string{web, bin} {
			if s := services(p); len(s) > 0 {
				t.Errorf("web services of pool %s left behind: %v", p, s)
			}
			if ids := docker(t, "ps", "-aq", "--filter", "label=lbscale.pool="+p); ids != "" {
				t.Errorf("containers of pool %s left behind: %s", p, ids)
			}
		}
		if nets := docker(t, "network", "ls", "-q", "--filter", "name=^"+swarmNetwork+"$"); nets != "" {
			t.Errorf("network %s left behind", swarmNetwork)
		}
	})
	start := time.Now()
	out := script(t, "stack-up", env...)
	t.Logf("scripts/stack-up with a pool file took %v:\n%s", time.Since(start).Round(100*time.Millisecond), lastLines(out, 4))

	client := &http.Client{Timeout: 60 * time.Second}
	testenv.Eventually(t, 90*time.Second, "the web pool serves through the balancer", func() bool {
		code, _, _, err := hostGet(client, proxy+"/", "web.test")
		return err == nil && code == http.StatusOK
	})
	if n := len(services(web)); n != 1 {
		t.Errorf("web pool: %d services, want its minimum, 1", n)
	}
	if n := len(services(bin)); n != 0 {
		t.Fatalf("httpbin pool: %d services before any request, want 0", n)
	}
	if code, _, _, err := hostGet(client, proxy+"/", "nobody.test"); err != nil || code != http.StatusNotFound {
		t.Errorf("unknown host: %d %v, want 404", code, err)
	}
	begin := time.Now()
	code, _, body, err := hostGet(client, proxy+"/get", "bin.test")
	if err != nil || code != http.StatusOK || !strings.Contains(string(body), `"url"`) {
		t.Fatalf("first request to the httpbin pool on the swarm: %d %v %.200s", code, err, body)
	}
	t.Logf("go-httpbin on the swarm served its first request from zero services after %v", time.Since(begin).Round(time.Millisecond))
	if n := len(services(bin)); n != 1 {
		t.Errorf("httpbin pool: %d services after its first request, want 1", n)
	}
	var s scalerPools
	res, err := http.Get(scalerAdmin + "/status")
	if err == nil {
		_ = json.NewDecoder(res.Body).Decode(&s)
		res.Body.Close()
	}
	if strings.Join(s.Pools, ",") != web+","+bin {
		t.Errorf("scaler lists pools %v (%v), want %s and %s", s.Pools, err, web, bin)
	}

	// A deploy on the swarm: the web pool's services are replaced by ones
	// on the new image, under load, without a failed request.
	v2 := "lbscale/webserver:" + swarmPool + "-v2"
	docker(t, "tag", "lbscale/webserver:local", v2)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", v2).Run() })
	load := startHostLoadOn(proxy, "web.test", "/?sleep_ms=20", 10)
	cmd := exec.Command("bash", filepath.Join("scripts", "deploy"), web, v2)
	cmd.Dir = testenv.Root()
	cmd.Env = append(os.Environ(), "SCALER_URL="+scalerAdmin, "DEPLOY_WAIT=180", "SCALER_DRIVER=swarm")
	begin = time.Now()
	dout, derr := cmd.CombinedOutput()
	took := time.Since(begin)
	codes, errs := load.end()
	if derr != nil {
		t.Fatalf("scripts/deploy on the swarm: %v\n%s", derr, dout)
	}
	images := splitLines(docker(t, "service", "ls", "--filter", "label=lbscale.pool="+web, "--format", "{{.Image}}"))
	for _, img := range images {
		if !strings.HasPrefix(img, v2) {
			t.Errorf("web services after the deploy: %v, want every one on %s", images, v2)
			break
		}
	}
	for code, n := range codes {
		if code != http.StatusOK {
			t.Errorf("%d requests answered %d during the swarm deploy", n, code)
		}
	}
	if len(errs) > 0 {
		t.Errorf("%d requests failed during the swarm deploy: %v", len(errs), errs[:min(3, len(errs))])
	}
	t.Logf("deploy on the swarm: %v, %d services on %s, requests %v", took.Round(100*time.Millisecond), len(images), v2, codes)
}
