package main_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptrace"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lbscale/balancer/config"
	"lbscale/internal/testenv/proctest"
	"lbscale/internal/testenv/tlstest"
)

// tlsSetup is a certificate pair in a temporary directory and the files the
// balancer is pointed at.
type tlsSetup struct {
	certFile, keyFile string
	cert              *x509.Certificate
}

func newTLSSetup(t *testing.T, cn string) tlsSetup {
	t.Helper()
	dir := t.TempDir()
	s := tlsSetup{certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	s.cert = tlstest.Write(t, s.certFile, s.keyFile, cn)
	return s
}

func (s tlsSetup) env() []string {
	return []string{config.EnvTLSCertFile + "=" + s.certFile, config.EnvTLSKeyFile + "=" + s.keyFile}
}

// tlsBalancer starts a balancer process serving HTTPS on its proxy port.
func tlsBalancer(t *testing.T, s tlsSetup, env ...string) lb {
	t.Helper()
	b := balancer(t, append(s.env(), env...)...)
	b.proxy = "https://" + strings.TrimPrefix(b.proxy, "http://")
	return b
}

// h2Client is Go's client trusting roots, speaking HTTP/2 when offered.
func h2Client(t *testing.T, roots *x509.CertPool) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 15 * time.Second}
}

// getH2 sends a GET that must be answered 200 over HTTP/2, and reports
// whether it used a connection opened before.
func getH2(t *testing.T, c *http.Client, url string) (res *http.Response, reused bool) {
	t.Helper()
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url, nil)
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.ProtoMajor != 2 {
		t.Fatalf("GET %s: %d over %s, want 200 over HTTP/2", url, res.StatusCode, res.Proto)
	}
	return res, reused
}

// servedCert opens a new TLS connection (so the balancer picks a
// certificate for it) and returns the certificate it was given.
func servedCert(t *testing.T, addr string, roots *x509.CertPool) *x509.Certificate {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

func hostPort(url string) string {
	return strings.TrimPrefix(strings.TrimPrefix(url, "https://"), "http://")
}

// TestTLSAndHTTP2ThroughRealBalancer: with TLS_CERT_FILE and TLS_KEY_FILE
// the proxy port speaks HTTPS; Go's client and curl get HTTP/2 through
// ALPN, a client without HTTP/2 gets HTTP/1.1, TLS 1.1 is refused, the
// backend still gets plain HTTP/1.1, and TLS_REDIRECT_ADDR answers 308.
func TestTLSAndHTTP2ThroughRealBalancer(t *testing.T) {
	s := newTLSSetup(t, "balancer")
	redirectAddr := proctest.Addr(proctest.FreePort(t))
	b := tlsBalancer(t, s, "BACKENDS="+web(t, "t1"), config.EnvTLSRedirectAddr+"="+redirectAddr)
	waitReplicas(t, b.admin, 1)
	roots := tlstest.Pool(s.cert)

	t.Run("go client h2", func(t *testing.T) {
		res, _ := getH2(t, h2Client(t, roots), b.proxy+"/")
		if res.Header.Get("X-Server-Id") != "t1" || res.TLS.NegotiatedProtocol != "h2" {
			t.Fatalf("X-Server-Id %q, ALPN %q", res.Header.Get("X-Server-Id"), res.TLS.NegotiatedProtocol)
		}
	})
	t.Run("go client http/1.1 only", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}} // no ForceAttemptHTTP2 with a custom TLS config: HTTP/1.1
		defer tr.CloseIdleConnections()
		res, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(b.proxy + "/")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK || res.ProtoMajor != 1 {
			t.Fatalf("%d over %s, want 200 over HTTP/1.1", res.StatusCode, res.Proto)
		}
	})
	t.Run("curl --http2", func(t *testing.T) {
		curl, err := exec.LookPath("curl")
		if err != nil {
			t.Skip("curl is not on the PATH; the HTTP/2 check with curl is skipped")
		}
		if v, err := exec.Command(curl, "--version").Output(); err != nil || !bytes.Contains(v, []byte("HTTP2")) {
			t.Skipf("this curl was built without HTTP/2 (no HTTP2 in `curl --version` features); skipped")
		}
		out, err := exec.Command(curl, "--http2", "-k", "-sS", "--max-time", "10", "-o", "/dev/null",
			"-w", "%{http_version} %{http_code}", b.proxy+"/").CombinedOutput()
		if err != nil || string(out) != "2 200" {
			t.Fatalf("curl: %q %v, want \"2 200\"", out, err)
		}
	})
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		c, err := tls.Dial("tcp", hostPort(b.proxy), &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		if err == nil {
			c.Close()
			t.Fatal("a TLS 1.1 handshake succeeded")
		}
		if !strings.Contains(err.Error(), "protocol version") {
			t.Fatalf("want a protocol version alert, got %v", err)
		}
	})
	t.Run("plain HTTP to the TLS port", func(t *testing.T) {
		res := get(t, &http.Client{Timeout: 5 * time.Second}, "http://"+hostPort(b.proxy)+"/")
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", res.StatusCode)
		}
	})
	t.Run("redirect listener", func(t *testing.T) {
		c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, _ := http.NewRequest(http.MethodPost, "http://"+redirectAddr+"/a/b?c=1", strings.NewReader("x"))
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if want := b.proxy + "/a/b?c=1"; res.StatusCode != http.StatusPermanentRedirect || res.Header.Get("Location") != want {
			t.Fatalf("%d %q, want 308 %q", res.StatusCode, res.Header.Get("Location"), want)
		}
		res, _ = getH2(t, h2Client(t, roots), "http://"+redirectAddr+"/") // followed to HTTPS
		if res.Request.URL.Scheme != "https" {
			t.Fatalf("ended at %s", res.Request.URL)
		}
	})
}

// TestCertificateReloadWithoutRestart: replacing the files puts the new
// certificate in service for new connections within seconds, with the same
// process and its open connections untouched; an invalid replacement is
// logged and the last good certificate stays.
func TestCertificateReloadWithoutRestart(t *testing.T) {
	s := newTLSSetup(t, "first")
	b := tlsBalancer(t, s, "BACKENDS="+web(t, "r1"))
	waitReplicas(t, b.admin, 1)
	pid := b.proc.Cmd.Process.Pid
	addr := hostPort(b.proxy)

	second := tlstest.Write(t, s.certFile, s.keyFile, "second")
	if second.SerialNumber.Cmp(s.cert.SerialNumber) == 0 {
		t.Fatal("the test made two certificates with one serial")
	}
	roots := tlstest.Pool(s.cert, second)
	c := h2Client(t, roots)
	getH2(t, c, b.proxy+"/") // a connection open across the reload

	deadline := time.Now().Add(5 * time.Second)
	for {
		got := servedCert(t, addr, roots)
		if got.SerialNumber.Cmp(second.SerialNumber) == 0 && got.Subject.CommonName == "second" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving %s (serial %s) 5s after the files were replaced", got.Subject.CommonName, got.SerialNumber)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, reused := getH2(t, c, b.proxy+"/"); !reused {
		t.Error("the connection opened before the reload was not kept")
	}

	tlstest.Replace(t, s.certFile, []byte("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"))
	// Three check intervals: the broken pair has been looked at by then.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if got := servedCert(t, addr, roots); got.SerialNumber.Cmp(second.SerialNumber) != 0 {
			t.Fatalf("serving %s after an invalid replacement, want the last good one", got.Subject.CommonName)
		}
	}
	if !strings.Contains(b.proc.Output(), "do not load") {
		t.Errorf("the invalid replacement was not logged:\n%s", b.proc.Output())
	}
	if b.proc.Exited() || b.proc.Cmd.Process.Pid != pid {
		t.Fatal("the balancer restarted")
	}
}

// TestHTTP2KeepsTheLimit: ten concurrent HTTP/2 streams on one connection,
// MAX_INFLIGHT=2 on one slow backend: the backend never has more than two
// at once, and all ten are served.
func TestHTTP2KeepsTheLimit(t *testing.T) {
	s := newTLSSetup(t, "limit")
	addr := web(t, "slow", "SLEEP_MS=300")
	b := tlsBalancer(t, s, "BACKENDS="+addr, "MAX_INFLIGHT=2", "SLOW_START=0")
	waitReplicas(t, b.admin, 1)
	c := h2Client(t, tlstest.Pool(s.cert))
	getH2(t, c, b.proxy+"/?sleep_ms=0") // open the connection the streams share
	resetLoad(t, addr)

	var wg sync.WaitGroup
	var mu sync.Mutex
	newConns := 0
	for range 10 {
		wg.Go(func() {
			if _, reused := getH2(t, c, b.proxy+"/"); !reused {
				mu.Lock()
				newConns++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	l := load(t, addr)
	if l.PeakInflight != 2 || l.Served != 10 {
		t.Fatalf("backend peak in flight %d (limit 2, and ten streams should fill it), served %d of 10", l.PeakInflight, l.Served)
	}
	if newConns > 0 {
		t.Errorf("%d of 10 requests opened a connection of their own; want all as streams on one", newConns)
	}
	if st := status(t, b.admin); st.Backends[0].InflightLocal != 0 || st.QueueDepth != 0 {
		t.Fatalf("after the streams ended: %+v", st)
	}
}

// TestHTTP2ResetStreamFreesItsSlot: with MAX_INFLIGHT=1, one request in
// flight at the backend and one in the queue, both cancelled by the client
// (an HTTP/2 RST_STREAM each, the connection stays): the queue empties, the
// slot comes back, the backend's request is cancelled, and the next request
// on the same connection is served at once.
func TestHTTP2ResetStreamFreesItsSlot(t *testing.T) {
	s := newTLSSetup(t, "cancel")
	addr := web(t, "held")
	b := tlsBalancer(t, s, "BACKENDS="+addr, "MAX_INFLIGHT=1", "SLOW_START=0")
	waitReplicas(t, b.admin, 1)
	c := h2Client(t, tlstest.Pool(s.cert))
	getH2(t, c, b.proxy+"/")

	send := func() (context.CancelFunc, chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.proxy+"/?sleep_ms=20000", nil)
			res, err := c.Do(req)
			if err == nil {
				res.Body.Close()
			}
			done <- err
		}()
		return cancel, done
	}
	waitStatus := func(what string, ok func(inflight, queued int64) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			st := status(t, b.admin)
			if ok(st.Backends[0].InflightLocal, st.QueueDepth) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s: %+v", what, st)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	cancelInFlight, inFlightDone := send()
	waitStatus("one in flight", func(n, q int64) bool { return n == 1 && q == 0 })
	cancelQueued, queuedDone := send()
	waitStatus("one queued", func(n, q int64) bool { return n == 1 && q == 1 })

	cancelQueued()
	if err := <-queuedDone; err == nil {
		t.Fatal("the cancelled request was answered")
	}
	waitStatus("the queued stream leaves the queue", func(n, q int64) bool { return n == 1 && q == 0 })

	cancelInFlight()
	if err := <-inFlightDone; err == nil {
		t.Fatal("the cancelled request was answered")
	}
	waitStatus("the in-flight stream's slot comes back", func(n, q int64) bool { return n == 0 && q == 0 })
	deadline := time.Now().Add(5 * time.Second)
	for load(t, addr).Inflight != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the backend still works on the cancelled request")
		}
		time.Sleep(20 * time.Millisecond)
	}

	start := time.Now()
	for i := range 3 {
		if _, reused := getH2(t, c, b.proxy+"/"); !reused {
			t.Errorf("request %d after the resets opened a new connection", i)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("three requests after the resets took %v: a slot is still held", d)
	}
	waitStatus("nothing held at the end", func(n, q int64) bool { return n == 0 && q == 0 })
}

// TestTLSBadConfigExits2: half a pair, an unreadable or invalid file, or a
// bad TLS_REDIRECT_ADDR stops the balancer with status 2 naming the variable.
func TestTLSBadConfigExits2(t *testing.T) {
	s := newTLSSetup(t, "bad")
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	tlstest.Replace(t, garbage, []byte("garbage"))
	bin := proctest.Build(t, "balancer")
	cert, key := config.EnvTLSCertFile+"=", config.EnvTLSKeyFile+"="
	cases := []struct {
		name string
		env  []string
		want string
	}{
		{"cert without key", []string{cert + s.certFile}, config.EnvTLSKeyFile},
		{"key without cert", []string{key + s.keyFile}, config.EnvTLSCertFile},
		{"cert unreadable", []string{cert + s.certFile + ".missing", key + s.keyFile}, config.EnvTLSCertFile},
		{"key unreadable", []string{cert + s.certFile, key + s.keyFile + ".missing"}, config.EnvTLSKeyFile},
		{"cert invalid", []string{cert + garbage, key + s.keyFile}, config.EnvTLSCertFile},
		{"key invalid", []string{cert + s.certFile, key + garbage}, config.EnvTLSKeyFile},
		{"redirect not an address", append(s.env(), config.EnvTLSRedirectAddr+"=nowhere"), config.EnvTLSRedirectAddr},
		{"redirect without TLS", []string{config.EnvTLSRedirectAddr + "=127.0.0.1:8079"}, config.EnvTLSRedirectAddr},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			exitsNaming(t, bin, append([]string{"BACKENDS=127.0.0.1:1"}, tc.env...), tc.want)
		})
	}
}

// TestEdgeOverTLS: HTTP/1.1 over TLS is scanned like plain HTTP (the edge
// reads the decrypted stream): CL+TE smuggling gets 400 and a closed
// connection and its hidden request never reaches the backend, an
// over-long URI gets 414, and a good request reaches the backend marked
// X-Forwarded-Proto: https.
func TestEdgeOverTLS(t *testing.T) {
	s := newTLSSetup(t, "edge")
	rec := newRecorder(t)
	b := tlsBalancer(t, s, "BACKENDS="+rec.addr())
	waitReplicas(t, b.admin, 1)
	cfg := &tls.Config{RootCAs: tlstest.Pool(s.cert), NextProtos: []string{"http/1.1"}}
	do := func(t *testing.T, raw string) exchange {
		t.Helper()
		conn, err := tls.Dial("tcp", hostPort(b.proxy), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := io.WriteString(conn, raw); err != nil {
			t.Fatal(err)
		}
		return readExchange(t, conn, bufio.NewReader(conn), 5*time.Second)
	}

	if ex := do(t, "GET /ok HTTP/1.1\r\nHost: h\r\n\r\n"); ex.status != http.StatusOK || ex.closed {
		t.Fatalf("good request: %+v, want 200 on a kept connection", ex)
	}
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"
	if ex := do(t, "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+smuggled); ex.status != http.StatusBadRequest || !ex.closed {
		t.Fatalf("CL+TE over TLS: %+v, want 400 and a closed connection", ex)
	}
	if ex := do(t, "GET /"+strings.Repeat("a", 64<<10)+" HTTP/1.1\r\nHost: h\r\n\r\n"); ex.status != http.StatusRequestURITooLong || !ex.closed {
		t.Fatalf("64 KiB URI over TLS: %+v, want 414 and a closed connection", ex)
	}
	var seen []*http.Request
	for _, r := range rec.requests() {
		if r.URL.Path != "/healthz" {
			seen = append(seen, r)
		}
	}
	if len(seen) != 1 || seen[0].URL.Path != "/ok" {
		for _, r := range seen {
			t.Errorf("backend saw %s %s", r.Method, r.URL.Path)
		}
		t.Fatal("want only GET /ok at the backend")
	}
	if p := seen[0].Header.Get("X-Forwarded-Proto"); p != "https" {
		t.Fatalf("X-Forwarded-Proto %q, want https", p)
	}
}
