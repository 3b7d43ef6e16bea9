package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"lbscale/internal/testenv"
)

func docker(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	c := exec.Command("docker", args...)
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	if err != nil {
		return strings.TrimSpace(out.String() + errb.String()), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, errb.String())
	}
	return strings.TrimSpace(out.String()), nil
}

func mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := docker(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestImage builds the webserver image with scripts/images (under a
// test-only tag) and checks what the compose file and the scaler rely on:
// FROM scratch, non-root, the self health check turning the container
// healthy, X-Server-Id = the container's hostname, exit 2 on a bad
// variable, and a clean exit 0 after draining on docker stop.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Docker image")
	}
	testenv.Require(t, testenv.Docker)
	tag := fmt.Sprintf("test-%d-%d", os.Getpid(), time.Now().UnixNano()%1_000_000)
	image := "lbscale/webserver:" + tag
	label := "lbscale.project=lbscale-webserver-test-" + tag

	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command(filepath.Join(root, "scripts", "images"), "webserver")
	build.Env = append(os.Environ(), "IMAGE_TAG="+tag, "IMAGES_CONTEXT="+t.TempDir())
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/images webserver: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = docker(t, "image", "rm", "-f", image) })

	cfg := mustDocker(t, "image", "inspect", "-f", "{{.Config.User}}|{{json .Config.Entrypoint}}|{{json .Config.Healthcheck.Test}}|{{.Size}}", image)
	parts := strings.Split(cfg, "|")
	if parts[0] != "65532:65532" || parts[1] != `["/entrypoint"]` || !strings.Contains(parts[2], `"healthcheck"`) {
		t.Errorf("image config: %s", cfg)
	}
	if size, _ := strconv.ParseInt(parts[3], 10, 64); size <= 0 || size > 30<<20 {
		t.Errorf("image size %d bytes: not a FROM-scratch single binary", size)
	}

	// Invalid configuration: exit 2 naming the variable.
	out, err := docker(t, "run", "--rm", "--label", label, "-e", "CAPACITY=-1", image)
	if err == nil || !strings.Contains(err.Error(), "exit status 2") || !strings.Contains(out, "CAPACITY") {
		t.Errorf("bad CAPACITY: %v\n%s", err, out)
	}

	cid := mustDocker(t, "run", "-d", "--label", label, "-p", "127.0.0.1::8080",
		"--health-interval", "500ms", "--health-start-period", "1s", "-e", "CAPACITY=2", image)
	t.Cleanup(func() { _, _ = docker(t, "rm", "-f", cid) })

	deadline := time.Now().Add(60 * time.Second)
	for {
		st := mustDocker(t, "inspect", "-f", "{{.State.Status}} {{.State.Health.Status}}", cid)
		if st == "running healthy" {
			break
		}
		if time.Now().After(deadline) || strings.HasPrefix(st, "exited") {
			logs, _ := docker(t, "logs", cid)
			t.Fatalf("container never healthy (%s):\n%s", st, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}

	hostname := mustDocker(t, "inspect", "-f", "{{.Config.Hostname}}", cid)
	addr := mustDocker(t, "port", cid, "8080/tcp")
	addr = strings.SplitN(addr, "\n", 2)[0]
	res, err := http.Get("http://" + addr + "/?sleep_ms=10")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("X-Server-Id") != hostname || !strings.Contains(string(body), hostname) {
		t.Errorf("GET /: %d X-Server-Id=%q body %q, want the hostname %q", res.StatusCode, res.Header.Get("X-Server-Id"), body, hostname)
	}

	// docker stop during a request: it completes, the server exits 0.
	done := make(chan int, 1)
	go func() {
		res, err := http.Get("http://" + addr + "/?sleep_ms=1500")
		if err != nil {
			done <- 0
			return
		}
		res.Body.Close()
		done <- res.StatusCode
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var l struct{ Inflight int }
		if res, err := http.Get("http://" + addr + "/load"); err == nil {
			_ = json.NewDecoder(res.Body).Decode(&l)
			res.Body.Close()
		}
		if l.Inflight == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the request never got in")
		}
	}
	mustDocker(t, "stop", "-t", "20", cid)
	if code := <-done; code != 200 {
		t.Errorf("request in flight at docker stop got %d, want 200", code)
	}
	if exit := mustDocker(t, "inspect", "-f", "{{.State.ExitCode}}", cid); exit != "0" {
		logs, _ := docker(t, "logs", cid)
		t.Errorf("exit code after docker stop: %s\n%s", exit, logs)
	}
}
