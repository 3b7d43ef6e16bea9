package statetest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestSentinelGroupFailsOver checks the helper's promise: the URL reaches
// the primary through the Sentinels, and a killed primary is replaced by
// the replica, which then takes writes through the same URL.
func TestSentinelGroupFailsOver(t *testing.T) {
	if testing.Short() {
		t.Skip("a failover takes seconds")
	}
	g := StartSentinelGroup(t, "lbscale-test")
	opt, err := redis.ParseFailoverURL(g.URL())
	if err != nil {
		t.Fatalf("ParseFailoverURL(%s): %v", g.URL(), err)
	}
	if len(opt.SentinelAddrs) != 3 || opt.MasterName != "lbscale-test" {
		t.Fatalf("URL %s parses to sentinels %v, master %q", g.URL(), opt.SentinelAddrs, opt.MasterName)
	}
	c := redis.NewFailoverClient(opt)
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatalf("write through sentinels: %v", err)
	}
	if got := g.Master(); got != g.Primary {
		t.Fatalf("primary at start is %s, want %s", got.Addr(), g.Primary.Addr())
	}

	start := time.Now()
	old := g.KillPrimary()
	now := g.WaitFailover(old, 30*time.Second)
	t.Logf("sentinels promoted %s %v after the kill", now, time.Since(start).Round(time.Millisecond))
	if now != g.Replica.Addr() {
		t.Fatalf("new primary %s, want the replica %s", now, g.Replica.Addr())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.Set(ctx, "k", "after", 0).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write through the sentinels after failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
