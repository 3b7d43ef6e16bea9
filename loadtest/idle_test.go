package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestIdleHoldsConnections opens connections to a real server and checks
// they are all open at once, each after one answered request, until the
// command is stopped.
func TestIdleHoldsConnections(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte("hello\n"))
	}))
	var open atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"idle", "--target", srv.URL + "/x", "--conns", "50", "--parallel", "8", "--hold", "1m"}, &out, &errOut)
	}()

	deadline := time.Now().Add(10 * time.Second)
	for open.Load() < 50 || hits.Load() < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("open %d, hits %d, want 50 each; stderr %s", open.Load(), hits.Load(), errOut.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := hits.Load(); n != 50 {
		t.Errorf("%d requests, want one per connection (50)", n)
	}
	cancel() // SIGTERM
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d; stderr %s", code, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("idle did not stop when cancelled")
	}
	if !strings.Contains(out.String(), "idle: 50/50 connections open") || !strings.Contains(out.String(), "0 closed by the server") {
		t.Errorf("output:\n%s", out.String())
	}
	for deadline := time.Now().Add(5 * time.Second); open.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open after exit", open.Load())
		}
	}
}

func TestIdleFailures(t *testing.T) {
	// A server that will not keep connections alive: none can be held.
	closer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
	}))
	t.Cleanup(closer.Close)
	code, _, stderr := runCmd(t, "idle", "--target", closer.URL, "--conns", "3", "--hold", "10ms")
	if code != 1 || !strings.Contains(stderr, "opened 0/3") || !strings.Contains(stderr, "Connection: close") {
		t.Errorf("Connection: close server: exit %d, stderr %q", code, stderr)
	}

	// A server closing idle connections during the hold.
	short := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	short.Config.IdleTimeout = 50 * time.Millisecond
	short.Start()
	t.Cleanup(short.Close)
	code, _, stderr = runCmd(t, "idle", "--target", short.URL, "--conns", "3", "--hold", "1s")
	if code != 1 || !strings.Contains(stderr, "closed 3 of 3") {
		t.Errorf("idle timeout shorter than the hold: exit %d, stderr %q", code, stderr)
	}

	code, _, stderr = runCmd(t, "idle", "--target", closedURL(t), "--conns", "2", "--hold", "10ms")
	if code != 1 || !strings.Contains(stderr, "opened 0/2") {
		t.Errorf("nothing listening: exit %d, stderr %q", code, stderr)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"idle", "--conns", "2"}, "missing --target"},
		{[]string{"idle", "--target", closer.URL}, "--conns must be"},
		{[]string{"idle", "--target", closer.URL, "--conns", "2", "--hold", "0s"}, "--hold must be > 0"},
		{[]string{"idle", "--target", closer.URL, "--conns", "2", "--parallel", "0"}, "--parallel must be > 0"},
		{[]string{"idle", "--target", "https://127.0.0.1:1/", "--conns", "2"}, "plain HTTP only"},
		{[]string{"idle", "--target", "ftp://h/", "--conns", "2"}, "scheme must be http"},
		{[]string{"idle", "--target", closer.URL, "--conns", "2", "extra"}, "unexpected argument"},
		{[]string{"idle", "--nope"}, "flag provided but not defined"},
	} {
		code, _, stderr := runCmd(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q, want 2 and %q", c.args, code, stderr, c.want)
		}
	}
}
