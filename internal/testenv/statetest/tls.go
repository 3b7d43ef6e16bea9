package statetest

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"

	"lbscale/internal/testenv/tlstest"
)

// TLSOptions is the security of a server from StartRedisTLS.
type TLSOptions struct {
	// Password is the default user's password (requirepass); empty, the
	// default user needs none.
	Password string
	// User and UserPassword, when User is set, add an ACL user with every
	// right on every key and channel.
	User, UserPassword string
	// RequireClientCert refuses clients without a certificate signed by the
	// CA (tls-auth-clients yes); otherwise a certificate is optional.
	RequireClientCert bool
}

// TLSFiles are the PEM files of a TLS server, made for each test by a
// private CA: a client trusts the server only through CAFile.
type TLSFiles struct {
	// CAFile is the CA's certificate: what REDIS_CA_FILE names.
	CAFile string
	// ServerCert and ServerKey are the server's certificate (valid for
	// 127.0.0.1, ::1 and localhost) and key.
	ServerCert, ServerKey string
	// ClientCert and ClientKey are a client certificate signed by the CA,
	// for mutual TLS (REDIS_CERT_FILE, REDIS_KEY_FILE).
	ClientCert, ClientKey string
	// CA signs more certificates if a test needs them.
	CA *tlstest.CA
}

// StartRedisTLS starts a redis-server that speaks only TLS, on Port, with
// the security of o, and stops it at cleanup. Like StartRedis it skips the
// test, or fails it under REQUIRE_REDIS, when redis-server is missing or
// was built without TLS.
func StartRedisTLS(t testing.TB, o TLSOptions) *Server {
	t.Helper()
	s := newServer(t)
	dir := t.TempDir()
	f := &TLSFiles{
		CAFile:     filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"), ServerKey: filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"), ClientKey: filepath.Join(dir, "client-key.pem"),
	}
	f.CA = tlstest.NewCA(t, f.CAFile, "lbscale test redis CA")
	f.CA.Issue(t, f.ServerCert, f.ServerKey, "redis", x509.ExtKeyUsageServerAuth)
	f.CA.Issue(t, f.ClientCert, f.ClientKey, "lbscale", x509.ExtKeyUsageClientAuth)
	s.TLS = f
	auth := "optional"
	if o.RequireClientCert {
		auth = "yes"
	}
	s.args = []string{"--tls-cert-file", f.ServerCert, "--tls-key-file", f.ServerKey,
		"--tls-ca-cert-file", f.CAFile, "--tls-auth-clients", auth}
	if o.Password != "" {
		s.args = append(s.args, "--requirepass", o.Password)
	}
	if o.User != "" {
		s.args = append(s.args, "--user", o.User, "on", ">"+o.UserPassword, "~*", "&*", "+@all")
	}
	client, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	s.probe = &tls.Config{RootCAs: tlstest.Pool(f.CA.Cert), ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{client}, MinVersion: tls.VersionTLS12}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}
