package statetest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Failover timings of a SentinelGroup. Production Sentinels wait 30 s
// before calling a primary down; a test cannot, and on loopback a primary
// that misses a second of PINGs is gone.
const (
	// sentinelDownAfter is how long a primary may fail to answer before a
	// Sentinel sees it down (down-after-milliseconds).
	sentinelDownAfter = 1000 * time.Millisecond
	// sentinelFailoverTimeout bounds one failover attempt; a Sentinel
	// retries after twice this when an election was split
	// (failover-timeout), so it also bounds the worst recovery.
	sentinelFailoverTimeout = 2000 * time.Millisecond
	// sentinelQuorum Sentinels must agree that the primary is down.
	sentinelQuorum = 2
)

// SentinelGroup is a Redis Sentinel deployment in miniature: a primary,
// one replica of it and three Sentinels watching them with quorum 2, each
// a redis-server child process on a free loopback port, all stopped at
// cleanup. With its short timings a killed primary is replaced by the
// replica within a few seconds.
type SentinelGroup struct {
	// Name is the master name the Sentinels monitor (master_name=).
	Name string
	// Primary and Replica are the data servers as started; after a
	// failover their roles are swapped (see MasterAddr).
	Primary, Replica *Server
	// Sentinels are the three Sentinel processes.
	Sentinels []*Server
	t         testing.TB
}

// StartSentinelGroup starts a primary, its replica and three Sentinels
// monitoring the primary under name, and returns once the replica is in
// sync and every Sentinel knows the replica and the two other Sentinels: a
// primary killed from then on is failed over. It skips (or fails, under
// REQUIRE_REDIS) like StartRedis when redis-server is missing; Sentinel is
// redis-server --sentinel, which Debian ships in the redis-sentinel package
// but the same binary runs.
func StartSentinelGroup(t testing.TB, name string) *SentinelGroup {
	t.Helper()
	g := &SentinelGroup{Name: name, t: t}
	// Either server may become primary, and a primary waits 5 s by default
	// before a diskless full sync to gather more replicas.
	data := []string{"--repl-diskless-sync-delay", "0"}
	g.Primary = newServer(t)
	g.Primary.args = data
	g.Primary.Start()
	t.Cleanup(g.Primary.Stop)
	g.Replica = newServer(t)
	g.Replica.args = append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(g.Primary.Port)}, data...)
	g.Replica.Start()
	t.Cleanup(g.Replica.Stop)
	g.waitFor("the replica to sync with the primary", func(ctx context.Context) error {
		info, err := g.client(g.Replica.Addr()).Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "master_link_status:up") {
			return fmt.Errorf("replica not in sync:\n%s", info)
		}
		return nil
	})

	dir := t.TempDir()
	for i := range 3 {
		s := newServer(t)
		s.conf = filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", i))
		s.args = []string{"--sentinel"}
		g.Sentinels = append(g.Sentinels, s)
	}
	for i, s := range g.Sentinels {
		// Each Sentinel is told its own ID, the replica and the other
		// Sentinels (what it would otherwise learn from the primary's INFO,
		// polled every 10 s, and from hello messages every 2 s).
		conf := []string{
			fmt.Sprintf("sentinel myid %s", sentinelID(i)),
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", name, g.Primary.Port, sentinelQuorum),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", name, sentinelDownAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s %d", name, sentinelFailoverTimeout.Milliseconds()),
			fmt.Sprintf("sentinel parallel-syncs %s 1", name),
			fmt.Sprintf("sentinel known-replica %s 127.0.0.1 %d", name, g.Replica.Port),
			"dir " + dir,
		}
		for j, other := range g.Sentinels {
			if j != i {
				conf = append(conf, fmt.Sprintf("sentinel known-sentinel %s 127.0.0.1 %d %s", name, other.Port, sentinelID(j)))
			}
		}
		if err := os.WriteFile(s.conf, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
			t.Fatalf("write sentinel config: %v", err)
		}
		s.Start()
		t.Cleanup(s.Stop)
	}
	for _, s := range g.Sentinels {
		g.waitFor("sentinel "+s.Addr()+" to see the whole group", func(ctx context.Context) error {
			sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
			defer sc.Close()
			m, err := sc.Master(ctx, name).Result()
			if err != nil {
				return err
			}
			if m["num-other-sentinels"] != "2" || m["num-slaves"] != "1" || m["flags"] != "master" {
				return fmt.Errorf("master state %v", m)
			}
			replicas, err := sc.Replicas(ctx, name).Result()
			if err != nil {
				return err
			}
			if len(replicas) != 1 || replicas[0]["flags"] != "slave" || replicas[0]["master-link-status"] != "ok" {
				return fmt.Errorf("replica state %v", replicas)
			}
			return nil
		})
	}
	return g
}

// sentinelID is the run ID of the i-th Sentinel: 40 hex digits, fixed so
// that each Sentinel's config can name the others before they start.
func sentinelID(i int) string { return fmt.Sprintf("%040x", 0x5e000+i) }

// URL is the go-redis failover URL of the group (redis.ParseFailoverURL):
// the first Sentinel in the authority, the others as addr= parameters, and
// the master name.
func (g *SentinelGroup) URL() string {
	q := url.Values{}
	for _, s := range g.Sentinels[1:] {
		q.Add("addr", s.Addr())
	}
	q.Set("master_name", g.Name)
	u := url.URL{Scheme: "redis", Host: g.Sentinels[0].Addr(), RawQuery: q.Encode()}
	return u.String()
}

// MasterAddr is the primary's address as the Sentinels report it: the
// answer of the first Sentinel that gives one.
func (g *SentinelGroup) MasterAddr() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var errs []error
	for _, s := range g.Sentinels {
		if s.cmd == nil {
			continue
		}
		sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
		hp, err := sc.GetMasterAddrByName(ctx, g.Name).Result()
		sc.Close()
		if err == nil && len(hp) == 2 {
			return net.JoinHostPort(hp[0], hp[1]), nil
		}
		errs = append(errs, fmt.Errorf("sentinel %s: %v %w", s.Addr(), hp, err))
	}
	return "", fmt.Errorf("no sentinel names the primary of %s: %v", g.Name, errs)
}

// Master is the data server that is primary now, by MasterAddr.
func (g *SentinelGroup) Master() *Server {
	g.t.Helper()
	addr, err := g.MasterAddr()
	if err != nil {
		g.t.Fatal(err)
	}
	for _, s := range []*Server{g.Primary, g.Replica} {
		if s.Addr() == addr {
			return s
		}
	}
	g.t.Fatalf("the sentinels name %s as primary, neither %s nor %s", addr, g.Primary.Addr(), g.Replica.Addr())
	return nil
}

// KillPrimary kills the current primary with SIGKILL, as a crash or a lost
// machine would, and returns its address. Its data is gone (no
// persistence).
func (g *SentinelGroup) KillPrimary() string {
	g.t.Helper()
	m := g.Master()
	m.Stop()
	return m.Addr()
}

// WaitFailover waits, up to timeout, until the Sentinels name a primary
// other than old, and returns it. On timeout the test fails with the
// Sentinels' logs.
func (g *SentinelGroup) WaitFailover(old string, timeout time.Duration) string {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		addr, err := g.MasterAddr()
		if err == nil && addr != old {
			return addr
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("no failover from %s within %v (last answer %q, %v)\n%s", old, timeout, addr, err, g.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// client is a go-redis client of one data server, closed at cleanup.
func (g *SentinelGroup) client(addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	g.t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond for up to 30 s, failing the test with the group's
// logs and cond's last error if it never holds.
func (g *SentinelGroup) waitFor(what string, cond func(context.Context) error) {
	g.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := cond(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("waiting for %s: %v\n%s", what, err, g.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logs is every process's output, labelled.
func (g *SentinelGroup) logs() string {
	var b strings.Builder
	for _, s := range append([]*Server{g.Primary, g.Replica}, g.Sentinels...) {
		if s == nil {
			continue
		}
		fmt.Fprintf(&b, "--- %s\n%s", s.Addr(), s.Output())
	}
	return b.String()
}
