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
