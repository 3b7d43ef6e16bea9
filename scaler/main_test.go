package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"lbscale/internal/state"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv"
	"lbscale/internal/testenv/dockertest"
	"lbscale/internal/testenv/statetest"
	"lbscale/scaler/control"
	"lbscale/scaler/driver"
)

// These tests run the scaler binary itself: its configuration errors, and
// two real scaler processes sharing one Redis, one of them SIGKILLed.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lbscale-scaler-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "scaler")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build scaler: %v\n%s", err, out)
		os.Exit(1)
	}
	code := dockertest.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is the process environment with vars replacing any inherited value
// of the scaler's variables.
func env(vars map[string]string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, mine := vars[k]; !mine {
			out = append(out, kv)
		}
	}
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	return out
}

func TestInvalidConfigurationExitsTwoNamingTheVariable(t *testing.T) {
	tests := []struct {
		vars map[string]string
		want []string
	}{
		{map[string]string{"REDIS_URL": ""}, []string{"REDIS_URL", "required"}},
		{map[string]string{"REDIS_URL": "redis://127.0.0.1:1", "SCALER_DRIVER": "swarm"}, []string{"NETWORK", "overlay"}},
		{map[string]string{"REDIS_URL": "redis://127.0.0.1:1", "WEB_CONSTRAINTS": "node.role==worker"}, []string{"WEB_CONSTRAINTS", "SCALER_DRIVER=swarm"}},
		{map[string]string{"REDIS_URL": "redis://127.0.0.1:1", "MIN_REPLICAS": "4", "MAX_REPLICAS": "2", "CPU_LIMIT": "lots"}, []string{"MAX_REPLICAS", "CPU_LIMIT"}},
	}
	for _, tt := range tests {
		cmd := exec.Command(binary)
		cmd.Env = env(tt.vars)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 2 {
			t.Errorf("%v: exit %v, want status 2", tt.vars, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("%v: stderr %q does not mention %s", tt.vars, stderr.String(), w)
			}
		}
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type proc struct {
	id, admin string
	cmd       *exec.Cmd
	out       *bytes.Buffer
}

func startScaler(t *testing.T, id string, vars map[string]string) *proc {
	p := &proc{id: id, admin: freeAddr(t), out: &bytes.Buffer{}}
	all := map[string]string{"SCALER_ID": id, "ADMIN_ADDR": p.admin}
	for k, v := range vars {
		all[k] = v
	}
	p.cmd = exec.Command(binary)
	p.cmd.Env = env(all)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("scaler %s output:\n%s", id, p.out)
		}
	})
	return p
}

func (p *proc) status(t *testing.T) (control.Status, bool) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.admin + "/status")
	if err != nil {
		return control.Status{}, false
	}
	defer resp.Body.Close()
	var s control.Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("decode %s status: %v", p.id, err)
	}
	return s, true
}

func TestLeaderKilledOtherScalerTakesOverAndTermReleases(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (Docker) skipped in -short mode")
	}
	cli := dockertest.Client(t)
	redis := statetest.StartRedis(t)
	img := dockertest.WebImage(t, cli)
	netName := dockertest.Network(t, cli)
	pool := dockertest.Pool(t, cli)
	vars := map[string]string{
		"REDIS_URL": redis.URL(), "POOL": pool, "NETWORK": netName, "WEB_IMAGE": img,
		"MIN_REPLICAS": "2", "MAX_REPLICAS": "4", "LEASE_TTL": "1500ms", "RECONCILE_INTERVAL": "500ms",
		"LOG_LEVEL": "debug",
	}
	a := startScaler(t, "scaler-a", vars)
	b := startScaler(t, "scaler-b", vars)

	store, err := redisstore.New(redis.URL(), pool)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ready := func() []state.Backend {
		bs, err := store.Backends(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var out []state.Backend
		for _, b := range bs {
			if b.State == state.Ready {
				out = append(out, b)
			}
		}
		return out
	}
	testenv.Eventually(t, 60*time.Second, "2 ready", func() bool { return len(ready()) == 2 })

	var leader, follower *proc
	testenv.Eventually(t, 10*time.Second, "exactly one leader", func() bool {
		sa, okA := a.status(t)
		sb, okB := b.status(t)
		switch {
		case okA && okB && sa.Leader && !sb.Leader:
			leader, follower = a, b
		case okA && okB && sb.Leader && !sa.Leader:
			leader, follower = b, a
		default:
			return false
		}
		return true
	})
	if n := dockertest.Count(t, cli, driver.PoolFilter(pool)); n != 2 {
		t.Fatalf("%d containers with two scalers and MIN_REPLICAS=2", n)
	}
	resp, err := http.Get("http://" + leader.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var metrics bytes.Buffer
	_, _ = metrics.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(metrics.String(), `lbscale_scaler_leader{pool="`+pool+`"} 1`) {
		t.Fatalf("leader's /metrics lacks leader 1:\n%s", metrics.String())
	}

	// SIGKILL: no release; the lease must expire and the follower act.
	killed := time.Now()
	if err := leader.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = leader.cmd.Wait()
	testenv.Eventually(t, 15*time.Second, "follower leads", func() bool { s, ok := follower.status(t); return ok && s.Leader })
	t.Logf("takeover %s after SIGKILL of the leader (LEASE_TTL 1.5s)", time.Since(killed).Round(time.Millisecond))
	// It acts: a container killed now is replaced by the new leader.
	victim := ready()[0].ID
	if err := cli.ContainerKill(context.Background(), victim, "KILL"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, "replacement ready", func() bool {
		r := ready()
		return len(r) == 2 && r[0].ID != victim && r[1].ID != victim
	})

	// SIGTERM: clean exit 0, lease released at once.
	if err := follower.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := follower.cmd.Wait(); err != nil {
		t.Fatalf("scaler exit after SIGTERM: %v", err)
	}
	l, err := store.AcquireLease(context.Background(), "probe", time.Millisecond)
	if err != nil || !l.HeldBy("probe") {
		t.Fatalf("lease still held after a clean stop: %+v %v", l, err)
	}
}

func TestInvalidPoolFileExitsTwoNamingFileLineAndKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pools.yml")
	file := "pools:\n  web:\n    min_replicas: 2\n  api:\n    min_replicas: 3\n    max_replicas: 2\n    health_path: healthz\n  bad-:\n    max_inflite: 1\n"
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		vars map[string]string
		want []string
	}{
		// Parsing: the unknown key, with its line.
		{map[string]string{"REDIS_URL": "redis://127.0.0.1:1", "LBSCALE_CONFIG": path}, []string{path + ":9: pools.bad-.max_inflite: unknown setting"}},
		{map[string]string{"REDIS_URL": "redis://127.0.0.1:1", "LBSCALE_CONFIG": filepath.Join(t.TempDir(), "missing.yml")}, []string{"LBSCALE_CONFIG", "missing.yml"}},
	} {
		assertExitTwo(t, tt.vars, tt.want)
	}
	// Values: each pool's problem at its line; the environment's once.
	file = "pools:\n  web:\n    min_replicas: 2\n  api:\n    min_replicas: 3\n    max_replicas: 2\n    health_path: healthz\n"
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	assertExitTwo(t, map[string]string{"REDIS_URL": "", "LBSCALE_CONFIG": path}, []string{
		path + ":6: pools.api.max_replicas: MAX_REPLICAS: 2 is below MIN_REPLICAS=3",
		path + ":7: pools.api.health_path: HEALTH_PATH",
		"REDIS_URL",
	})
}

func assertExitTwo(t *testing.T, vars map[string]string, want []string) {
	t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = env(vars)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("%v: exit %v, want status 2", vars, err)
	}
	for _, w := range want {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("%v: stderr %q does not say %q", vars, stderr.String(), w)
		}
	}
	if n := strings.Count(stderr.String(), "REDIS_URL"); n > 1 {
		t.Errorf("an environment variable's problem is told %d times, once per pool:\n%s", n, stderr.String())
	}
}

// Two scaler processes, a pool file with two pools: each pool gets its
// containers and one leader, either scaler's /status reports each pool as
// its leader sees it, and a change of the file (a pool removed, another's
// min_replicas raised) is applied by both without a restart: the removed
// pool's containers are drained and gone, the other grows.
func TestPoolFileTwoPoolsAndReload(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (Docker) skipped in -short mode")
	}
	cli := dockertest.Client(t)
	redis := statetest.StartRedis(t)
	img := dockertest.WebImage(t, cli)
	netName := dockertest.Network(t, cli)
	web, api := dockertest.Pool(t, cli), dockertest.Pool(t, cli)
	path := filepath.Join(t.TempDir(), "pools.yml")
	write := func(s string) { t.Helper(); testenv.ReplaceFile(t, path, s) }
	head := fmt.Sprintf("defaults:\n  image: %s\npools:\n", img)
	write(head + fmt.Sprintf("  %s:\n    min_replicas: 2\n  %s:\n    min_replicas: 1\n    health_path: /\n", web, api))
	vars := map[string]string{
		"REDIS_URL": redis.URL(), "LBSCALE_CONFIG": path, "NETWORK": netName, "POOL": "", "WEB_IMAGE": "",
		"MIN_REPLICAS": "", "LEASE_TTL": "1500ms", "RECONCILE_INTERVAL": "500ms", "DRAIN_SETTLE": "300ms",
		"STOP_GRACE": "2s", "LOG_LEVEL": "debug",
	}
	a := startScaler(t, "scaler-a", vars)
	b := startScaler(t, "scaler-b", vars)

	ready := func(pool string) int {
		s, err := redisstore.New(redis.URL(), pool)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		bs, err := s.Backends(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, b := range bs {
			if b.State == state.Ready {
				n++
			}
		}
		return n
	}
	testenv.Eventually(t, 90*time.Second, "web 2 and api 1 ready", func() bool { return ready(web) == 2 && ready(api) == 1 })
	for _, pool := range []string{web, api} {
		testenv.Eventually(t, 10*time.Second, "one leader of "+pool+", both scalers reporting its replicas", func() bool {
			sa, okA := a.poolStatus(t, pool)
			sb, okB := b.poolStatus(t, pool)
			return okA && okB && sa.Leader != sb.Leader && sa.Replicas == sb.Replicas && sa.Replicas == ready(pool) &&
				slices.Equal(sa.Pools, []string{web, api})
		})
	}
	if n := dockertest.Count(t, cli, driver.PoolFilter(api)); n != 1 {
		t.Fatalf("%d api containers with two scalers and min_replicas 1", n)
	}

	changed := time.Now()
	write(head + fmt.Sprintf("  %s:\n    min_replicas: 3\n", web))
	took := testenv.Eventually(t, 60*time.Second, "api gone", func() bool {
		return dockertest.Count(t, cli, driver.PoolFilter(api)) == 0 && ready(api) == 0
	})
	t.Logf("removed pool drained and gone %s after the file changed", took.Round(time.Millisecond))
	testenv.Eventually(t, 60*time.Second, "web 3", func() bool { return ready(web) == 3 })
	t.Logf("raised min_replicas reached %s after the file changed", time.Since(changed).Round(time.Millisecond))
	for _, p := range []*proc{a, b} {
		if _, ok := p.poolStatus(t, api); ok {
			t.Fatalf("%s still reports the removed pool", p.id)
		}
	}

	write("pools: [\n")
	testenv.Eventually(t, 10*time.Second, "the broken file in both scalers' /status", func() bool {
		sa, okA := a.poolStatus(t, "")
		sb, okB := b.poolStatus(t, "")
		return okA && okB && strings.Contains(sa.Problems["pool file"], path) && strings.Contains(sb.Problems["pool file"], path)
	})
	if ready(web) != 3 {
		t.Fatal("a broken file changed the running pool")
	}
}

// poolStatus reads /status?pool=pool (ok false: no answer, or 404).
func (p *proc) poolStatus(t *testing.T, pool string) (control.Status, bool) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.admin + "/status?pool=" + pool)
	if err != nil {
		return control.Status{}, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return control.Status{}, false
	}
	var s control.Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatalf("decode %s status: %v", p.id, err)
	}
	return s, true
}
