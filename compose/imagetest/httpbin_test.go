// Package imagetest runs, on a real Docker engine, the images scripts/images
// builds from code that is not lbscale's own (the lbscale commands' images
// are tested beside their code, as in webserver/image_test.go).
package imagetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lbscale/internal/testenv"
	"lbscale/internal/testenv/dockertest"
)

const (
	// httpbinRepo is the repository scripts/images tags the image in.
	httpbinRepo = "lbscale/httpbin"
	// httpbinModule is the module go.mod's tool directive pins.
	httpbinModule = "github.com/mccutchen/go-httpbin/v2"
	// nonroot is the user every lbscale image runs as (compose/rootfs).
	nonroot = "65532:65532"
)

// TestHTTPBinImage builds lbscale/httpbin with scripts/images under a
// test-only tag (or, with SKIP_BUILD=1, takes the :local one when it is
// there) and checks what running it behind lbscale relies on: FROM scratch
// and non-root, the labels of the other images plus the pinned version,
// /status/200 as the health path, the request echoed by /get, PORT obeyed,
// and a clean exit 0 on docker stop.
func TestHTTPBinImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a Docker image")
	}
	testenv.Require(t, testenv.Docker)
	image := httpbinImage(t)
	label := dockertest.LabelTest + "=" + dockertest.Unique("httpbin-image")

	var cfg struct {
		User         string
		Entrypoint   []string
		ExposedPorts map[string]struct{}
		Labels       map[string]string
		Healthcheck  *struct{ Test []string }
	}
	var size int64
	inspectJSON(t, image, "{{json .Config}}", &cfg)
	inspectJSON(t, image, "{{json .Size}}", &size)
	if cfg.User != nonroot || strings.Join(cfg.Entrypoint, " ") != "/entrypoint" {
		t.Errorf("user %q entrypoint %q, want %q and /entrypoint", cfg.User, cfg.Entrypoint, nonroot)
	}
	if _, ok := cfg.ExposedPorts["8080/tcp"]; !ok {
		t.Errorf("exposed ports %v, want 8080/tcp", cfg.ExposedPorts)
	}
	if cfg.Healthcheck != nil {
		t.Errorf("health check %v: the binary has no self-probe, and scratch has no shell", cfg.Healthcheck.Test)
	}
	version := strings.TrimSpace(mustRun(t, exec.Command("go", "list", "-m", "-f", "{{.Version}}", httpbinModule), testenv.Root()))
	want := map[string]string{
		"org.opencontainers.image.title":   "lbscale httpbin",
		"org.opencontainers.image.source":  "lbscale",
		"org.opencontainers.image.version": version,
	}
	for k, v := range want {
		if cfg.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cfg.Labels[k], v)
		}
	}
	if size <= 0 || size > 30<<20 {
		t.Errorf("image size %d bytes: not a FROM-scratch single binary", size)
	}

	t.Run("default port", func(t *testing.T) {
		cid, base := runHTTPBin(t, image, label, 8080)

		if code := get(t, base+"/status/503", nil, nil); code != http.StatusServiceUnavailable {
			t.Errorf("GET /status/503: %d, want 503 (the path sets the status)", code)
		}

		probe := dockertest.Unique("probe")
		var echo struct {
			Method  string              `json:"method"`
			Headers map[string][]string `json:"headers"`
			Args    map[string][]string `json:"args"`
		}
		if code := get(t, base+"/get?q=1", http.Header{"X-Lbscale-Probe": {probe}}, &echo); code != http.StatusOK {
			t.Fatalf("GET /get: %d", code)
		}
		if echo.Method != http.MethodGet || strings.Join(echo.Headers["X-Lbscale-Probe"], ",") != probe || strings.Join(echo.Args["q"], ",") != "1" {
			t.Errorf("GET /get echoed %+v, want method GET, X-Lbscale-Probe %q and q=1", echo, probe)
		}

		if u := mustDocker(t, "inspect", "-f", "{{.Config.User}}", cid); u != nonroot {
			t.Errorf("container user %q, want %q", u, nonroot)
		}
		// The process as the engine's host sees it; under user-namespace
		// remapping its uid is shifted, and only the configured user counts.
		if sec := mustDocker(t, "info", "-f", "{{json .SecurityOptions}}"); strings.Contains(sec, "userns") {
			t.Log("user namespaces remapped: process uid not compared")
		} else {
			// docker top needs the PID column; the fields are the header
			// (PID UID) and then one pair per process.
			f := strings.Fields(mustDocker(t, "top", cid, "-o", "pid,uid"))
			if len(f) != 4 || f[3] != "65532" {
				t.Errorf("docker top -o pid,uid: %q, want one process with uid 65532", f)
			}
		}

		// docker stop sends SIGTERM: go-httpbin shuts down and exits 0
		// (PID 1 ignoring it would be killed after the timeout: 137).
		mustDocker(t, "stop", "-t", "10", cid)
		if exit := mustDocker(t, "inspect", "-f", "{{.State.ExitCode}}", cid); exit != "0" {
			logs, _ := docker("logs", cid)
			t.Errorf("exit code after docker stop: %s\n%s", exit, logs)
		}
	})

	t.Run("PORT", func(t *testing.T) {
		runHTTPBin(t, image, label, 9090, "PORT=9090")
	})
}

// httpbinImage returns the image under test: lbscale/httpbin:local when
// SKIP_BUILD=1 and it exists (scripts/test builds it first), else one built
// here by scripts/images under a unique tag, removed when t ends.
func httpbinImage(t *testing.T) string {
	t.Helper()
	if os.Getenv("SKIP_BUILD") == "1" {
		local := httpbinRepo + ":local"
		if _, err := docker("image", "inspect", local); err == nil {
			t.Logf("SKIP_BUILD=1: testing %s", local)
			return local
		}
		t.Logf("SKIP_BUILD=1 but %s:local is missing: building", httpbinRepo)
	}
	tag := dockertest.Unique("t")
	image := httpbinRepo + ":" + tag
	t.Cleanup(func() {
		if _, err := docker("image", "rm", "-f", image); err != nil {
			t.Errorf("remove %s: %v", image, err)
		}
	})
	build := exec.Command(filepath.Join(testenv.Root(), "scripts", "images"), "httpbin")
	build.Env = append(os.Environ(), "IMAGE_TAG="+tag, "IMAGES_CONTEXT="+t.TempDir())
	start := time.Now()
	mustRun(t, build, "")
	t.Logf("scripts/images httpbin: %s in %v", image, time.Since(start).Round(time.Millisecond))
	return image
}

// runHTTPBin starts image with its port published on a free port of
// 127.0.0.1, removed when t ends, and waits until GET /status/200 answers
// 200. It returns the container id and the base URL.
func runHTTPBin(t *testing.T, image, label string, port int, env ...string) (cid, base string) {
	t.Helper()
	args := []string{"run", "-d", "--label", label, "-p", fmt.Sprintf("127.0.0.1::%d", port)}
	for _, e := range env {
		args = append(args, "-e", e)
	}
	cid = mustDocker(t, append(args, image)...)
	t.Cleanup(func() {
		if _, err := docker("rm", "-f", cid); err != nil {
			t.Errorf("remove container %s: %v", cid, err)
		}
	})
	addr := strings.SplitN(mustDocker(t, "port", cid, fmt.Sprintf("%d/tcp", port)), "\n", 2)[0]
	base = "http://" + addr
	testenv.Eventually(t, 30*time.Second, "GET /status/200 answers 200", func() bool {
		if st := mustDocker(t, "inspect", "-f", "{{.State.Status}}", cid); st != "running" {
			logs, _ := docker("logs", cid)
			t.Fatalf("container %s before it answered:\n%s", st, logs)
		}
		res, err := client.Get(base + "/status/200")
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
	return cid, base
}

var client = &http.Client{Timeout: 5 * time.Second}

// get sends GET url with header and decodes a JSON answer into into (when
// not nil); it returns the status code.
func get(t *testing.T, url string, header http.Header, into any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	if into != nil {
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Fatalf("GET %s: Content-Type %q, want JSON:\n%s", url, ct, body)
		}
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("GET %s: %v:\n%s", url, err, body)
		}
	}
	return res.StatusCode
}

// inspectJSON decodes docker image inspect's format output into v.
func inspectJSON(t *testing.T, image, format string, v any) {
	t.Helper()
	out := mustDocker(t, "image", "inspect", "-f", format, image)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("image inspect %s %s: %v: %s", image, format, err, out)
	}
}

// docker runs the docker CLI and returns its trimmed standard output.
func docker(args ...string) (string, error) {
	var out, errb bytes.Buffer
	c := exec.Command("docker", args...)
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		return strings.TrimSpace(out.String()), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}

func mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	out, err := docker(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mustRun runs c in dir (when not "") and returns its standard output, or
// fails t with everything it printed.
func mustRun(t *testing.T, c *exec.Cmd, dir string) string {
	t.Helper()
	if dir != "" {
		c.Dir = dir
	}
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		t.Fatalf("%s: %v\n%s%s", strings.Join(c.Args, " "), err, out.String(), errb.String())
	}
	return out.String()
}
