package main_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lbscale/internal/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds the webserver command once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "lbscale-webserver-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "webserver")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a running webserver process.
type proc struct {
	cmd  *exec.Cmd
	out  bytes.Buffer // stderr; read only after done is closed
	done chan struct{}
	err  error // Wait's result, set before done is closed
}

// run starts the binary with env (and nothing else of the test's
// environment) and kills it by PID at cleanup.
func run(t *testing.T, env ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(binary(t)), done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stderr = &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func waitOK(t *testing.T, url string, p *proc) {
	t.Helper()
	testenv.Eventually(t, 15*time.Second, url+" answering 200", func() bool {
		select {
		case <-p.done:
			t.Fatalf("exited before %s answered: %v\n%s", url, p.err, p.out.String())
		default:
		}
		res, err := http.Get(url)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	})
}

func TestInvalidEnvExits2(t *testing.T) {
	for _, tc := range []struct{ env, name string }{
		{"WORK_MS=abc", "WORK_MS"},
		{"SLEEP_MS=60001", "SLEEP_MS"},
		{"CAPACITY=-1", "CAPACITY"},
		{"LISTEN_ADDR=nonsense", "LISTEN_ADDR"},
		{"SHUTDOWN_TIMEOUT=soon", "SHUTDOWN_TIMEOUT"},
		{"FAULT=crash", "FAULT"},
	} {
		cmd := exec.Command(binary(t))
		cmd.Env = []string{tc.env, "LISTEN_ADDR=" + freeAddr(t)}
		if strings.HasPrefix(tc.env, "LISTEN_ADDR=") {
			cmd.Env = []string{tc.env}
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%s: exit %v, want status 2", tc.env, err)
		}
		if !strings.Contains(stderr.String(), tc.name) {
			t.Errorf("%s: stderr %q does not name %s", tc.env, stderr.String(), tc.name)
		}
	}
}

// TestSIGTERMDrains: SIGTERM lets the request inside finish, then the
// process exits 0.
func TestSIGTERMDrains(t *testing.T) {
	addr := freeAddr(t)
	base := "http://" + addr
	p := run(t, "LISTEN_ADDR="+addr, "SERVER_ID=drain-1", "CAPACITY=1")
	waitOK(t, base+"/healthz", p)

	type result struct {
		status int
		body   string
		err    error
	}
	results := make(chan result, 2)
	for i := 0; i < 2; i++ {
		go func() {
			res, err := http.Get(base + "/?sleep_ms=1200")
			if err != nil {
				results <- result{err: err}
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			results <- result{res.StatusCode, string(b), nil}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var l struct{ Inflight int }
		if res, err := http.Get(base + "/load"); err == nil {
			_ = json.NewDecoder(res.Body).Decode(&l)
			res.Body.Close()
		}
		if l.Inflight == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("requests never got in")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if r := <-results; r.err != nil || r.status != 200 || !strings.HasPrefix(r.body, "Hello from drain-1") {
			t.Errorf("request in flight at SIGTERM: %+v", r)
		}
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("exit after drain: %v\n%s", p.err, p.out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not exit after SIGTERM")
	}
	for _, want := range []string{`"msg":"shutting down"`, `"msg":"drained"`} {
		if !strings.Contains(p.out.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, p.out.String())
		}
	}
}

// TestHealthcheckCommand: "webserver healthcheck" probes the server on
// LISTEN_ADDR, as a FROM-scratch image's HEALTHCHECK does.
func TestHealthcheckCommand(t *testing.T) {
	addr := freeAddr(t)
	p := run(t, "LISTEN_ADDR="+addr)
	waitOK(t, "http://"+addr+"/healthz", p)

	_, port, _ := net.SplitHostPort(addr)
	for _, tc := range []struct {
		listen string
		want   int
	}{
		{addr, 0},
		{":" + port, 0}, // wildcard host: probed on 127.0.0.1
		{freeAddr(t), 1},
	} {
		cmd := exec.Command(binary(t), "healthcheck")
		cmd.Env = []string{"LISTEN_ADDR=" + tc.listen}
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.want {
			t.Errorf("healthcheck with LISTEN_ADDR=%s: exit %d, want %d", tc.listen, code, tc.want)
		}
	}
}

// TestSIGTERMClosesLongConns: at SIGTERM the process closes an open tunnel
// and ends an event stream with "bye" itself, then exits 0 at once, long
// before SHUTDOWN_TIMEOUT: their clients are free to reconnect elsewhere.
func TestSIGTERMClosesLongConns(t *testing.T) {
	addr := freeAddr(t)
	base := "http://" + addr
	p := run(t, "LISTEN_ADDR="+addr, "SERVER_ID=long-1", "CAPACITY=1", "SHUTDOWN_TIMEOUT=60s")
	waitOK(t, base+"/healthz", p)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprint(conn, "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
	tunnel := bufio.NewReader(conn)
	if res, err := http.ReadResponse(tunnel, nil); err != nil || res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	res, err := http.Get(base + "/events?interval_ms=100")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	stream := bufio.NewReader(res.Body)
	if line, err := stream.ReadString('\n'); err != nil || line != "data: 1\n" {
		t.Fatalf("first event: %q %v", line, err)
	}

	t0 := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(tunnel); len(rest) != 0 || (err != nil && !strings.Contains(err.Error(), "reset")) {
		t.Errorf("tunnel at SIGTERM: %q %v, want closed", rest, err)
	}
	rest, err := io.ReadAll(stream)
	if err != nil || !strings.HasSuffix(string(rest), "event: bye\ndata: shutting down\n\n") {
		t.Errorf("stream at SIGTERM ended with %q %v, want a bye event", rest, err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("exit: %v\n%s", p.err, p.out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not exit after SIGTERM with only long-lived connections open")
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("SIGTERM to exit took %s", took)
	}
}
