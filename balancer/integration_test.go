package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lbscale/balancer/admin"
	"lbscale/internal/testenv"
	"lbscale/internal/testenv/proctest"
	"lbscale/internal/testenv/statetest"
)

// web starts a real web server process and returns its address.
func web(t *testing.T, id string, env ...string) string {
	t.Helper()
	port := proctest.FreePort(t)
	addr := proctest.Addr(port)
	p := proctest.Start(t, id, proctest.Build(t, "webserver"), append([]string{"LISTEN_ADDR=" + addr, "SERVER_ID=" + id}, env...)...)
	proctest.WaitHTTP(t, p, "http://"+addr+"/healthz")
	return addr
}

type lb struct {
	proxy, admin string
	proc         *proctest.Proc
}

// balancer starts a real balancer process.
func balancer(t *testing.T, env ...string) lb {
	t.Helper()
	pp, ap := proctest.FreePort(t), proctest.FreePort(t)
	b := lb{proxy: "http://" + proctest.Addr(pp), admin: "http://" + proctest.Addr(ap)}
	b.proc = proctest.Start(t, "balancer", proctest.Build(t, "balancer"),
		append([]string{"LISTEN_ADDR=" + proctest.Addr(pp), "ADMIN_ADDR=" + proctest.Addr(ap), "HEALTH_INTERVAL=200ms", "LOG_LEVEL=warn"}, env...)...)
	proctest.WaitHTTP(t, b.proc, b.admin+"/healthz")
	return b
}

func status(t *testing.T, admin string) admin.Status {
	t.Helper()
	res, err := http.Get(admin + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var s adminStatus
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

type adminStatus = admin.Status

// waitReplicas waits until the balancer routes to n backends holding slots.
func waitReplicas(t *testing.T, admin string, n int) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, fmt.Sprintf("balancer %s reporting %d replicas", admin, n), func() bool {
		return status(t, admin).Replicas == n
	})
}

type webLoad struct {
	ID           string `json:"id"`
	Inflight     int64  `json:"inflight"`
	PeakInflight int64  `json:"peak_inflight"`
	Served       int64  `json:"served"`
}

func load(t *testing.T, addr string) webLoad {
	t.Helper()
	res, err := http.Get("http://" + addr + "/load")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var l webLoad
	if err := json.NewDecoder(res.Body).Decode(&l); err != nil {
		t.Fatal(err)
	}
	return l
}

func resetLoad(t *testing.T, addr string) {
	t.Helper()
	res, err := http.Post("http://"+addr+"/load/reset", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
}

// result of a closed-loop run.
type result struct {
	ok, failed atomic.Int64
	byServer   sync.Map // X-Server-Id -> *atomic.Int64
	codes      sync.Map // status -> *atomic.Int64
}

func (r *result) count(m *sync.Map, k string) {
	v, _ := m.LoadOrStore(k, new(atomic.Int64))
	v.(*atomic.Int64).Add(1)
}

// closedLoop runs users clients against url until ctx ends.
func closedLoop(ctx context.Context, wg *sync.WaitGroup, r *result, url string, users int) {
	tr := &http.Transport{MaxIdleConnsPerHost: users, MaxConnsPerHost: users}
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	for range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
				res, err := c.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						r.failed.Add(1)
						r.count(&r.codes, "error:"+err.Error())
					}
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					r.ok.Add(1)
					r.count(&r.byServer, res.Header.Get("X-Server-Id"))
				} else {
					r.failed.Add(1)
					r.count(&r.codes, strconv.Itoa(res.StatusCode))
				}
			}
		}()
	}
}

type limitRun struct {
	peak       int64
	served     []int64
	throughput float64
	ok, failed int64
	codes      map[string]int64
}

// limitSetup is one cluster-wide limit scenario: servers web servers with
// CAPACITY = limit, one balancer per entry of users (its closed-loop clients).
type limitSetup struct {
	servers int
	limit   int
	users   []int
	share   bool
}

// runLimit runs a scenario; the is 4 web servers with CAPACITY = 4
// and SLEEP_MS = 40, two balancers with MAX_INFLIGHT = 4 and
// least-connections, closed-loop load of 40 users (2.5x capacity) split 36/4.
func runLimit(t *testing.T, ls limitSetup) limitRun {
	srv := statetest.StartRedis(t)
	var addrs []string
	for i := range ls.servers {
		addrs = append(addrs, web(t, fmt.Sprintf("w%d", i+1), fmt.Sprintf("CAPACITY=%d", ls.limit), "SLEEP_MS=40"))
	}
	env := []string{"BACKENDS=" + strings.Join(addrs, ","), "REDIS_URL=" + srv.URL(), "POOL=limit",
		"LB_POLICY=least-connections", fmt.Sprintf("MAX_INFLIGHT=%d", ls.limit), "QUEUE_MAX=1000", "QUEUE_TIMEOUT=30s",
		"SHARE_STATE=" + strconv.FormatBool(ls.share)}
	var lbs []lb
	for i := range ls.users {
		lbs = append(lbs, balancer(t, append(env, fmt.Sprintf("BALANCER_ID=b%d", i))...))
	}
	for _, b := range lbs {
		waitReplicas(t, b.admin, ls.servers)
	}

	var r result
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	for i, b := range lbs {
		closedLoop(ctx, &wg, &r, b.proxy+"/", ls.users[i])
	}
	time.Sleep(2 * time.Second) // warm up: connections, grants settle
	for _, addr := range addrs {
		resetLoad(t, addr)
	}
	okBefore := r.ok.Load()
	const measure = 8 * time.Second
	time.Sleep(measure)
	okAfter := r.ok.Load()
	var out limitRun
	for _, addr := range addrs {
		l := load(t, addr)
		out.peak = max(out.peak, l.PeakInflight)
		out.served = append(out.served, l.Served)
	}
	cancel()
	wg.Wait()
	out.throughput = float64(okAfter-okBefore) / measure.Seconds()
	out.ok, out.failed = r.ok.Load(), r.failed.Load()
	out.codes = map[string]int64{}
	r.codes.Range(func(k, v any) bool { out.codes[k.(string)] = v.(*atomic.Int64).Load(); return true })
	return out
}

// TestClusterWideMaxInflight is the claim no peer makes: MAX_INFLIGHT holds
// for the sum over balancers, with most traffic on one of them.
func TestClusterWideMaxInflight(t *testing.T) {
	if testing.Short() {
		t.Skip("long integration test")
	}
	shared := runLimit(t, limitSetup{servers: 4, limit: 4, users: []int{36, 4}, share: true})
	mean := 0.0
	for _, s := range shared.served {
		mean += float64(s)
	}
	mean /= float64(len(shared.served))
	worst := 0.0
	for _, s := range shared.served {
		worst = math.Max(worst, math.Abs(float64(s)-mean)/mean)
	}
	t.Logf("SHARE_STATE=true: peak in-flight at any web server %d (limit 4), served %v (worst %.1f%% from mean), %.0f req/s (ideal 400), ok %d failed %d",
		shared.peak, shared.served, 100*worst, shared.throughput, shared.ok, shared.failed)
	if shared.peak > 5 {
		t.Errorf("peak in-flight %d > limit 4 + tolerated 1", shared.peak)
	}
	if worst > 0.10 {
		t.Errorf("per-backend counts %v spread %.1f%% > 10%% from mean", shared.served, 100*worst)
	}
	if shared.failed != 0 {
		t.Errorf("%d requests failed: %v", shared.failed, shared.codes)
	}
	if shared.throughput < 0.9*400 {
		t.Errorf("throughput %.0f req/s < 90%% of the ideal 4 x 4 / 40ms = 400", shared.throughput)
	}

	alone := runLimit(t, limitSetup{servers: 4, limit: 4, users: []int{36, 4}, share: false})
	t.Logf("SHARE_STATE=false: peak in-flight at any web server %d (limit 4), served %v, %.0f req/s, ok %d failed %d",
		alone.peak, alone.served, alone.throughput, alone.ok, alone.failed)
	if alone.peak <= 4 {
		t.Errorf("without sharing the two balancers should together exceed the limit of 4; peak was %d", alone.peak)
	}
}

// TestClusterWideLimitOtherShapes: three balancers split 80/10/10 over two
// web servers with MAX_INFLIGHT = 2. The small balancers' shares are under
// one slot; they must still be served (no starvation, nothing fails) while
// the limit holds.
func TestClusterWideLimitOtherShapes(t *testing.T) {
	if testing.Short() {
		t.Skip("long integration test")
	}
	got := runLimit(t, limitSetup{servers: 2, limit: 2, users: []int{16, 2, 2}, share: true})
	t.Logf("3 balancers 16/2/2 users, 2 servers, MAX_INFLIGHT=2: peak %d, served %v, %.0f req/s (ideal 100), ok %d failed %d %v",
		got.peak, got.served, got.throughput, got.ok, got.failed, got.codes)
	if got.peak > 3 {
		t.Errorf("peak in-flight %d > limit 2 + tolerated 1", got.peak)
	}
	if got.failed != 0 {
		t.Errorf("%d requests failed: %v", got.failed, got.codes)
	}
	if got.throughput < 0.8*100 {
		t.Errorf("throughput %.0f req/s < 80%% of the ideal 2 x 2 / 40ms = 100", got.throughput)
	}
}

// TestEachPoolKeepsItsOwnClusterWideLimit: two balancers share Redis and
// one pool file with two pools routed by path, each over its own web
// servers with its own MAX_INFLIGHT. Nearly all of one pool's clients come
// through one balancer, and the other pool's through the other. Each
// pool's limit holds for the sum over the balancers, the pools' slots are
// their own (the quiet pool is served in full while the busy one queues),
// and nothing fails.
func TestEachPoolKeepsItsOwnClusterWideLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("long integration test")
	}
	srv := statetest.StartRedis(t)
	a1, a2 := web(t, "a1", "CAPACITY=3", "SLEEP_MS=40"), web(t, "a2", "CAPACITY=3", "SLEEP_MS=40")
	b1 := web(t, "b1", "CAPACITY=2", "SLEEP_MS=40")
	file := filepath.Join(t.TempDir(), "pools.yml")
	testenv.ReplaceFile(t, file, fmt.Sprintf(`defaults:
  lb_policy: least-connections
  queue_timeout: 30s
pools:
  busy:
    paths: [/busy]
    backends: %s,%s
    max_inflight: 3
  quiet:
    paths: [/quiet]
    backends: %s
    max_inflight: 2
`, a1, a2, b1))
	env := []string{"LBSCALE_CONFIG=" + file, "REDIS_URL=" + srv.URL()}
	lbA, lbB := balancer(t, append(env, "BALANCER_ID=A")...), balancer(t, append(env, "BALANCER_ID=B")...)
	for _, b := range []lb{lbA, lbB} {
		testenv.Eventually(t, 10*time.Second, "3 backends over both pools on "+b.admin, func() bool { return status(t, b.admin).Replicas == 3 })
	}

	var busy, quiet result
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	closedLoop(ctx, &wg, &busy, lbA.proxy+"/busy", 27) // 4.5x the pool's 6 slots
	closedLoop(ctx, &wg, &busy, lbB.proxy+"/busy", 3)
	closedLoop(ctx, &wg, &quiet, lbB.proxy+"/quiet", 2) // exactly its 2 slots
	closedLoop(ctx, &wg, &quiet, lbA.proxy+"/quiet", 2)
	time.Sleep(2 * time.Second)
	for _, addr := range []string{a1, a2, b1} {
		resetLoad(t, addr)
	}
	quietBefore := quiet.ok.Load()
	const measure = 6 * time.Second
	time.Sleep(measure)
	quietRate := float64(quiet.ok.Load()-quietBefore) / measure.Seconds()
	peaks := map[string]int64{}
	for name, addr := range map[string]string{"a1": a1, "a2": a2, "b1": b1} {
		peaks[name] = load(t, addr).PeakInflight
	}
	cancel()
	wg.Wait()
	t.Logf("peak in flight per web server %v (busy's limit 3, quiet's 2); quiet served %.0f req/s (ideal 2 / 40 ms = 50); busy ok %d failed %d, quiet ok %d failed %d",
		peaks, quietRate, busy.ok.Load(), busy.failed.Load(), quiet.ok.Load(), quiet.failed.Load())
	if peaks["a1"] > 4 || peaks["a2"] > 4 {
		t.Errorf("busy pool: peak in flight %d/%d > its limit 3 + tolerated 1", peaks["a1"], peaks["a2"])
	}
	if peaks["b1"] > 3 {
		t.Errorf("quiet pool: peak in flight %d > its limit 2 + tolerated 1", peaks["b1"])
	}
	if busy.failed.Load()+quiet.failed.Load() != 0 {
		t.Errorf("failed requests: busy %d, quiet %d", busy.failed.Load(), quiet.failed.Load())
	}
	if quietRate < 0.8*50 {
		t.Errorf("the quiet pool served %.0f req/s beside a saturated one, want at least 80%% of its 50", quietRate)
	}
}
