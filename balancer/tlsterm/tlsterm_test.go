package tlsterm_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lbscale/balancer/tlsterm"
	"lbscale/internal/testenv/tlstest"
)

func files(t *testing.T) (string, string) {
	dir := t.TempDir()
	return filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
}

// TestLoadNamesTheBadFile: a pair that does not load says which file is at
// fault, so configuration can name its variable.
func TestLoadNamesTheBadFile(t *testing.T) {
	certFile, keyFile := files(t)
	tlstest.Write(t, certFile, keyFile, "a")
	otherCert, otherKey := files(t)
	tlstest.Write(t, otherCert, otherKey, "b")
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, cert, key, want string
	}{
		{"cert missing", certFile + ".nope", keyFile, certFile + ".nope"},
		{"key missing", certFile, keyFile + ".nope", keyFile + ".nope"},
		{"cert garbage", garbage, keyFile, garbage},
		{"key given as cert", keyFile, keyFile, keyFile},
		{"key garbage", certFile, garbage, garbage},
		{"key of another cert", certFile, otherKey, otherKey},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tlsterm.Load(tc.cert, tc.key)
			var fe *tlsterm.FileError
			if !errors.As(err, &fe) || fe.Path != tc.want {
				t.Fatalf("want a FileError for %s, got %v", tc.want, err)
			}
		})
	}
	if _, err := tlsterm.Load(certFile, keyFile); err != nil {
		t.Fatalf("a good pair: %v", err)
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestReloaderFollowsTheFiles: a new pair is served after the next check
// (not before: the files are looked at once per interval); a pair that does
// not load leaves the last good certificate in service and is logged once;
// a certificate replaced before its key is picked up once the key follows.
func TestReloaderFollowsTheFiles(t *testing.T) {
	certFile, keyFile := files(t)
	first := tlstest.Write(t, certFile, keyFile, "first")
	var logs lockedBuffer
	r, err := tlsterm.NewReloader(certFile, keyFile, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Unix(1000, 0)}
	r.Now = clock.Now
	serving := func() string {
		t.Helper()
		c, err := r.GetCertificate(&tls.ClientHelloInfo{})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.Subject.CommonName + "/" + leaf.SerialNumber.String()
	}
	name := func(c *x509.Certificate) string { return c.Subject.CommonName + "/" + c.SerialNumber.String() }

	if got := serving(); got != name(first) {
		t.Fatalf("serving %s, want %s", got, name(first))
	}
	second := tlstest.Write(t, certFile, keyFile, "second")
	if got := serving(); got != name(first) {
		t.Fatalf("files looked at again within the interval: serving %s", got)
	}
	clock.Add(tlsterm.CheckInterval)
	if got := serving(); got != name(second) {
		t.Fatalf("after the interval serving %s, want %s", got, name(second))
	}
	if !strings.Contains(logs.String(), "certificate reloaded") {
		t.Errorf("no reload logged: %s", logs.String())
	}

	tlstest.Replace(t, certFile, []byte("-----BEGIN CERTIFICATE-----\ntruncated"))
	for range 3 {
		clock.Add(tlsterm.CheckInterval)
		if got := serving(); got != name(second) {
			t.Fatalf("an invalid replacement: serving %s, want the last good %s", got, name(second))
		}
	}
	if n := strings.Count(logs.String(), "do not load"); n != 1 {
		t.Errorf("an invalid pair should be logged once per change, got %d:\n%s", n, logs.String())
	}

	// A renewal that replaces the certificate, then the key: in between the
	// pair does not match and the second certificate stays.
	otherCert, otherKey := files(t)
	third := tlstest.Write(t, otherCert, otherKey, "third")
	certPEM, _ := os.ReadFile(otherCert)
	keyPEM, _ := os.ReadFile(otherKey)
	tlstest.Replace(t, certFile, certPEM)
	clock.Add(tlsterm.CheckInterval)
	if got := serving(); got != name(second) {
		t.Fatalf("certificate without its key: serving %s, want %s", got, name(second))
	}
	tlstest.Replace(t, keyFile, keyPEM)
	clock.Add(tlsterm.CheckInterval)
	if got := serving(); got != name(third) {
		t.Fatalf("once the key followed: serving %s, want %s", got, name(third))
	}
}

// TestServerConfig: HTTP/2 through ALPN and HTTP/1.1 for clients without it,
// TLS 1.2 and 1.3 accepted, TLS 1.1 refused at the handshake.
func TestServerConfig(t *testing.T) {
	certFile, keyFile := files(t)
	cert := tlstest.Write(t, certFile, keyFile, "srv")
	r, err := tlsterm.NewReloader(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", tlsterm.ServerConfig(r.GetCertificate))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	cases := []struct {
		name          string
		minV, maxV    uint16
		protos        []string
		wantProto     string
		wantErrSubstr string
	}{
		{"h2 over TLS 1.3", tls.VersionTLS13, tls.VersionTLS13, []string{"h2", "http/1.1"}, "h2", ""},
		{"h2 over TLS 1.2", tls.VersionTLS12, tls.VersionTLS12, []string{"h2", "http/1.1"}, "h2", ""},
		{"http/1.1 only", tls.VersionTLS12, tls.VersionTLS13, []string{"http/1.1"}, "http/1.1", ""},
		{"TLS 1.1 refused", tls.VersionTLS10, tls.VersionTLS11, []string{"h2"}, "", "protocol version"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), &tls.Config{
				RootCAs: tlstest.Pool(cert), ServerName: "127.0.0.1", MinVersion: tc.minV, MaxVersion: tc.maxV, NextProtos: tc.protos,
			})
			if tc.wantErrSubstr != "" {
				if err == nil {
					c.Close()
					t.Fatal("handshake succeeded")
				}
				if !strings.Contains(err.Error(), tc.wantErrSubstr) {
					t.Fatalf("want a %q error, got %v", tc.wantErrSubstr, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if st := c.ConnectionState(); st.NegotiatedProtocol != tc.wantProto || (tc.minV == tc.maxV && st.Version != tc.maxV) {
				t.Fatalf("negotiated %q version %x, want %q", st.NegotiatedProtocol, st.Version, tc.wantProto)
			}
		})
	}
}

func TestRedirect(t *testing.T) {
	cases := []struct {
		port, method, host, target string
		want                       string
		code                       int
	}{
		{"8443", "GET", "example.com:8080", "/a/b?c=1&d=2", "https://example.com:8443/a/b?c=1&d=2", 308},
		{"443", "GET", "example.com:80", "/x", "https://example.com/x", 308},
		{"443", "POST", "example.com", "/form", "https://example.com/form", 308},
		{"8443", "GET", "[::1]:8080", "/", "https://[::1]:8443/", 308},
		{"443", "GET", "[::1]", "/", "https://[::1]/", 308},
		{"8443", "GET", "", "/", "", 400},
	}
	for _, tc := range cases {
		req := httptest.NewRequest(tc.method, "http://placeholder"+tc.target, nil)
		req.Host = tc.host
		rec := httptest.NewRecorder()
		tlsterm.Redirect(tc.port).ServeHTTP(rec, req)
		if rec.Code != tc.code || rec.Header().Get("Location") != tc.want {
			t.Errorf("%s %s%s -> %d %q, want %d %q", tc.method, tc.host, tc.target, rec.Code, rec.Header().Get("Location"), tc.code, tc.want)
		}
	}
	// The status a real client sees, following nothing.
	srv := httptest.NewServer(tlsterm.Redirect("8443"))
	defer srv.Close()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Get(srv.URL + "/p?q=1")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusPermanentRedirect || res.Header.Get("Location") != "https://127.0.0.1:8443/p?q=1" {
		t.Fatalf("%d %q", res.StatusCode, res.Header.Get("Location"))
	}
}
