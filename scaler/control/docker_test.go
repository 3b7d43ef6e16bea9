package control_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/docker/docker/client"

	"lbscale/internal/state"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv"
	"lbscale/internal/testenv/dockertest"
	"lbscale/internal/testenv/statetest"
	"lbscale/scaler/config"
	"lbscale/scaler/control"
	"lbscale/scaler/driver"
	"lbscale/scaler/driver/docker"
)

// Integration tests: real Docker engine, real Redis, real web-server
// containers. They skip without an engine unless REQUIRE_DOCKER is set.

func TestMain(m *testing.M) { os.Exit(dockertest.Main(m)) }

type cluster struct {
	t     *testing.T
	cli   *client.Client
	redis *statetest.Server
	img   string
	net   string
	pool  string
	store *redisstore.Store // the test's own view of Redis (plays balancer)
}

func newCluster(t *testing.T) *cluster {
	if testing.Short() {
		t.Skip("integration test (Docker) skipped in -short mode")
	}
	cli := dockertest.Client(t)
	c := &cluster{t: t, cli: cli, redis: statetest.StartRedis(t)}
	c.img = dockertest.WebImage(t, cli)
	c.net = dockertest.Network(t, cli)
	c.pool = dockertest.Pool(t, cli)
	c.store = c.newStore()
	return c
}

func (c *cluster) newStore() *redisstore.Store {
	s, err := redisstore.New(c.redis.URL(), c.pool)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { s.Close() })
	return s
}

func (c *cluster) config(id string) config.Config {
	return config.Config{
		Redis:             redisstore.Conn{URL: c.redis.URL()},
		Pool:              c.pool,
		MinReplicas:       1,
		MaxReplicas:       3,
		TargetInflight:    4,
		ScaleUpCooldown:   500 * time.Millisecond,
		IdleTimeout:       time.Hour,
		ScaleDownSpec:     "@every 1s",
		DrainTimeout:      10 * time.Second,
		DrainSettle:       300 * time.Millisecond,
		StopGrace:         5 * time.Second,
		WebImage:          c.img,
		WebEnv:            []string{"LISTEN_ADDR=:8080"},
		WebPort:           8080,
		Network:           c.net,
		Driver:            config.DriverDocker,
		HealthTimeout:     30 * time.Second,
		LeaseTTL:          time.Second,
		ReconcileInterval: time.Second,
		PollInterval:      100 * time.Millisecond,
		// A panic window of a nanosecond holds only the reading being
		// decided on: every decision sizes from the balancers' latest
		// report, as these tests assume. A zero window would hold no
		// reading at all, and so no backlog.
		PanicWindow: time.Nanosecond,
		ID:          id,
	}
}

// start runs a controller with its own Redis connection and Docker driver
// until the test ends or stop is called.
func (c *cluster) start(cfg config.Config) (*control.Controller, func()) {
	var log *slog.Logger
	if os.Getenv("SCALER_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("t", c.t.Name())
	} else {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	drv, err := docker.New(docker.Config{Pool: cfg.Pool, Network: cfg.Network, Port: cfg.WebPort, Creator: cfg.ID, Logger: log})
	if err != nil {
		c.t.Fatal(err)
	}
	ctrl := control.New(control.Options{Config: cfg, Store: c.newStore(), Driver: drv, Logger: log})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			c.t.Errorf("Run: %v", err)
		}
		drv.Close()
	}
	c.t.Cleanup(stop)
	return ctrl, stop
}

func (c *cluster) registry() []state.Backend {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	bs, err := c.store.Backends(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	return bs
}

func (c *cluster) ready() []state.Backend {
	var out []state.Backend
	for _, b := range c.registry() {
		if b.State == state.Ready {
			out = append(out, b)
		}
	}
	return out
}

func (c *cluster) poolContainers() int {
	return dockertest.Count(c.t, c.cli, driver.PoolFilter(c.pool))
}

// waitPool waits until n backends are ready, the registry holds nothing
// else and the engine runs exactly n of the pool's containers.
func (c *cluster) waitPool(n int, within time.Duration) []state.Backend {
	c.t.Helper()
	var rb []state.Backend
	testenv.Eventually(c.t, within, "pool of "+strconv.Itoa(n), func() bool {
		rb = c.ready()
		return len(rb) == n && len(c.registry()) == n && c.poolContainers() == n
	})
	return rb
}

// balancer reports load to Redis the way a balancer's sync does: queued
// requests, in-flight per backend, and a request sent just now to every
// backend in seen.
func (c *cluster) balancer(name string, queued int64, inflight map[string]int64, seen ...state.Backend) {
	c.t.Helper()
	req := state.SyncRequest{Balancer: name, Queued: queued, TTL: time.Minute}
	now := time.Now()
	for id, n := range inflight {
		req.Slots = append(req.Slots, state.SlotUse{ID: id, Local: n, Floor: n, Limit: 4, LastSeen: now})
	}
	for _, b := range seen {
		if _, ok := inflight[b.ID]; !ok {
			req.Slots = append(req.Slots, state.SlotUse{ID: b.ID, Limit: 4, LastSeen: now})
		}
	}
	if _, err := c.store.Sync(context.Background(), req); err != nil {
		c.t.Fatal(err)
	}
	if queued > 0 {
		_ = c.store.PublishDemand(context.Background(), name, queued)
	}
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestDockerMinReplicasKillAndReplace(t *testing.T) {
	c := newCluster(t)
	cfg := c.config("a")
	cfg.MinReplicas = 2
	ctrl, _ := c.start(cfg)
	ready := c.waitPool(2, 60*time.Second)
	for _, b := range ready {
		// Reachable from the host at the registered address, and the
		// server's id is the backend id (hostname = container name).
		resp, _ := get(t, "http://"+b.Addr+"/healthz")
		if resp.StatusCode != 200 {
			t.Fatalf("%s /healthz: %s", b.ID, resp.Status)
		}
		resp, _ = get(t, "http://"+b.Addr+"/")
		if got := resp.Header.Get("X-Server-Id"); got != b.ID {
			t.Errorf("X-Server-Id %q, want the backend id %q", got, b.ID)
		}
		info, err := c.cli.ContainerInspect(context.Background(), b.ID)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Labels[driver.LabelPool] != c.pool || info.Config.Labels[driver.LabelRole] != driver.RoleWeb {
			t.Errorf("labels %v", info.Config.Labels)
		}
	}

	victim := ready[0].ID
	killed := time.Now()
	if err := c.cli.ContainerKill(context.Background(), victim, "KILL"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 15*time.Second, "killed container gone from the registry", func() bool {
		return !slices.ContainsFunc(c.registry(), func(b state.Backend) bool { return b.ID == victim })
	})
	t.Logf("killed container left the registry after %s", time.Since(killed).Round(time.Millisecond))
	after := c.waitPool(2, 60*time.Second)
	t.Logf("pool back to 2 ready after %s", time.Since(killed).Round(time.Millisecond))
	if slices.ContainsFunc(after, func(b state.Backend) bool { return b.ID == victim }) {
		t.Fatal("the killed container is still registered")
	}
	if dockertest.Running(t, c.cli, victim) {
		t.Fatal("the killed container runs again")
	}
	logColdStarts(t, ctrl)
}

func TestDockerScaleUpToMaxAndDownToMinLeavesOthersAlone(t *testing.T) {
	c := newCluster(t)
	unlabelled := dockertest.Foreign(t, c.cli, c.img, c.net, nil)
	otherPool := dockertest.Foreign(t, c.cli, c.img, c.net, map[string]string{driver.LabelPool: c.pool + "-other"})
	cfg := c.config("a")
	cfg.MinReplicas = 1
	cfg.MaxReplicas = 3
	cfg.IdleTimeout = 2 * time.Second
	cfg.ScaleDownSpec = "@every 1s"
	cfg.NanoCPUs = 500_000_000
	cfg.MemoryBytes = 64 << 20
	ctrl, _ := c.start(cfg)
	first := c.waitPool(1, 60*time.Second)[0]

	// Demand far above MAX: 1 saturated + 100 queued wants ceil(104/4)=26.
	c.balancer("bal-1", 100, map[string]int64{first.ID: 4})
	most := 0
	testenv.Eventually(t, 60*time.Second, "3 ready", func() bool {
		most = max(most, c.poolContainers())
		return len(c.ready()) == 3
	})
	for range 10 { // keep the demand up a while longer: MAX must hold
		c.balancer("bal-1", 100, map[string]int64{first.ID: 4}, c.ready()...)
		most = max(most, c.poolContainers())
		time.Sleep(100 * time.Millisecond)
	}
	if most > 3 {
		t.Fatalf("%d containers at once with MAX_REPLICAS=3", most)
	}
	for _, b := range c.ready() {
		info, err := c.cli.ContainerInspect(context.Background(), b.ID)
		if err != nil {
			t.Fatal(err)
		}
		if r := info.HostConfig.Resources; r.NanoCPUs != 500_000_000 || r.Memory != 64<<20 {
			t.Errorf("%s limits: %d nano-CPUs, %d bytes", b.ID, r.NanoCPUs, r.Memory)
		}
		if _, ok := info.NetworkSettings.Networks[c.net]; !ok {
			t.Errorf("%s is not on %s", b.ID, c.net)
		}
	}
	st := ctrl.Status(context.Background())
	if st.Desired != 3 || !st.Leader {
		t.Fatalf("status desired %d leader %v", st.Desired, st.Leader)
	}

	// Demand gone: after IDLE_TIMEOUT the cron job drains back to MIN.
	c.balancer("bal-1", 0, nil)
	idleFrom := time.Now()
	left := c.waitPool(1, 60*time.Second)
	t.Logf("scaled down 3 -> 1 in %s (IDLE_TIMEOUT 2s, cron @every 1s)", time.Since(idleFrom).Round(time.Millisecond))
	if left[0].ID != first.ID {
		t.Errorf("kept %s, want the oldest %s (newest go first)", left[0].ID, first.ID)
	}
	for _, id := range []string{unlabelled, otherPool} {
		if !dockertest.Running(t, c.cli, id) {
			t.Fatalf("container %s outside the pool was stopped", id)
		}
	}
	logColdStarts(t, ctrl)
}

func TestDockerScaleFromZero(t *testing.T) {
	c := newCluster(t)
	cfg := c.config("a")
	cfg.MinReplicas = 0
	ctrl, _ := c.start(cfg)
	testenv.Eventually(t, 10*time.Second, "leading", ctrl.Leader)
	time.Sleep(2 * time.Second)
	if n := c.poolContainers(); n != 0 {
		t.Fatalf("MIN_REPLICAS=0 without load runs %d containers", n)
	}
	asked := time.Now()
	c.balancer("bal-1", 1, nil)
	c.waitPool(1, 60*time.Second)
	t.Logf("from zero to one ready in %s", time.Since(asked).Round(time.Millisecond))
}

func TestDockerTwoScalersOneActs(t *testing.T) {
	c := newCluster(t)
	cfgA, cfgB := c.config("scaler-a"), c.config("scaler-b")
	cfgA.MinReplicas, cfgB.MinReplicas = 2, 2
	a, stopA := c.start(cfgA)
	b, stopB := c.start(cfgB)
	c.waitPool(2, 60*time.Second)
	time.Sleep(2 * time.Second) // several lease rounds and reconciles of both
	if a.Leader() == b.Leader() {
		t.Fatalf("leaders: a %v, b %v; want exactly one", a.Leader(), b.Leader())
	}
	if n := c.poolContainers(); n != 2 {
		t.Fatalf("%d containers with two scalers and MIN_REPLICAS=2", n)
	}
	leader, follower, stopLeader := a, b, stopA
	if b.Leader() {
		leader, follower, stopLeader = b, a, stopB
	}
	stopLeader()
	testenv.Eventually(t, 3*cfgA.LeaseTTL+5*time.Second, "the other scaler leads", follower.Leader)
	if leader.Leader() {
		t.Fatal("old leader still leads")
	}
	before := c.ready()
	c.waitPool(2, 30*time.Second)
	if !slices.EqualFunc(before, c.ready(), func(x, y state.Backend) bool { return x.ID == y.ID }) {
		t.Fatalf("the new leader replaced the pool instead of adopting it: %v -> %v", before, c.ready())
	}
}

func TestDockerTwoBalancersSignallingStartWhatTheDemandNeeds(t *testing.T) {
	c := newCluster(t)
	cfg := c.config("a")
	cfg.MaxReplicas = 10
	c.start(cfg)
	first := c.waitPool(1, 60*time.Second)[0]
	// Two balancers, each with 2 in flight on the one container and 4
	// queued, both signalling: ceil((4 + 8) / 4) = 3 replicas, not 1 + 2 + 2.
	deadline := time.Now().Add(4 * time.Second) // past the cold starts and the cooldown
	for time.Now().Before(deadline) {
		c.balancer("bal-1", 4, map[string]int64{first.ID: 2})
		c.balancer("bal-2", 4, map[string]int64{first.ID: 2})
		time.Sleep(50 * time.Millisecond)
	}
	c.waitPool(3, 60*time.Second)
	if n := c.poolContainers(); n != 3 {
		t.Fatalf("%d containers for a demand of 3", n)
	}
}

func TestDockerRedisOutagePausesScalingAndRegistryIsRebuilt(t *testing.T) {
	c := newCluster(t)
	cfg := c.config("a")
	cfg.MinReplicas = 2
	ctrl, _ := c.start(cfg)
	before := c.waitPool(2, 60*time.Second)
	c.redis.Stop()
	testenv.Eventually(t, 10*time.Second, "scaler steps down without Redis", func() bool { return !ctrl.Leader() })
	if p := ctrl.Status(context.Background()).Problems; p["redis lease"] == "" {
		t.Fatalf("status problems %v do not name the lease", p)
	}
	// Containers keep running meanwhile (balancers serve on the last
	// registry they saw); the scaler neither stops nor starts any.
	time.Sleep(2 * time.Second)
	if n := c.poolContainers(); n != 2 {
		t.Fatalf("%d containers during the outage, want the 2 running ones", n)
	}
	// Redis comes back empty (no persistence): the scaler leads again and
	// rebuilds the registry from the engine, adopting the running pool.
	c.redis.Start()
	testenv.Eventually(t, 20*time.Second, "leading again", ctrl.Leader)
	after := c.waitPool(2, 60*time.Second)
	if !slices.EqualFunc(before, after, func(x, y state.Backend) bool { return x.ID == y.ID && x.Addr == y.Addr }) {
		t.Fatalf("registry rebuilt as %v, want the adopted %v", after, before)
	}
}

func logColdStarts(t *testing.T, ctrl *control.Controller) {
	mfs, err := ctrl.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "lbscale_scaler_cold_start_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			if n := h.GetSampleCount(); n > 0 {
				t.Logf("cold starts (create -> healthy): %d, mean %.3fs", n, h.GetSampleSum()/float64(n))
			}
		}
	}
}
