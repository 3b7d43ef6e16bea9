// Package tlsterm terminates TLS on the balancer's proxy listener: the
// server's tls.Config (TLS 1.2 or later, HTTP/2 offered through ALPN), a
// certificate source that picks up renewed files without a restart, and the
// plain-HTTP listener's redirect to HTTPS.
package tlsterm

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FileError says which of the two files a certificate pair could not be
// loaded from, so that configuration can name the variable that points at it.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// Load reads a PEM certificate chain and its private key. An error is a
// *FileError naming certFile when the certificate is unreadable or not a
// certificate, and keyFile when the key is unreadable, not a key, or not the
// certificate's.
func Load(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, &FileError{certFile, err}
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, &FileError{keyFile, err}
	}
	// Checked first on its own: tls.X509KeyPair's errors do not say which
	// input was wrong.
	if err := checkCertPEM(certPEM); err != nil {
		return nil, &FileError{certFile, err}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, &FileError{keyFile, err}
	}
	return &cert, nil
}

// checkCertPEM: the first CERTIFICATE block parses (other blocks are
// skipped, as tls.X509KeyPair does, so one file may hold key and chain).
func checkCertPEM(b []byte) error {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return errors.New("no PEM CERTIFICATE block")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("parse certificate: %w", err)
		}
		return nil
	}
}

// ServerConfig is the proxy listener's TLS configuration: TLS 1.2 or later
// (1.0 and 1.1 are refused at the handshake), certificates from
// getCertificate, and ALPN offering h2 before http/1.1 so clients that speak
// HTTP/2 get it and the others fall back.
func ServerConfig(getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: getCertificate,
	}
}

// CheckInterval is how often, at most, a Reloader looks at its files.
const CheckInterval = time.Second

// Reloader serves a certificate pair from two files and reloads it when
// either file changes (replaced, or its modification time or size changed),
// so a renewed certificate is served without a restart. Connections already
// open keep the certificate they were made with. The files are looked at
// from the handshake path, at most once per Interval and by one handshake
// at a time; the others serve the certificate in hand meanwhile. A new pair
// that does not load (half written, key and certificate not matching yet)
// is logged and the last good certificate stays; it is tried again when a
// file changes once more.
type Reloader struct {
	certFile, keyFile string
	// Interval between looks at the files; CheckInterval when zero.
	Interval time.Duration
	// Now is the clock; time.Now when nil. Tests pass a fake one.
	Now func() time.Time
	// Log gets one line per reload and per pair that fails to load.
	Log *slog.Logger

	cert atomic.Pointer[tls.Certificate]
	// mu guards next and stamp. It is only ever taken with TryLock, so no
	// handshake waits behind another one's stat of the files.
	mu    sync.Mutex
	next  time.Time
	stamp [2]fileStamp
}

// fileStamp is what a look at a file remembers: its identity (a file
// renamed over the old one, as renewal tools and Kubernetes secret mounts
// do, is another file even within one clock tick), modification time and
// size (a file rewritten in place). nil: the file could not be stat'ed.
type fileStamp struct{ fi os.FileInfo }

func (a fileStamp) same(b fileStamp) bool {
	if a.fi == nil || b.fi == nil {
		return a.fi == nil && b.fi == nil
	}
	return os.SameFile(a.fi, b.fi) && a.fi.ModTime().Equal(b.fi.ModTime()) && a.fi.Size() == b.fi.Size()
}

// NewReloader loads the pair once and returns a Reloader serving it.
func NewReloader(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, Log: log}
	// Stamped before loading: a file replaced between the stat and the read
	// then looks changed at the first check and is read again.
	r.stamp = r.stat()
	cert, err := Load(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.cert.Store(cert)
	return r, nil
}

// GetCertificate is the tls.Config hook: the current certificate, reloaded
// first if its files changed since the last look (at most once per Interval).
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.maybeReload()
	return r.cert.Load(), nil
}

func (r *Reloader) maybeReload() {
	if !r.mu.TryLock() {
		return
	}
	defer r.mu.Unlock()
	now := r.now()
	if now.Before(r.next) {
		return
	}
	r.next = now.Add(r.interval())
	stamp := r.stat()
	if stamp[0].same(r.stamp[0]) && stamp[1].same(r.stamp[1]) {
		return
	}
	// Remembered even when the new pair fails, so a broken pair is logged
	// once per change rather than at every check.
	r.stamp = stamp
	cert, err := Load(r.certFile, r.keyFile)
	if err != nil {
		r.Log.Error("certificate files changed but do not load; serving the previous certificate",
			"cert_file", r.certFile, "key_file", r.keyFile, "err", err)
		return
	}
	r.cert.Store(cert)
	attrs := []any{"cert_file", r.certFile}
	if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil {
		attrs = append(attrs, "subject", leaf.Subject.String(), "serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter)
	}
	r.Log.Info("certificate reloaded", attrs...)
}

// stat stamps both files; a file that cannot be stat'ed gets an empty
// stamp, which differs from any real one, so its return counts as a change.
func (r *Reloader) stat() [2]fileStamp {
	var s [2]fileStamp
	for i, f := range []string{r.certFile, r.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			s[i] = fileStamp{fi}
		}
	}
	return s
}

func (r *Reloader) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Reloader) interval() time.Duration {
	if r.Interval > 0 {
		return r.Interval
	}
	return CheckInterval
}

// Redirect answers every request with 308 Permanent Redirect to the same
// host, path and query over https on httpsPort (left out when 443). 308
// rather than 301 keeps the method and body of a POST. A request without a
// Host gets 400: there is nowhere to send it.
func Redirect(httpsPort string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		} else {
			host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		}
		if host == "" {
			http.Error(w, "400 bad request: no Host to redirect to", http.StatusBadRequest)
			return
		}
		if httpsPort != "443" {
			host = net.JoinHostPort(host, httpsPort)
		} else if strings.Contains(host, ":") {
			host = "[" + host + "]" // an IPv6 literal
		}
		target := "https://" + host + r.URL.RequestURI()
		http.Redirect(w, r, target, http.StatusPermanentRedirect)
	})
}
