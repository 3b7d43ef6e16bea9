// Package testenv is how tests meet the real parts they run against: one
// rule for a part that is missing, and one way to wait for a condition.
//
// The rule: a test that needs a part this machine lacks is skipped, unless
// REQUIRE_<PART> is set (CI sets them), when it fails instead, so that a
// missing engine or server cannot pass for a green run. The packages below
// this one start the parts (statetest: redis-server and Sentinel,
// dockertest and swarmtest: the Docker engine, browsertest: Chromium,
// proctest: the commands as processes, tlstest: certificates).
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"lbscale/internal/envconf"
)

// Part is something a test needs from the machine.
type Part string

// The parts, each named as its REQUIRE_ variable ends.
const (
	Redis   Part = "REDIS"   // redis-server (and redis-sentinel where asked for) on PATH
	Docker  Part = "DOCKER"  // a Docker engine that answers, and the docker CLI
	Browser Part = "BROWSER" // Chromium
)

// EnvRequire is the variable that makes the part's absence a failure.
func (p Part) EnvRequire() string { return "REQUIRE_" + string(p) }

var (
	probeMu sync.Mutex
	probed  = map[Part]error{}
)

// available checks for p once per test binary: nil if it is there.
func available(p Part) error {
	probeMu.Lock()
	defer probeMu.Unlock()
	if err, ok := probed[p]; ok {
		return err
	}
	var err error
	switch p {
	case Redis:
		_, err = exec.LookPath("redis-server")
	case Docker:
		if out, derr := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); derr != nil {
			err = fmt.Errorf("docker info: %v: %s", derr, out)
		}
	case Browser:
		if BrowserPath() == "" {
			err = fmt.Errorf("chromium not found on PATH")
		}
	default:
		err = fmt.Errorf("unknown part %q", p)
	}
	probed[p] = err
	return err
}

// BrowserPath is Chromium's path, or "" when it is not installed.
func BrowserPath() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Require skips t when the machine lacks p, or fails it when p's
// REQUIRE_ variable is set.
func Require(t testing.TB, p Part) {
	t.Helper()
	if err := available(p); err != nil {
		Missing(t, p, err.Error())
	}
}

// Missing applies the rule to a part found wanting in a way Require does
// not check (redis-server without TLS, an engine that refuses to make a
// swarm): skip, or fail under REQUIRE_<p>.
func Missing(t testing.TB, p Part, why string) {
	t.Helper()
	if os.Getenv(p.EnvRequire()) != "" {
		t.Fatalf("%s is set, and this test cannot run: %s", p.EnvRequire(), why)
	}
	t.Skipf("%s; set %s=1 to fail instead of skipping", why, p.EnvRequire())
}

// Eventually waits until cond holds and returns how long that took, or
// fails t after within, naming what it waited for. It asks again after as
// long as the last ask took, from 10 ms to 250 ms: a cheap condition (in
// memory, or in a testing/synctest bubble, where it takes no time) is
// polled every 10 ms, so that a state that holds only for a moment is
// still seen, and a costly one (a docker ps, a compose cluster's /status)
// is not asked back to back.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		asked := time.Now()
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(min(max(time.Since(asked), 10*time.Millisecond), 250*time.Millisecond))
	}
}

// Root is the module root (the directory holding go.mod).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// ConfigDocs holds the section of docs/configuration.md headed section to
// a command's table of variables: every variable documented, nothing
// documented that is not read, and the defaults the same.
func ConfigDocs(t testing.TB, vars envconf.Table, section string) {
	t.Helper()
	md, err := os.ReadFile(filepath.Join(Root(), "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range vars.DocProblems(string(md), section) {
		t.Error(p)
	}
}

// ReplaceFile writes contents to path as an editor saves a file: a new
// file renamed over the old one (what a pool file's watcher must see as
// well as an in-place write).
func ReplaceFile(t testing.TB, path, contents string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(contents), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
