// Package tlstest makes certificates for tests: self-signed ones for the
// balancer's TLS listener, and a private CA with server and client
// certificates for Redis over TLS.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Write makes a self-signed ECDSA P-256 certificate with common name cn and
// a random serial, valid for 127.0.0.1, ::1 and localhost, and writes it and
// its key as PEM to certFile and keyFile. Each file is replaced by a rename,
// as a renewal tool does, so a reader never sees half a file; the pair is
// still replaced one file after the other.
func Write(t testing.TB, certFile, keyFile, cn string) *x509.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := loopback(template(t, cn))
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = true // self-signed: it is its own root in a client's pool
	return sign(t, tmpl, tmpl, key, key, certFile, keyFile)
}

// Replace writes data to a new file beside path and renames it over path.
func Replace(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
}

// Pool is a certificate pool that trusts certs (self-signed ones from Write).
func Pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// CA is a private certificate authority for tests that need a chain rather
// than a self-signed leaf: a server certificate a client trusts only through
// the CA's file, and client certificates for mutual TLS.
type CA struct {
	// Cert is the CA's self-signed certificate.
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA makes an ECDSA P-256 CA with common name cn and writes its
// certificate as PEM to file (the file a client or server is told to trust).
func NewCA(t testing.TB, file, cn string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := template(t, cn)
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = true
	return &CA{Cert: sign(t, tmpl, tmpl, key, key, file, ""), key: key}
}

// Issue writes a leaf certificate signed by the CA, and its key, as PEM to
// certFile and keyFile. It is valid for 127.0.0.1, ::1 and localhost and
// for usage (x509.ExtKeyUsageServerAuth for a server, ExtKeyUsageClientAuth
// for a client of mutual TLS).
func (ca *CA) Issue(t testing.TB, certFile, keyFile, cn string, usage x509.ExtKeyUsage) *x509.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := loopback(template(t, cn))
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
	return sign(t, tmpl, ca.Cert, key, ca.key, certFile, keyFile)
}

// sign makes tmpl's certificate for key, signed by parent's signer, and
// writes it and key as PEM to certFile and keyFile (no key file when
// keyFile is "").
func sign(t testing.TB, tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	Replace(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	if keyFile != "" {
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		Replace(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	}
	return cert
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// template is what every certificate here has: a random serial, common
// name cn, and a day's validity that began an hour ago (clock skew).
func template(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return &x509.Certificate{
		SerialNumber: n,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
}

// loopback makes c valid for the names a test dials: 127.0.0.1, ::1 and
// localhost.
func loopback(c *x509.Certificate) *x509.Certificate {
	c.DNSNames = []string{"localhost"}
	c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	return c
}
