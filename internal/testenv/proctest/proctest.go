// Package proctest builds lbscale's commands and runs them as real processes
// for integration tests: free loopback ports, readiness waits, and a stop at
// test cleanup by process id (never by name).
package proctest

import (
	"bytes"
	"fmt"
	"lbscale/internal/testenv"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildMu sync.Mutex
	built   = map[string]string{}
	binDir  string
)

// Build compiles ./<cmd> (e.g. "webserver") once per test binary and
// returns the executable's path.
func Build(t testing.TB, cmd string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[cmd]; ok {
		return p
	}
	if binDir == "" {
		d, err := os.MkdirTemp("", "lbscale-bin-")
		if err != nil {
			t.Fatal(err)
		}
		binDir = d
	}
	out := filepath.Join(binDir, cmd)
	c := exec.Command("go", "build", "-o", out, "./"+cmd)
	c.Dir = testenv.Root()
	if b, err := c.CombinedOutput(); err != nil {
		t.Fatalf("go build ./%s: %v\n%s", cmd, err, b)
	}
	built[cmd] = out
	return out
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Proc is a running command.
type Proc struct {
	Cmd    *exec.Cmd
	Stderr *bytes.Buffer
	name   string
	mu     sync.Mutex
	done   chan struct{}
}

// Start runs bin with env added to a minimal environment and stops it
// (SIGTERM, then SIGKILL after 5 s) at cleanup.
func Start(t testing.TB, name, bin string, env ...string) *Proc {
	t.Helper()
	return StartArgs(t, name, bin, nil, env...)
}

// StartArgs is Start with command-line arguments (for programs that are
// not ours, such as haproxy and nginx in the edge comparison).
func StartArgs(t testing.TB, name, bin string, args []string, env ...string) *Proc {
	t.Helper()
	c := exec.Command(bin, args...)
	c.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir()}, env...)
	p := &Proc{Cmd: c, Stderr: &bytes.Buffer{}, name: name, done: make(chan struct{})}
	c.Stderr = &lockedWriter{p: p}
	c.Stdout = c.Stderr
	if err := c.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = c.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.Output())
		}
	})
	return p
}

type lockedWriter struct{ p *Proc }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.Stderr.Write(b)
}

// Output is what the process wrote so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.Stderr.String()
}

// Stop sends SIGTERM and waits, killing after 5 s.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Kill stops the process at once, as a crash would.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// WaitHTTP polls url until it answers 200 or the process exits or 15 s pass.
func WaitHTTP(t testing.TB, p *Proc, url string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if p != nil && p.Exited() {
			t.Fatalf("%s exited before %s answered:\n%s", p.name, url, p.Output())
		}
		if res, err := c.Get(url); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not answer 200 within 15s", url)
}

// Addr formats a loopback address.
func Addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
