package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// serve runs one request through s's handler, in the caller's goroutine.
func serve(s *Server, method, path string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec
}

// TestFaultError: FAULT=error answers 500 at once on the request paths,
// while /healthz and /load answer as ever.
func TestFaultError(t *testing.T) {
	s := New(Config{ServerID: "bad", Fault: FaultError}, nil)
	for _, path := range []string{"/", "/anything?sleep_ms=10", "/upgrade"} {
		rec := serve(s, http.MethodGet, path)
		if rec.Code != http.StatusInternalServerError || rec.Header().Get(HeaderServerID) != "bad" {
			t.Errorf("GET %s: %d (server %q), want 500 from bad", path, rec.Code, rec.Header().Get(HeaderServerID))
		}
	}
	if rec := serve(s, http.MethodPost, "/"); rec.Code != http.StatusInternalServerError {
		t.Errorf("POST /: %d, want 500", rec.Code)
	}
	if rec := serve(s, http.MethodGet, "/healthz"); rec.Code != http.StatusOK {
		t.Errorf("/healthz: %d, want 200: health checks must not see the fault", rec.Code)
	}
	if rec := serve(s, http.MethodGet, "/load"); rec.Code != http.StatusOK {
		t.Errorf("/load: %d, want 200", rec.Code)
	}
}

// TestFaultHang: FAULT=hang holds a request without answering, counted in
// /load's inflight, until the client leaves; at shutdown the request is
// cut (no answer) rather than held until SHUTDOWN_TIMEOUT. /healthz and
// /load answer meanwhile.
func TestFaultHang(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(Config{ServerID: "stuck", Fault: FaultHang}, nil)
		ctx, leave := context.WithCancel(context.Background())
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx))
		}()
		synctest.Wait()
		select {
		case <-done:
			t.Fatalf("a hung request was answered: %d %q", rec.Code, rec.Body.String())
		default:
		}
		if hc := serve(s, http.MethodGet, "/healthz"); hc.Code != http.StatusOK {
			t.Errorf("/healthz while a request hangs: %d, want 200", hc.Code)
		}
		var l LoadReport
		if err := json.NewDecoder(serve(s, http.MethodGet, "/load").Body).Decode(&l); err != nil || l.Inflight != 1 {
			t.Errorf("/load while a request hangs: %+v %v, want inflight 1", l, err)
		}
		leave()
		<-done
		if rec.Body.Len() != 0 || rec.Flushed {
			t.Errorf("the hung request wrote %q", rec.Body.String())
		}
		if l := s.Snapshot(); l.Inflight != 0 || l.Cancelled != 1 || l.Served != 0 {
			t.Errorf("after the client left: %+v, want inflight 0, cancelled 1", l)
		}

		// Shutdown: the held request is aborted, not answered.
		aborted := make(chan any, 1)
		go func() {
			defer func() { aborted <- recover() }()
			serve(s, http.MethodGet, "/")
		}()
		synctest.Wait()
		s.BeginShutdown()
		if p := <-aborted; p != http.ErrAbortHandler {
			t.Errorf("at shutdown the hung request ended with %v, want the http.ErrAbortHandler panic (connection cut)", p)
		}
		if l := s.Snapshot(); l.Inflight != 0 {
			t.Errorf("inflight %d after shutdown", l.Inflight)
		}
	})
}

// TestFaultHangDrainsAtOnce: Serve with a hung request inside returns as
// soon as shutdown begins, not after SHUTDOWN_TIMEOUT, and the client sees
// its connection cut without an answer.
func TestFaultHangDrainsAtOnce(t *testing.T) {
	s := New(Config{ServerID: "stuck", Fault: FaultHang, ShutdownTimeout: 30 * time.Second}, nil)
	base, cancel, served := serveLoopback(t, s)
	defer cancel()
	answered := make(chan error, 1)
	go func() {
		res, err := http.Get(base + "/")
		if err == nil {
			res.Body.Close()
			err = fmt.Errorf("answered %s", res.Status)
		}
		answered <- err
	}()
	waitLoad(t, base, "the request held", func(l LoadReport) bool { return l.Inflight == 1 })
	start := time.Now()
	cancel()
	select {
	case err := <-served:
		if err != nil || time.Since(start) > 2*time.Second {
			t.Errorf("Serve = %v after %v, want nil at once", err, time.Since(start))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve waited for the hung request")
	}
	if err := <-answered; err == nil || strings.HasPrefix(err.Error(), "answered") {
		t.Errorf("client: %v, want the connection cut", err)
	}
}
