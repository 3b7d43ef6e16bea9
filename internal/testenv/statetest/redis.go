// Package statetest runs real redis-server processes for tests, the way
// net/http/httptest runs real HTTP servers: each test gets its own server on
// a free loopback port, stopped when the test ends.
package statetest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"lbscale/internal/testenv"
)

// Server is one redis-server child process.
type Server struct {
	// Port it listens on (kept across Restart): the TLS port of a server
	// from StartRedisTLS, which has no plain port.
	Port int
	// TLS is the server's certificate files; nil for a plain server.
	TLS *TLSFiles
	t   testing.TB
	cmd *exec.Cmd
	// exited is closed when cmd has been waited for.
	exited chan struct{}
	// args are the server's own options (TLS, passwords, users).
	args []string
	// probe is the client TLS configuration of the readiness check.
	probe *tls.Config
	// conf, when set, is a config file given to redis-server before the
	// options (a sentinel's: Sentinel rewrites it, so it must be writable).
	conf string
	// out is the output of the running (or last) process, for failure
	// messages.
	out *syncBuffer
}

// StartRedis starts redis-server on a free port and stops it at cleanup.
// Without redis-server on PATH the test is skipped, or fails when
// REQUIRE_REDIS is set (CI sets it: a skipped integration test proves nothing).
func StartRedis(t testing.TB) *Server {
	t.Helper()
	s := newServer(t)
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

func newServer(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		testenv.Missing(t, testenv.Redis, fmt.Sprintf("redis-server not installed (apt-get install redis-server): %v", err))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return &Server{Port: port, t: t}
}

// URL is the redis:// URL of the server (rediss:// with TLS), without
// credentials.
func (s *Server) URL() string { return s.URLAs("", "") }

// URLAs is URL with a user and password ("" for the default user, "" for
// none).
func (s *Server) URLAs(user, password string) string {
	u := url.URL{Scheme: "redis", Host: s.Addr(), Path: "/0"}
	if s.TLS != nil {
		u.Scheme = "rediss"
	}
	if password != "" {
		u.User = url.UserPassword(user, password)
	} else if user != "" {
		u.User = url.User(user)
	}
	return u.String()
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// Start (re)starts the server on its port and waits until it accepts
// connections. Data does not survive a restart (no persistence), like a
// Redis that was replaced.
func (s *Server) Start() {
	s.t.Helper()
	if s.cmd != nil {
		return
	}
	args := []string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"}
	if s.TLS != nil {
		args[1] = "0"
		args = append(args, "--tls-port", strconv.Itoa(s.Port))
	}
	if s.conf != "" {
		args = append([]string{s.conf}, args...)
	}
	cmd := exec.Command("redis-server", append(args, s.args...)...)
	// A primary writes an RDB file for a replica's full sync even with
	// --save "": in a directory of the test's, not the package's.
	cmd.Dir = s.t.TempDir()
	out := &syncBuffer{}
	s.out = out
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	exited := make(chan struct{})
	s.exited = exited
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			s.cmd = nil
			if s.TLS != nil && strings.Contains(strings.ToLower(out.String()), "tls") {
				// A redis-server built without TLS refuses the tls-*
				// options at start-up.
				testenv.Missing(s.t, testenv.Redis, "redis-server built without TLS support:\n"+out.String())
			}
			s.t.Fatalf("redis-server exited at start-up:\n%s", out.String())
		default:
		}
		if s.ping() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("redis-server on port %d did not come up:\n%s", s.Port, out.String())
}

// ping reports whether the server answers a PING (NOAUTH, from a server
// with a password, counts as an answer).
func (s *Server) ping() bool {
	d := &net.Dialer{Timeout: 200 * time.Millisecond}
	var c net.Conn
	var err error
	if s.probe != nil {
		c, err = tls.DialWithDialer(d, "tcp", s.Addr(), s.probe)
	} else {
		c, err = d.Dial("tcp", s.Addr())
	}
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	fmt.Fprint(c, "PING\r\n")
	line, _ := bufio.NewReader(c).ReadString('\n')
	return line == "+PONG\r\n" || strings.HasPrefix(line, "-NOAUTH")
}

// syncBuffer is the server's output, written by the process and read by
// the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// Output is what the server process wrote to stdout and stderr (its log),
// for a failure message.
func (s *Server) Output() string {
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// Stop kills the server (as a crash would) and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}
