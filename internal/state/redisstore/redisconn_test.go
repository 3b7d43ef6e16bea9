package redisstore_test

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lbscale/internal/envconf"
	"lbscale/internal/state"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv/statetest"
	"lbscale/internal/testenv/tlstest"
)

// Passwords distinctive enough that finding one in an error means it leaked.
const (
	defaultPass = "default-Pa55-9c1e"
	userPass    = "user-Pa55-41d7"
	wrongPass   = "wrong-Pa55-b2f0"
)

// dial opens the store on conn and checks it answers.
func dial(t *testing.T, conn redisstore.Conn) *redisstore.Store {
	t.Helper()
	s, err := redisstore.NewConn(conn, "tls")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// exercise runs the store's operations over s: the scaler's registry write
// and lease, a balancer's sync and the scaler's read of the load.
func exercise(t *testing.T, s *redisstore.Store) {
	t.Helper()
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBackend(ctx, state.Backend{ID: "w1", Addr: "10.0.0.1:8080", State: state.Ready}); err != nil {
		t.Fatal(err)
	}
	bs, err := s.Backends(ctx)
	if err != nil || len(bs) != 1 || bs[0].Addr != "10.0.0.1:8080" {
		t.Fatalf("registry read back %+v, %v", bs, err)
	}
	b := newSim("b1", 1)
	b.local[0] = 2
	if res := b.sync(t, s, []string{"w1"}, 4); res.Balancers != 1 || res.Grants[0] != 4 {
		t.Fatalf("sync over TLS: %+v", res)
	}
	load, err := s.ClusterLoad(ctx)
	if err != nil || load.Inflight["w1"] != 2 {
		t.Fatalf("cluster load %+v, %v", load, err)
	}
	if l, err := s.AcquireLease(ctx, "scaler-1", time.Second); !l.HeldBy("scaler-1") || err != nil {
		t.Fatalf("lease: %+v %v", l, err)
	}
}

// whoami is the ACL user a connection made from conn is logged in as.
func whoami(t *testing.T, conn redisstore.Conn) string {
	t.Helper()
	opt, err := conn.Options()
	if err != nil {
		t.Fatal(err)
	}
	rdb := opt.NewClient()
	defer rdb.Close()
	name, err := rdb.Do(context.Background(), "ACL", "WHOAMI").Text()
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// TestRedisOverTLSWithPassword: the store works end to end over rediss://
// against a TLS-only server with a private CA, as the default user with its
// password and as an ACL user.
func TestRedisOverTLSWithPassword(t *testing.T) {
	srv := statetest.StartRedisTLS(t, statetest.TLSOptions{Password: defaultPass, User: "lbscale", UserPassword: userPass})
	for _, tc := range []struct{ name, user, pass, want string }{
		{"default user", "", defaultPass, "default"},
		{"acl user", "lbscale", userPass, "lbscale"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := redisstore.Conn{URL: srv.URLAs(tc.user, tc.pass), CAFile: srv.TLS.CAFile}
			if !strings.HasPrefix(conn.URL, "rediss://") {
				t.Fatalf("not a TLS URL: %s", conn.URL)
			}
			exercise(t, dial(t, conn))
			if got := whoami(t, conn); got != tc.want {
				t.Fatalf("logged in as %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRedisMutualTLS: a server that requires client certificates accepts
// the store with REDIS_CERT_FILE and REDIS_KEY_FILE (without them it is
// refused: TestRedisConnectionErrors).
func TestRedisMutualTLS(t *testing.T) {
	srv := statetest.StartRedisTLS(t, statetest.TLSOptions{Password: defaultPass, RequireClientCert: true})
	exercise(t, dial(t, redisstore.Conn{URL: srv.URLAs("", defaultPass), CAFile: srv.TLS.CAFile,
		CertFile: srv.TLS.ClientCert, KeyFile: srv.TLS.ClientKey}))
}

// TestRedisConnectionErrors: each way of getting the connection wrong gives
// an error that says what to change, and none carries a password.
func TestRedisConnectionErrors(t *testing.T) {
	tlsSrv := statetest.StartRedisTLS(t, statetest.TLSOptions{Password: defaultPass, User: "lbscale", UserPassword: userPass})
	mtls := statetest.StartRedisTLS(t, statetest.TLSOptions{Password: defaultPass, RequireClientCert: true})
	plain := statetest.StartRedis(t)
	ca := tlsSrv.TLS.CAFile
	cases := []struct {
		name string
		conn redisstore.Conn
		want []string
		is   func(error) bool
	}{
		{"wrong password", redisstore.Conn{URL: tlsSrv.URLAs("", wrongPass), CAFile: ca},
			[]string{"WRONGPASS", "wrong user or password in REDIS_URL"}, nil},
		{"wrong acl password", redisstore.Conn{URL: tlsSrv.URLAs("lbscale", wrongPass), CAFile: ca},
			[]string{"WRONGPASS"}, nil},
		{"no password", redisstore.Conn{URL: tlsSrv.URL(), CAFile: ca},
			[]string{"NOAUTH", "requires a password"}, nil},
		{"private CA not given", redisstore.Conn{URL: tlsSrv.URLAs("", defaultPass)},
			[]string{"certificate signed by unknown authority", "REDIS_CA_FILE"},
			func(err error) bool { var e x509.UnknownAuthorityError; return errors.As(err, &e) }},
		{"plain redis:// to the TLS-only port", redisstore.Conn{URL: strings.Replace(tlsSrv.URLAs("", defaultPass), "rediss://", "redis://", 1)},
			[]string{"use rediss://"}, nil},
		{"rediss:// to a plain server", redisstore.Conn{URL: strings.Replace(plain.URL(), "redis://", "rediss://", 1), CAFile: ca},
			[]string{"not TLS", "use redis://"}, nil},
		{"client certificate required", redisstore.Conn{URL: mtls.URLAs("", defaultPass), CAFile: mtls.TLS.CAFile},
			[]string{"certificate required", "REDIS_CERT_FILE"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := dial(t, tc.conn).Ping(ctx)
			if err == nil {
				t.Fatal("ping succeeded")
			}
			t.Logf("error: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if tc.is != nil && !tc.is(err) {
				t.Errorf("error has the wrong type: %#v", err)
			}
			for _, p := range []string{defaultPass, userPass, wrongPass} {
				if strings.Contains(err.Error(), p) {
					t.Errorf("error carries a password: %v", err)
				}
			}
		})
	}
}

// TestReadConn: the variables are checked at start-up, each problem
// under the variable that causes it, and no message carries the password.
func TestReadConn(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	ca := tlstest.NewCA(t, caFile, "test CA")
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	ca.Issue(t, cert, key, "client", x509.ExtKeyUsageClientAuth)
	otherCert, otherKey := filepath.Join(dir, "c2.pem"), filepath.Join(dir, "k2.pem")
	ca.Issue(t, otherCert, otherKey, "other", x509.ExtKeyUsageClientAuth)
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	const (
		tlsURL   = "rediss://lbscale:" + userPass + "@redis.example:6380/0"
		plainURL = "redis://:" + userPass + "@redis.example:6379/0"
	)
	cases := []struct {
		name string
		env  map[string]string
		want []string // variables named in the error; none: valid
	}{
		{"nothing set", map[string]string{}, nil},
		{"plain with password", map[string]string{redisstore.EnvRedisURL: plainURL}, nil},
		{"plain with acl user", map[string]string{redisstore.EnvRedisURL: "redis://lbscale:" + userPass + "@r:6379/2"}, nil},
		{"tls, system roots", map[string]string{redisstore.EnvRedisURL: tlsURL}, nil},
		{"tls, private CA", map[string]string{redisstore.EnvRedisURL: tlsURL, redisstore.EnvRedisCAFile: caFile}, nil},
		{"mutual tls", map[string]string{redisstore.EnvRedisURL: tlsURL, redisstore.EnvRedisCAFile: caFile,
			redisstore.EnvRedisCertFile: cert, redisstore.EnvRedisKeyFile: key}, nil},
		{"CA with plain url", map[string]string{redisstore.EnvRedisURL: plainURL, redisstore.EnvRedisCAFile: caFile}, []string{redisstore.EnvRedisCAFile}},
		{"client cert with plain url", map[string]string{redisstore.EnvRedisURL: plainURL, redisstore.EnvRedisCertFile: cert, redisstore.EnvRedisKeyFile: key},
			[]string{redisstore.EnvRedisCertFile, redisstore.EnvRedisKeyFile}},
		{"CA without url", map[string]string{redisstore.EnvRedisCAFile: caFile}, []string{redisstore.EnvRedisCAFile}},
		{"CA unreadable", map[string]string{redisstore.EnvRedisURL: tlsURL, redisstore.EnvRedisCAFile: missing}, []string{redisstore.EnvRedisCAFile}},
		{"CA not PEM", map[string]string{redisstore.EnvRedisURL: tlsURL, redisstore.EnvRedisCAFile: garbage}, []string{redisstore.EnvRedisCAFile}},
		{"cert without key", map[string]string{redisstore.EnvRedisURL: tlsURL, redisstore.EnvRedisCertFile: cert}, []string{redisstore.EnvRedisKeyFile}},
		{"key without cert", map[string]string{redisstore.EnvRedisURL: tlsURL, redisstore.EnvRedisKeyFile: key}, []string{redisstore.EnvRedisCertFile}},
		{"cert unreadable", map[string]string{redisstore.EnvRedisURL: tlsURL, redisstore.EnvRedisCertFile: missing, redisstore.EnvRedisKeyFile: key}, []string{redisstore.EnvRedisCertFile}},
		{"cert not PEM", map[string]string{redisstore.EnvRedisURL: tlsURL, redisstore.EnvRedisCertFile: garbage, redisstore.EnvRedisKeyFile: key}, []string{redisstore.EnvRedisCertFile}},
		{"key unreadable", map[string]string{redisstore.EnvRedisURL: tlsURL, redisstore.EnvRedisCertFile: cert, redisstore.EnvRedisKeyFile: missing}, []string{redisstore.EnvRedisKeyFile}},
		{"key of another cert", map[string]string{redisstore.EnvRedisURL: tlsURL, redisstore.EnvRedisCertFile: cert, redisstore.EnvRedisKeyFile: otherKey}, []string{redisstore.EnvRedisKeyFile}},
		{"not a redis url", map[string]string{redisstore.EnvRedisURL: "http://:" + userPass + "@r:6379"}, []string{redisstore.EnvRedisURL}},
		{"bad database", map[string]string{redisstore.EnvRedisURL: "redis://:" + userPass + "@r:6379/zero"}, []string{redisstore.EnvRedisURL}},
		{"url does not parse", map[string]string{redisstore.EnvRedisURL: "redis://:" + userPass + "@r:port/0"}, []string{redisstore.EnvRedisURL}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := envconf.New(envconf.FromMap(tc.env), redisstore.ConnVars)
			c := redisstore.ReadConn(r)
			err := r.Err()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if c.URL != tc.env[redisstore.EnvRedisURL] || c.CAFile != tc.env[redisstore.EnvRedisCAFile] {
					t.Fatalf("read %+v from %v", c, tc.env)
				}
				if c.URL != "" {
					if _, err := c.Options(); err != nil {
						t.Fatalf("valid config does not build options: %v", err)
					}
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted %v", tc.env)
			}
			for _, name := range tc.want {
				if !strings.Contains(err.Error(), name+":") {
					t.Errorf("error does not name %s: %v", name, err)
				}
			}
			if strings.Contains(err.Error(), userPass) {
				t.Errorf("error carries the password: %v", err)
			}
		})
	}
}

// TestOptionsTLS: rediss:// verifies the server as the URL's host, with at
// least TLS 1.2, against the CA file when one is given.
func TestOptionsTLS(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	tlstest.NewCA(t, caFile, "test CA")
	opt, err := redisstore.Conn{URL: "rediss://:pw@redis.internal:6380/1", CAFile: caFile}.Options()
	if err != nil {
		t.Fatal(err)
	}
	tc := opt.Single.TLSConfig
	switch {
	case tc == nil:
		t.Fatal("no TLS for rediss://")
	case tc.ServerName != "redis.internal" || tc.MinVersion < 0x0303 || tc.RootCAs == nil || tc.InsecureSkipVerify:
		t.Fatalf("TLS config: server name %q, min version %#x, roots %v, skip verify %v",
			tc.ServerName, tc.MinVersion, tc.RootCAs != nil, tc.InsecureSkipVerify)
	case opt.Single.Password != "pw" || opt.Single.DB != 1 || opt.Single.Addr != "redis.internal:6380":
		t.Fatalf("options %+v", opt.Single)
	}
	opt, err = redisstore.Conn{URL: "rediss://redis.internal:6380/0"}.Options()
	if err != nil || opt.Single.TLSConfig.RootCAs != nil {
		t.Fatalf("without REDIS_CA_FILE the system roots are used: %v %v", opt.Single.TLSConfig, err)
	}
	if opt, err := (redisstore.Conn{URL: "redis://r:6379/0"}).Options(); err != nil || opt.Single.TLSConfig != nil {
		t.Fatalf("redis:// must not use TLS: %v %v", opt, err)
	}

	// Sentinels and the primary they name are each verified as the host
	// they are dialled at, with the same CA and client certificate.
	fo, err := redisstore.Conn{URL: "rediss://s1.internal:26379/2?addr=s2.internal:26379&master_name=m&password=pw", CAFile: caFile}.Options()
	if err != nil {
		t.Fatal(err)
	}
	switch f := fo.Failover; {
	case f == nil || fo.Single != nil || fo.Cluster != nil:
		t.Fatalf("master_name= is not a failover config: %+v", fo)
	case f.TLSConfig == nil || f.TLSConfig.ServerName != "" || f.TLSConfig.MinVersion < 0x0303 || f.TLSConfig.RootCAs == nil:
		t.Fatalf("failover TLS config %+v", f.TLSConfig)
	case f.MasterName != "m" || f.Password != "pw" || f.DB != 2 || len(f.SentinelAddrs) != 2:
		t.Fatalf("failover options %+v", f)
	}
}

// TestParseURLForms: REDIS_URL's three forms, told apart by the query, and
// the URLs refused, naming REDIS_URL and never carrying a password.
func TestParseURLForms(t *testing.T) {
	const pass = "q-Pa55-0e7a"
	type want struct {
		form  string // single, failover, cluster; "" when refused
		addrs []string
		tls   bool
	}
	cases := []struct {
		name string
		url  string
		want want
	}{
		{"one server", "redis://:" + pass + "@r:6379/1", want{"single", []string{"r:6379"}, false}},
		{"sentinel", "redis://s1:26379?addr=s2:26379&addr=s3:26379&master_name=lb", want{"failover", []string{"s1:26379", "s2:26379", "s3:26379"}, false}},
		{"sentinel, one sentinel", "redis://s1:26379/0?master_name=lb", want{"failover", []string{"s1:26379"}, false}},
		{"sentinel, passwords", "rediss://sentinel:" + pass + "@s1:26379/3?addr=s2:26379&master_name=lb&username=lbscale&password=" + pass, want{"failover", []string{"s1:26379", "s2:26379"}, true}},
		{"sentinel, master option", "redis://s1:26379?master_name=lb&client_name=b1", want{"failover", []string{"s1:26379"}, false}},
		{"cluster", "redis://:" + pass + "@n1:7000?addr=n2:7001&addr=n3:7002", want{"cluster", []string{"n1:7000", "n2:7001", "n3:7002"}, false}},
		{"cluster over tls", "rediss://n1:7000?addr=n2:7001", want{"cluster", []string{"n1:7000", "n2:7001"}, true}},

		{"sentinel, empty master name", "redis://s1:26379?addr=s2:26379&master_name=&password=" + pass, want{}},
		{"sentinel, bad addr", "redis://s1:26379?addr=s2&master_name=lb&password=" + pass, want{}},
		{"sentinel, unknown option", "redis://s1:26379?master_name=lb&sentinel_pass=x&password=" + pass, want{}},
		{"sentinel, bad database", "redis://s1:26379/x?master_name=lb&password=" + pass, want{}},
		{"sentinel, not redis", "http://s1:26379?master_name=lb&password=" + pass, want{}},
		{"sentinel, does not parse", "redis://:" + pass + "@s1:port?master_name=lb&password=" + pass, want{}},
		{"cluster, database", "redis://n1:7000/3?addr=n2:7001&password=" + pass, want{}},
		{"cluster, bad addr", "redis://:" + pass + "@n1:7000?addr=:7001", want{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := envconf.New(envconf.FromMap(map[string]string{redisstore.EnvRedisURL: tc.url}), redisstore.ConnVars)
			c := redisstore.ReadConn(r)
			if tc.want.form == "" {
				err := r.Err()
				if err == nil {
					t.Fatalf("accepted %s", tc.url)
				}
				if !strings.Contains(err.Error(), redisstore.EnvRedisURL+":") {
					t.Errorf("error does not name %s: %v", redisstore.EnvRedisURL, err)
				}
				if _, oerr := c.Options(); oerr == nil {
					t.Errorf("Options accepts what ReadConn refused")
				} else if strings.Contains(oerr.Error(), pass) {
					t.Errorf("Options error carries the password: %v", oerr)
				}
				if strings.Contains(err.Error(), pass) {
					t.Errorf("error carries the password: %v", err)
				}
				return
			}
			if err := r.Err(); err != nil {
				t.Fatal(err)
			}
			opt, err := c.Options()
			if err != nil {
				t.Fatal(err)
			}
			var form string
			var addrs []string
			switch {
			case opt.Single != nil:
				form, addrs = "single", []string{opt.Single.Addr}
			case opt.Failover != nil:
				form, addrs = "failover", opt.Failover.SentinelAddrs
			case opt.Cluster != nil:
				form, addrs = "cluster", opt.Cluster.Addrs
			}
			if form != tc.want.form || strings.Join(addrs, ",") != strings.Join(tc.want.addrs, ",") {
				t.Fatalf("parsed as %s %v, want %s %v", form, addrs, tc.want.form, tc.want.addrs)
			}
			if (opt.TLSConfig() != nil) != tc.want.tls {
				t.Fatalf("TLS %v, want %v", opt.TLSConfig() != nil, tc.want.tls)
			}
			if got := c.String(); strings.Contains(got, pass) {
				t.Fatalf("String carries the password: %s", got)
			}
			rdb := opt.NewClient()
			rdb.Close()
		})
	}
}

// TestRedactURL: what may be logged of REDIS_URL.
func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://r:6379/0":                       "redis://r:6379/0",
		"redis://:secret@r:6379/0":               "redis://:xxxxx@r:6379/0",
		"rediss://user:secret@r:6380/0":          "rediss://user:xxxxx@r:6380/0",
		"redis://user@r:6379/0":                  "redis://user@r:6379/0",
		"redis://:se@cr/et@r:6379/0":             "redis://:xxxxx@r:6379/0",
		"redis://:secret@r:port/0":               "redis://:xxxxx@r:port/0",
		"not a url":                              "not a url",
		"rediss://u:p%40ss@r:6380/0?protocol=3":  "rediss://u:xxxxx@r:6380/0?protocol=3",
		"redis://r:6379/0?client_name=a@b":       "redis://r:xxxxx@b", // over-redacted, never under
		"redis://:secret@r:6379/0?client_name=x": "redis://:xxxxx@r:6379/0?client_name=x",
		// Failover URLs: the Sentinels' password in the user info, the
		// primary's in password=.
		"redis://s1:26379?addr=s2:26379&master_name=m":                                       "redis://s1:26379?addr=s2:26379&master_name=m",
		"redis://s1:26379?addr=s2:26379&master_name=m&password=secret":                       "redis://s1:26379?addr=s2:26379&master_name=m&password=xxxxx",
		"redis://s1:26379?password=secret&master_name=m":                                     "redis://s1:26379?password=xxxxx&master_name=m",
		"rediss://sent:s1pass@s1:26379/0?master_name=m&username=u&password=secret&addr=s2:1": "rediss://sent:xxxxx@s1:26379/0?master_name=m&username=u&password=xxxxx&addr=s2:1",
		"redis://s1:26379?master_name=m&password=se@cret":                                    "redis://s1:26379?master_name=m&password=xxxxx",
		"redis://s1:26379?master_name=m&password=se&cret&addr=s2:1":                          "redis://s1:26379?master_name=m&password=xxxxx&addr=s2:1",
		"redis://s1:26379?master_name=m&password=se&cr=et":                                   "redis://s1:26379?master_name=m&password=xxxxx&cr=et", // a "name=" ends it
		"redis://s1:26379?master_name=m&sentinel_password=secret":                            "redis://s1:26379?master_name=m&sentinel_password=xxxxx",
		"redis://s1:port?master_name=m&PASSWORD=secret":                                      "redis://s1:port?master_name=m&PASSWORD=xxxxx",
	} {
		if got := redisstore.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
		if got := (redisstore.Conn{URL: in}).String(); got != redisstore.RedactURL(in) {
			t.Errorf("Conn.String differs from RedactURL: %q", got)
		}
	}
}
