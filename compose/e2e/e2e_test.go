// Package e2e tests the whole cluster as users run it: scripts/up, requests
// through both published balancers, the scaler's containers on the real
// Docker engine, scripts/down. The tests skip without a Docker engine unless
// REQUIRE_DOCKER is set, and run one at a time.
//
// They bring up a cluster of their own beside any the user runs: compose
// project lbscale-e2e, pool e2e, network lbscale-e2e, and free loopback
// ports, so scripts/test never reconfigures or tears down the cluster that
// scripts/up started, and removes only what it started itself.
package e2e

import (
	"encoding/json"
	"fmt"
	"io"
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
)

// The test cluster's identity: apart from the user's (project lbscale,
// pool web, network lbscale, ports 8081/8082/9091/9092). LBSCALE_E2E_NAME
// (a pool name) sets all three apart again, so that a long benchmark
// (scripts/exp-efficiency) runs beside the test suite.
var (
	pool    = envOr("LBSCALE_E2E_NAME", "e2e")
	project = "lbscale-" + pool
	network = "lbscale-" + pool
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Set by TestMain from free loopback ports.
var (
	proxyA, proxyB, adminA, adminB string
	adminScaler, adminScalerB      string
	clusterEnv                     []string
)

// poolFilter selects the scaler's containers of the test cluster.
var poolFilter = "label=lbscale.pool=" + pool

func needDocker(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("compose end-to-end test skipped in -short mode")
	}
	testenv.Require(t, testenv.Docker)
}

// script runs scripts/<name> from the repository root with env added.
func script(t *testing.T, name string, env ...string) string {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join("scripts", name))
	cmd.Dir = testenv.Root()
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/%s: %v\n%s", name, err, out)
	}
	return string(out)
}

// up brings the cluster up and registers scripts/down (and a check that
// nothing is left) for cleanup.
func up(t *testing.T, env ...string) time.Duration {
	t.Helper()
	env = append(env, clusterEnv...)
	start := time.Now()
	t.Cleanup(func() {
		script(t, "down", env...)
		assertNothingLeft(t)
	})
	out := script(t, "up", env...)
	took := time.Since(start)
	t.Logf("scripts/up took %v:\n%s", took.Round(100*time.Millisecond), lastLines(out, 8))
	return took
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func docker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func assertNothingLeft(t *testing.T) {
	t.Helper()
	for _, f := range []string{poolFilter, "label=com.docker.compose.project=" + project} {
		if ids := docker(t, "ps", "-aq", "--filter", f); ids != "" {
			t.Errorf("containers left behind with %s: %s", f, ids)
		}
	}
	if nets := docker(t, "network", "ls", "-q", "--filter", "name=^"+network+"$"); nets != "" {
		t.Errorf("network %s left behind: %s", network, nets)
	}
	if vols := docker(t, "volume", "ls", "-q", "--filter", "label=com.docker.compose.project="+project); vols != "" {
		t.Errorf("volumes left behind: %s", vols)
	}
}

// backend is one entry of a balancer's /status, as far as the tests read it.
type backend struct {
	ID           string     `json:"id"`
	Addr         string     `json:"addr"`
	State        string     `json:"state"`
	Grant        int64      `json:"grant"`
	Limit        int64      `json:"limit"`
	Failures     uint64     `json:"failures"`
	EjectedUntil *time.Time `json:"ejected_until"`
}

// status is a balancer's /status, as far as the tests read it.
type status struct {
	Replicas  int       `json:"replicas"`
	StoreUp   bool      `json:"store_up"`
	Balancers int       `json:"balancers"`
	Backends  []backend `json:"backends"`
}

func getStatus(t *testing.T, admin string) status {
	t.Helper()
	res, err := http.Get(admin + "/status")
	if err != nil {
		t.Fatalf("GET %s/status: %v", admin, err)
	}
	defer res.Body.Close()
	var s status
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func readyIDs(s status) []string {
	var ids []string
	for _, b := range s.Backends {
		if b.State == "ready" {
			ids = append(ids, b.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

func hit(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 60 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode, res.Header.Get("X-Server-Id")
}

// TestComposeCluster: MIN_REPLICAS=3 brings three web servers; requests
// through both balancers reach every one; both balancers see the same
// registry; a container killed from outside is replaced within 10 s.
func TestComposeCluster(t *testing.T) {
	needDocker(t)
	up(t, "MIN_REPLICAS=3", "MAX_REPLICAS=5", "LB_POLICY=round-robin")
	testenv.Eventually(t, 30*time.Second, "3 replicas on both balancers", func() bool {
		return getStatus(t, adminA).Replicas == 3 && getStatus(t, adminB).Replicas == 3
	})
	a, b := readyIDs(getStatus(t, adminA)), readyIDs(getStatus(t, adminB))
	if !slices.Equal(a, b) {
		t.Fatalf("balancers disagree on the registry: A %v, B %v", a, b)
	}
	servers := map[string]int{}
	for i := range 30 {
		for _, p := range []string{proxyA, proxyB} {
			code, id := hit(t, p+"/")
			if code != http.StatusOK || id == "" {
				t.Fatalf("request %d via %s: status %d, server %q", i, p, code, id)
			}
			servers[id]++
		}
	}
	if len(servers) != 3 {
		t.Fatalf("want all 3 web servers to answer, got %v", servers)
	}
	t.Logf("60 requests through both balancers reached %v", servers)

	// docker kill one of the scaler's containers: it leaves the registry and
	// a replacement brings the count back to 3.
	victim := a[0]
	docker(t, "kill", victim)
	start := time.Now()
	testenv.Eventually(t, 10*time.Second, "killed container leaves the registry", func() bool {
		return !slices.Contains(readyIDs(getStatus(t, adminA)), victim)
	})
	took := testenv.Eventually(t, 20*time.Second, "a replacement brings the registry back to 3", func() bool {
		ids := readyIDs(getStatus(t, adminA))
		return len(ids) == 3 && !slices.Contains(ids, victim)
	})
	t.Logf("killed %s; registry back at 3 after %v", victim, (time.Since(start)).Round(100*time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("replacement took %v, want within 10 s", took)
	}
	if code, _ := hit(t, proxyA+"/"); code != http.StatusOK {
		t.Fatalf("after replacement: %d", code)
	}
}

// TestScaleFromZero: with MIN_REPLICAS=0 an idle pool drains to no
// container at all; the next request waits in the queue while a container
// starts, and is served.
func TestScaleFromZero(t *testing.T) {
	needDocker(t)
	up(t, "MIN_REPLICAS=0", "MAX_REPLICAS=2", "IDLE_TIMEOUT=3s", "SCALE_DOWN_INTERVAL=1s")
	testenv.Eventually(t, 60*time.Second, "the idle pool scales down to zero", func() bool {
		return getStatus(t, adminA).Replicas == 0 && getStatus(t, adminB).Replicas == 0 &&
			docker(t, "ps", "-q", "--filter", poolFilter) == ""
	})
	start := time.Now()
	code, id := hit(t, proxyB+"/")
	took := time.Since(start)
	if code != http.StatusOK || id == "" {
		t.Fatalf("first request from zero: status %d, server %q", code, id)
	}
	t.Logf("first request from zero containers served by %s after %v", id, took.Round(time.Millisecond))
	for _, p := range []string{proxyA, proxyB} {
		if code, _ := hit(t, p+"/"); code != http.StatusOK {
			t.Fatalf("next request via %s: %d", p, code)
		}
	}
}

func TestMain(m *testing.M) {
	// Six listeners open at once keep the six ports distinct; all are
	// closed before the tests run, for compose to bind.
	var ports [6]int
	var ls []net.Listener
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "compose e2e: no free loopback port:", err)
			os.Exit(1)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		ls = append(ls, l)
	}
	for _, l := range ls {
		l.Close()
	}
	proxyA, proxyB = fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	adminA, adminB = fmt.Sprintf("http://127.0.0.1:%d", ports[2]), fmt.Sprintf("http://127.0.0.1:%d", ports[3])
	adminScaler = fmt.Sprintf("http://127.0.0.1:%d", ports[4])
	adminScalerB = fmt.Sprintf("http://127.0.0.1:%d", ports[5])
	clusterEnv = []string{
		"COMPOSE_PROJECT_NAME=" + project, "POOL=" + pool, "NETWORK=" + network,
		fmt.Sprintf("LB_A_PORT=%d", ports[0]), fmt.Sprintf("LB_B_PORT=%d", ports[1]),
		fmt.Sprintf("ADMIN_A_PORT=%d", ports[2]), fmt.Sprintf("ADMIN_B_PORT=%d", ports[3]),
		fmt.Sprintf("SCALER_ADMIN_PORT=%d", ports[4]), fmt.Sprintf("SCALER_B_ADMIN_PORT=%d", ports[5]),
	}
	fmt.Fprintf(os.Stderr, "compose e2e: project %s, pool %s, balancers on 127.0.0.1:%d/%d, one test at a time\n", project, pool, ports[0], ports[1])
	os.Exit(m.Run())
}
