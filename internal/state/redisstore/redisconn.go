package redisstore

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"lbscale/balancer/tlsterm"
	"lbscale/internal/envconf"
)

// The environment variables that say how to reach Redis. The balancer and
// the scaler both read them through ReadConn, so they are named here
// once.
const (
	// EnvRedisURL is where the shared state lives, in one of three forms
	// (rediss:// instead of redis:// for TLS, to every server named):
	//
	//   - one server: redis://[[user]:password@]host:port/db
	//   - a primary found through Sentinels, which follows a failover:
	//     redis://[[user]:password@]sentinel1:port/db?addr=sentinel2:port&addr=sentinel3:port&master_name=NAME[&username=U&password=P]
	//     (redis.ParseFailoverURL: the user info is the Sentinels'
	//     credentials, username= and password= the primary's)
	//   - a Redis Cluster: redis://[[user]:password@]node1:port?addr=node2:port&addr=node3:port
	//     (redis.ParseClusterURL; any form with addr= and no master_name=)
	//
	// Other go-redis query options (client_name=, protocol= …) are
	// accepted; the timeouts and retries are the store's own.
	EnvRedisURL = "REDIS_URL"
	// EnvRedisCAFile is a PEM bundle trusted for the server's certificate
	// (a private CA); unset, the system roots.
	EnvRedisCAFile = "REDIS_CA_FILE"
	// EnvRedisCertFile and EnvRedisKeyFile are a client certificate and its
	// key, for a server that requires mutual TLS.
	EnvRedisCertFile = "REDIS_CERT_FILE"
	EnvRedisKeyFile  = "REDIS_KEY_FILE"
)

// Conn is how to reach Redis: the URL and, for rediss://, the files of
// its TLS configuration. Its String form has the password redacted, so a
// Conn (or a config holding one) may be logged as it is.
type Conn struct {
	// URL carries the address, database, user and password. The password is
	// sent with AUTH (HELLO) after the TLS handshake, never in clear over a
	// rediss:// connection.
	URL string
	// CAFile (REDIS_CA_FILE), when set, replaces the system roots as the
	// CAs trusted for the server's certificate. The certificate must be
	// valid for the host named in URL (an IP address or a DNS name).
	CAFile string
	// CertFile and KeyFile (REDIS_CERT_FILE, REDIS_KEY_FILE): both or
	// neither; the client certificate offered to a server with
	// tls-auth-clients yes. Read at start-up: a renewed certificate takes
	// a restart.
	CertFile, KeyFile string
}

// String is the URL with the password redacted.
func (c Conn) String() string { return RedactURL(c.URL) }

// TLS reports whether the URL asks for TLS (rediss://).
func (c Conn) TLS() bool { return strings.HasPrefix(strings.ToLower(c.URL), "rediss://") }

// ConnVars declares REDIS_URL and the TLS files, read by ReadConn: every
// command that reaches Redis joins them to its own table.
var ConnVars = envconf.Table{
	{Name: EnvRedisURL, Help: "the shared store: one server redis://[user:password@]host:port/db; a Sentinel group redis://sentinel1:26379/0?addr=sentinel2:26379&addr=sentinel3:26379&master_name=NAME (follows a failover); a Redis Cluster redis://node1:6379?addr=node2:6379. rediss:// for TLS (see Redis with a password and TLS)"},
	{Name: EnvRedisCAFile, Help: "PEM bundle of the CAs trusted for Redis's certificate; rediss:// only"},
	{Name: EnvRedisCertFile, Help: "PEM client certificate for a Redis that requires one (mutual TLS); with REDIS_KEY_FILE, rediss:// only"},
	{Name: EnvRedisKeyFile, Help: "PEM private key of REDIS_CERT_FILE"},
}

// ReadConn reads REDIS_URL and the TLS files through r and checks them
// the way Options will use them, recording each problem under the variable
// that causes it: a URL the client cannot use, a file that does not load, a
// certificate without its key, TLS files with a plain redis:// URL. An
// empty REDIS_URL is not an error here (the balancer runs without Redis;
// the scaler says it is required). No message carries the password.
func ReadConn(r *envconf.Reader) Conn {
	c := Conn{
		URL:      r.String(EnvRedisURL),
		CAFile:   r.String(EnvRedisCAFile),
		CertFile: r.String(EnvRedisCertFile),
		KeyFile:  r.String(EnvRedisKeyFile),
	}
	if c.URL != "" {
		if _, err := parseURL(c.URL); err != nil {
			r.Fail(EnvRedisURL, "%s is not a usable redis:// or rediss:// URL (one server, a Sentinel group with master_name=, or a cluster with addr=): %v", RedactURL(c.URL), err)
		}
	}
	for _, v := range []struct{ name, file string }{{EnvRedisCAFile, c.CAFile}, {EnvRedisCertFile, c.CertFile}, {EnvRedisKeyFile, c.KeyFile}} {
		switch {
		case v.file == "":
		case c.URL == "":
			r.Fail(v.name, "set without %s: there is no Redis connection to use it", EnvRedisURL)
		case !c.TLS():
			r.Fail(v.name, "set but %s is %s, not rediss://: the file is only used for TLS", EnvRedisURL, RedactURL(c.URL))
		}
	}
	if c.CAFile != "" {
		if _, err := loadCAFile(c.CAFile); err != nil {
			r.Fail(EnvRedisCAFile, "%v", err)
		}
	}
	switch {
	case c.CertFile != "" && c.KeyFile == "":
		r.Fail(EnvRedisKeyFile, "unset while %s is set: a client certificate needs its key", EnvRedisCertFile)
	case c.CertFile == "" && c.KeyFile != "":
		r.Fail(EnvRedisCertFile, "unset while %s is set: a client certificate needs its key", EnvRedisKeyFile)
	case c.CertFile != "":
		if _, err := tlsterm.Load(c.CertFile, c.KeyFile); err != nil {
			name := EnvRedisKeyFile
			var fe *tlsterm.FileError
			if errors.As(err, &fe) && fe.Path == c.CertFile {
				name = EnvRedisCertFile
			}
			r.Fail(name, "%v", err)
		}
	}
	return c
}

// Options is the go-redis configuration of one REDIS_URL: exactly one of
// its fields is set, by the form of the URL (see EnvRedisURL).
type Options struct {
	// Single is one server: redis://host:port/db.
	Single *redis.Options
	// Failover is a primary found through Sentinels: a URL with
	// master_name=.
	Failover *redis.FailoverOptions
	// Cluster is a Redis Cluster: a URL with addr= and no master_name=.
	Cluster *redis.ClusterOptions
}

// NewClient builds the client of o: a failover client for Sentinel, a
// cluster client for a Cluster, a plain client for one server. The store's
// scripts run unchanged on each, since every key of a pool shares one hash
// slot (state.Keys).
func (o Options) NewClient() redis.UniversalClient {
	switch {
	case o.Failover != nil:
		return redis.NewFailoverClient(o.Failover)
	case o.Cluster != nil:
		return redis.NewClusterClient(o.Cluster)
	default:
		return redis.NewClient(o.Single)
	}
}

// SetTimeouts sets the dial, read and write timeouts and the retries of
// a command, whichever the form. A failover client dials and reads its
// Sentinels with the same timeouts, so a dead Sentinel costs no more than
// a dead server.
func (o Options) SetTimeouts(timeout time.Duration, retries int) {
	switch {
	case o.Failover != nil:
		o.Failover.DialTimeout, o.Failover.ReadTimeout, o.Failover.WriteTimeout = timeout, timeout, timeout
		o.Failover.MaxRetries = retries
	case o.Cluster != nil:
		o.Cluster.DialTimeout, o.Cluster.ReadTimeout, o.Cluster.WriteTimeout = timeout, timeout, timeout
		o.Cluster.MaxRetries = retries
	default:
		o.Single.DialTimeout, o.Single.ReadTimeout, o.Single.WriteTimeout = timeout, timeout, timeout
		o.Single.MaxRetries = retries
	}
}

// TLSConfig is the TLS configuration of whichever form o is; nil for a
// redis:// URL.
func (o Options) TLSConfig() *tls.Config {
	switch {
	case o.Failover != nil:
		return o.Failover.TLSConfig
	case o.Cluster != nil:
		return o.Cluster.TLSConfig
	default:
		return o.Single.TLSConfig
	}
}

// Addr is the first address the URL names: the server, the first Sentinel
// or the first cluster node. Error hints probe it.
func (o Options) Addr() string {
	switch {
	case o.Failover != nil:
		return o.Failover.SentinelAddrs[0]
	case o.Cluster != nil:
		return o.Cluster.Addrs[0]
	default:
		return o.Single.Addr
	}
}

// Options is the go-redis configuration for c: the URL's options and, for
// rediss://, TLS 1.2 or later, the CA file's roots and the client
// certificate. One server is verified as the URL's host; the Sentinels,
// the primary they name and cluster nodes each as the host it is dialled
// at (go-redis would verify them all as the URL's first host).
func (c Conn) Options() (Options, error) {
	opt, err := parseURL(c.URL)
	if err != nil {
		return Options{}, fmt.Errorf("redis url %s: %w", RedactURL(c.URL), err)
	}
	tc := opt.TLSConfig()
	if tc == nil {
		if c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" {
			return Options{}, fmt.Errorf("redis url %s: TLS files given for a plain redis:// URL (use rediss://)", RedactURL(c.URL))
		}
		return opt, nil
	}
	tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
	switch {
	case opt.Single != nil && tc.ServerName == "":
		tc.ServerName, _, _ = net.SplitHostPort(opt.Single.Addr)
	case opt.Single == nil:
		// tls.DialWithDialer, which go-redis dials with, takes the server
		// name from the address when this is empty.
		tc.ServerName = ""
	}
	if c.CAFile != "" {
		if tc.RootCAs, err = loadCAFile(c.CAFile); err != nil {
			return Options{}, err
		}
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tlsterm.Load(c.CertFile, c.KeyFile)
		if err != nil {
			return Options{}, fmt.Errorf("redis client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{*cert}
	}
	return opt, nil
}

// parseURL parses the three forms of REDIS_URL, redis:// and rediss://
// only, with every password scrubbed from its errors (net/url quotes the
// whole URL in its own). The form is chosen by the query: master_name=
// is Sentinel (redis.ParseFailoverURL), addr= without it is a Cluster
// (redis.ParseClusterURL), neither is one server (redis.ParseURL).
func parseURL(raw string) (Options, error) {
	scheme, _, _ := strings.Cut(raw, "://")
	if s := strings.ToLower(scheme); s != "redis" && s != "rediss" {
		return Options{}, errors.New("the scheme must be redis:// or rediss://")
	}
	var (
		opt Options
		err error
	)
	u, perr := url.Parse(raw)
	q := url.Values{}
	if perr == nil {
		q = u.Query()
	}
	switch {
	case q.Has("master_name"):
		opt.Failover, err = redis.ParseFailoverURL(raw)
		if err == nil && opt.Failover.MasterName == "" {
			err = errors.New("master_name is empty")
		}
	case q.Has("addr"):
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			err = fmt.Errorf("database %q: a cluster has only database 0", p)
			break
		}
		opt.Cluster, err = redis.ParseClusterURL(raw)
	default:
		opt.Single, err = redis.ParseURL(raw)
	}
	if err != nil {
		msg := err.Error()
		for _, secret := range secrets(raw) {
			msg = strings.ReplaceAll(msg, secret, redacted)
		}
		return Options{}, errors.New(msg)
	}
	return opt, nil
}

// loadCAFile reads a PEM bundle of CA certificates.
func loadCAFile(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: no PEM CERTIFICATE block that parses", file)
	}
	return pool, nil
}

// isTimeout reports whether err is a deadline: a dial, a handshake or a
// read that got no answer.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// speaksPlainRESP reports whether the server of c answers a plain-text
// PING (PONG, or NOAUTH from one with a password). Ping asks only after a
// TLS connection timed out, to tell a plain port from a server that is down.
func speaksPlainRESP(c Conn) bool {
	opt, err := parseURL(c.URL)
	if err != nil {
		return false
	}
	conn, err := net.DialTimeout("tcp", opt.Addr(), 500*time.Millisecond)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := io.WriteString(conn, "PING\r\n"); err != nil {
		return false
	}
	line, _ := bufio.NewReader(conn).ReadString('\n')
	return strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH")
}

// hintError is a connection error with what to change to fix it.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() + " (" + e.hint + ")" }
func (e *hintError) Unwrap() error { return e.err }

// explain adds a hint to the Redis errors a misconfigured connection gives,
// whose own text names neither the cause nor the variable to change.
func explain(err error, overTLS bool) error {
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	var notTLS tls.RecordHeaderError
	var hint string
	msg := err.Error()
	switch {
	case errors.As(err, &unknownCA):
		hint = "the server's certificate is not signed by a CA in " + EnvRedisCAFile + " (the system roots when unset)"
	case errors.As(err, &badHost):
		hint = "the server's certificate is not valid for the host in " + EnvRedisURL
	case errors.As(err, &notTLS):
		hint = "the server answers in plain text on this port, not TLS: use redis://, or its TLS port"
	case strings.Contains(msg, "WRONGPASS"):
		hint = "wrong user or password in " + EnvRedisURL
	case strings.Contains(msg, "NOAUTH"):
		hint = "the server requires a password: " + EnvRedisURL + "=redis://:password@host:port/db"
	case overTLS && strings.Contains(msg, "tls: certificate required"):
		hint = "the server requires a client certificate: set " + EnvRedisCertFile + " and " + EnvRedisKeyFile
	case !overTLS && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)):
		hint = "the server closed the connection at once: if it only speaks TLS on this port, use rediss://"
	default:
		return err
	}
	return &hintError{err: err, hint: hint}
}
