package statebench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"lbscale/balancer/cluster"
	"lbscale/internal/state"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv/proctest"
	"lbscale/internal/testenv/statetest"
)

// The benchmark's settings, read from the environment once per run.
const (
	envBackends  = "STATE_BENCH_B"          // comma list of backend counts
	envBalancers = "STATE_BENCH_N"          // comma list of balancer counts
	envModes     = "STATE_BENCH_MODES"      // comma list of rest, load
	envSeconds   = "STATE_BENCH_SECONDS"    // measured window, whole seconds
	envRate      = "STATE_BENCH_RPS"        // cluster-wide arrivals per second in load mode
	envLimit     = "STATE_BENCH_LIMIT"      // MAX_INFLIGHT per backend
	envInterval  = "SYNC_INTERVAL"          // the balancers' sync interval
	envBinary    = "STATE_BENCH_BALANCER"   // a built balancer, for BenchmarkStateProcesses
	benchPool    = "bench"                  // POOL of every balancer
	modeRest     = "rest"                   // no requests
	modeLoad     = "load"                   // the load model of sim.go
	modeProcs    = "rest-procs"             // real balancer processes, no requests
	warmUp       = 2 * time.Second          // before the window: joins, first grants, queues settle
	tick         = time.Millisecond         // the drivers' step
	queueWait    = time.Second              // a request queued this long is dropped
	utilisation  = 0.9                      // of the cluster's slots, by the mean service time
	backendPort0 = 10000                    // goroutine balancers' backends: 127.0.0.1:10000 and up
	settleWait   = 10 * time.Second         // the most to wait for every balancer to see the others
	leakWait     = 5 * time.Second          // the most to wait for goroutines to end after a run
	infoSections = "cpu stats commandstats" // what each INFO snapshot reads
)

// config is one run's settings.
type config struct {
	backends, balancers []int
	modes               []string
	window              time.Duration
	rate                float64
	limit               int64
	interval            time.Duration
}

// loadConfig reads the environment; an invalid value stops the benchmark
// with a message naming the variable and what it accepts.
func loadConfig(tb testing.TB) config {
	tb.Helper()
	c := config{
		backends:  intList(tb, envBackends, []int{16, 100, 400, 1000}, 1, 100000),
		balancers: intList(tb, envBalancers, []int{2, 4, 10}, 1, 1000),
		modes:     []string{modeRest, modeLoad},
		window:    time.Duration(intList(tb, envSeconds, []int{5}, 1, 3600)[0]) * time.Second,
		limit:     int64(intList(tb, envLimit, []int{8}, 1, 1<<20)[0]),
		rate:      float64(intList(tb, envRate, []int{10000}, 1, 10000000)[0]),
		interval:  25 * time.Millisecond,
	}
	if v := strings.TrimSpace(os.Getenv(envModes)); v != "" {
		c.modes = nil
		for _, m := range strings.Split(v, ",") {
			if m = strings.TrimSpace(m); m != modeRest && m != modeLoad {
				tb.Fatalf("%s: %q is not %s or %s", envModes, m, modeRest, modeLoad)
			}
			c.modes = append(c.modes, m)
		}
	}
	if v := os.Getenv(envInterval); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Millisecond || d > 10*time.Second {
			tb.Fatalf("%s: %q is not a duration from 1ms to 10s", envInterval, v)
		}
		c.interval = d
	}
	return c
}

// intList parses name as comma-separated whole numbers from lo to hi, or
// returns def when it is unset.
func intList(tb testing.TB, name string, def []int, lo, hi int) []int {
	tb.Helper()
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def
	}
	var out []int
	for _, s := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < lo || n > hi {
			tb.Fatalf("%s: %q is not a comma list of whole numbers from %d to %d", name, v, lo, hi)
		}
		out = append(out, n)
	}
	return out
}

// BenchmarkState runs N balancers as goroutines, each a real cluster.Syncer
// on its own Redis connection pool, over B static backends against a fresh
// redis-server, and measures a window after a warm-up. It ignores b.N: run
// it with -benchtime=1x.
func BenchmarkState(b *testing.B) {
	c := loadConfig(b)
	for _, nb := range c.backends {
		for _, n := range c.balancers {
			for _, mode := range c.modes {
				b.Run(fmt.Sprintf("B=%d/N=%d/%s", nb, n, mode), func(b *testing.B) { benchGoroutines(b, c, nb, n, mode) })
			}
		}
	}
}

// result is one sub-benchmark's figures; NaN where a mode does not measure.
type result struct {
	backends, balancers int
	mode                string
	redisCPU            float64 // % of one core
	syncsPerS           float64
	p50, p99            float64 // ms
	bytesPerSync        float64
	overshoot           int64 // -1: not measured
	servedPerS          float64
	dropped             uint64
	syncErrors          int
	cmdsPerS            float64
	evalshaPerS         float64
	evalshaUs           float64 // µs per call, over the window
	evalshaCPU          float64 // % of one core spent in EVALSHA
	itemsPerSync        float64 // backends sent with the grant arithmetic, per sync
	countsPerSync       float64 // backends sent for their count alone, per sync
}

// report prints r as one parseable line (scripts/bench-state reads it) and
// hands the figures to the benchmark framework.
func (r result) report(b *testing.B) {
	na := func(v float64, prec int) string {
		if math.IsNaN(v) {
			return "NA"
		}
		return strconv.FormatFloat(v, 'f', prec, 64)
	}
	over := "NA"
	if r.overshoot >= 0 {
		over = strconv.FormatInt(r.overshoot, 10)
	}
	fmt.Printf("state B=%d N=%d mode=%s redis_cpu_pct=%s syncs_per_s=%s sync_p50_ms=%s sync_p99_ms=%s bytes_per_sync=%s overshoot=%s served_per_s=%s dropped=%d sync_errors=%d cmds_per_s=%s evalsha_per_s=%s evalsha_us_per_call=%s evalsha_cpu_pct=%s items_per_sync=%s counts_per_sync=%s\n",
		r.backends, r.balancers, r.mode, na(r.redisCPU, 1), na(r.syncsPerS, 0), na(r.p50, 2), na(r.p99, 2), na(r.bytesPerSync, 0),
		over, na(r.servedPerS, 0), r.dropped, r.syncErrors, na(r.cmdsPerS, 0), na(r.evalshaPerS, 0), na(r.evalshaUs, 1), na(r.evalshaCPU, 1),
		na(r.itemsPerSync, 1), na(r.countsPerSync, 1))
	b.ReportMetric(0, "ns/op")
	for unit, v := range map[string]float64{
		"redis_cpu_%": r.redisCPU, "syncs/s": r.syncsPerS, "sync_p50_ms": r.p50, "sync_p99_ms": r.p99,
		"bytes/sync": r.bytesPerSync, "served/s": r.servedPerS, "cmds/s": r.cmdsPerS, "evalsha_us/call": r.evalshaUs,
	} {
		if !math.IsNaN(v) {
			b.ReportMetric(v, unit)
		}
	}
	if r.overshoot >= 0 {
		b.ReportMetric(float64(r.overshoot), "overshoot")
	}
}

// timedStore times every Sync of the Store it wraps; the rest passes
// through untouched.
type timedStore struct {
	state.Store
	rec *recorder
}

func (s timedStore) Sync(ctx context.Context, req state.SyncRequest) (state.SyncResult, error) {
	start := time.Now()
	res, err := s.Store.Sync(ctx, req)
	s.rec.add(time.Since(start), err)
	return res, err
}

// recorder keeps the durations of the syncs that ended while it was on,
// for every balancer of a run.
type recorder struct {
	on        atomic.Bool
	mu        sync.Mutex // guards durations and errors
	durations []time.Duration
	errors    int
}

func (r *recorder) add(d time.Duration, err error) {
	if !r.on.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.durations = append(r.durations, d)
	if err != nil {
		r.errors++
	}
}

// take stops recording and returns what was recorded.
func (r *recorder) take() ([]time.Duration, int) {
	r.on.Store(false)
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.durations, r.errors
}

// percentile is the nearest-rank p-th percentile of ds in ms (NaN for none).
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return math.NaN()
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p/100*float64(len(s))+0.5) - 1
	i = min(max(i, 0), len(s)-1)
	return float64(s[i]) / float64(time.Millisecond)
}

func benchGoroutines(b *testing.B, c config, nb, n int, mode string) {
	srv := statetest.StartRedis(b)
	info := infoClient(b, srv.Addr())
	goroutines := runtime.NumGoroutine()

	addrs := make([]string, nb)
	static := make([]cluster.Static, nb)
	for i := range addrs {
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(backendPort0+i))
		static[i] = cluster.Static{Addr: addrs[i]}
	}
	over := NewOvershoot(addrs, c.limit)
	rates := make([]float64, n)
	if mode == modeLoad {
		rates = Split(c.rate, n)
	}
	service := MeanService(nb, c.limit, c.rate, utilisation)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rec := &recorder{}

	syncers := make([]*cluster.Syncer, n)
	drivers := make([]*Driver, n)
	stores := make([]*redisstore.Store, n)
	for i := range n {
		st, err := redisstore.New(srv.URL(), benchPool)
		if err != nil {
			b.Fatalf("redis store: %v", err)
		}
		stores[i] = st
		syncers[i] = cluster.New(cluster.Options{
			Store: timedStore{Store: st, rec: rec}, ID: fmt.Sprintf("bench-%d", i), Share: true,
			Interval: c.interval, Limit: c.limit, Static: static,
			// The dashboard report, once a second, as a balancer process
			// writes it.
			Reports: st,
			// Only read by Run, which starts after drivers[i] is set.
			Queued: func() int64 { return drivers[i].Queued() }, OnCapacity: func() {}, Log: log,
		})
		drivers[i] = NewDriver(DriverOptions{Source: syncers[i], Arrivals: NewPoisson(rates[i], time.Now(), rand.New(rand.NewPCG(uint64(i), 1))),
			Service: service, Wait: queueWait, Rand: rand.New(rand.NewPCG(uint64(i), 2)), Overshoot: over})
	}

	syncCtx, stopSync := context.WithCancel(context.Background())
	driveCtx, stopDrive := context.WithCancel(context.Background())
	var syncWG, driveWG sync.WaitGroup
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		// Requests end first, so that each balancer leaves holding nothing.
		stopDrive()
		driveWG.Wait()
		stopSync()
		syncWG.Wait()
		for _, st := range stores {
			_ = st.Close()
		}
	}
	b.Cleanup(stop)
	for i := range n {
		syncWG.Go(func() { syncers[i].Run(syncCtx) })
		if mode == modeLoad {
			driveWG.Go(func() { drivers[i].Run(driveCtx, tick) })
		}
	}

	time.Sleep(warmUp)
	settle(b, func() error {
		for i, s := range syncers {
			if !s.StoreUp() || s.Peers() != n {
				return fmt.Errorf("balancer %d: store up %v, sees %d balancers of %d", i, s.StoreUp(), s.Peers(), n)
			}
		}
		return nil
	})

	counts := func() (served, dropped uint64) {
		for _, d := range drivers {
			served += d.Served()
			dropped += d.Dropped()
		}
		return served, dropped
	}
	// Backends sent per sync, where the store tells (Store.Sent; older
	// revisions do not).
	sent := func() (items, moved uint64, ok bool) {
		for _, st := range stores {
			t, is := any(st).(interface{ Sent() (uint64, uint64) })
			if !is {
				return 0, 0, false
			}
			i, m := t.Sent()
			items, moved = items+i, moved+m
		}
		return items, moved, true
	}
	over.Reset()
	items0, moved0, _ := sent()
	served0, dropped0 := counts()
	rec.on.Store(true)
	i0, start := readInfo(b, info), time.Now()
	time.Sleep(c.window)
	i1, wall := readInfo(b, info), time.Since(start)
	durations, errs := rec.take()
	worst := over.Worst()
	served1, dropped1 := counts()
	items1, moved1, told := sent()
	stop()

	r := redisFigures(i0, i1, wall)
	r.backends, r.balancers, r.mode = nb, n, mode
	r.syncsPerS = float64(len(durations)) / wall.Seconds()
	r.bytesPerSync = math.NaN()
	if len(durations) > 0 {
		r.bytesPerSync = float64(netDelta(i0, i1)) / float64(len(durations))
	}
	r.p50, r.p99 = percentile(durations, 50), percentile(durations, 99)
	r.itemsPerSync, r.countsPerSync = math.NaN(), math.NaN()
	if told && len(durations) > 0 {
		r.itemsPerSync = float64(items1-items0) / float64(len(durations))
		r.countsPerSync = float64(moved1-moved0) / float64(len(durations))
	}
	r.overshoot, r.syncErrors = worst, errs
	r.servedPerS = float64(served1-served0) / wall.Seconds()
	r.dropped = dropped1 - dropped0
	r.report(b)

	// Every goroutine the run started has an owner that stopped it; what
	// is left over after a moment is a leak.
	deadline := time.Now().Add(leakWait)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > goroutines {
		b.Errorf("%d goroutines after the run, %d before it", g, goroutines)
	}
}

// settle waits until ok passes, for at most settleWait, and fails the
// benchmark with its last error otherwise.
func settle(b *testing.B, ok func() error) {
	b.Helper()
	deadline := time.Now().Add(settleWait)
	for {
		err := ok()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("not settled %v after the warm-up: %v", settleWait, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BenchmarkStateProcesses is BenchmarkState's rest mode with real balancer
// processes (the binary STATE_BENCH_BALANCER names) instead of goroutines:
// it shows once that goroutine balancers cost Redis what processes do. A
// process also writes its dashboard report once a second, which goroutine
// balancers do not; the EVALSHA figures (the sync script) compare like
// with like.
func BenchmarkStateProcesses(b *testing.B) {
	bin := os.Getenv(envBinary)
	if bin == "" {
		b.Skipf("%s does not name a built balancer (go build -o /tmp/balancer ./balancer)", envBinary)
	}
	c := loadConfig(b)
	for _, nb := range c.backends {
		for _, n := range c.balancers {
			b.Run(fmt.Sprintf("B=%d/N=%d/%s", nb, n, modeProcs), func(b *testing.B) { benchProcesses(b, c, bin, nb, n) })
		}
	}
}

// status is the part of a balancer's /status this benchmark reads.
type status struct {
	StoreUp   bool `json:"store_up"`
	Balancers int  `json:"balancers"`
	Backends  []struct {
		Healthy bool `json:"healthy"`
	} `json:"backends"`
}

func benchProcesses(b *testing.B, c config, bin string, nb, n int) {
	srv := statetest.StartRedis(b)
	info := infoClient(b, srv.Addr())
	addrs := healthyBackends(b, nb)
	var admins []string
	for i := range n {
		admin := proctest.Addr(proctest.FreePort(b))
		p := proctest.Start(b, fmt.Sprintf("balancer-%d", i), bin,
			"BACKENDS="+strings.Join(addrs, ","), redisstore.EnvRedisURL+"="+srv.URL(), state.EnvPool+"="+benchPool,
			envInterval+"="+c.interval.String(), "MAX_INFLIGHT="+strconv.FormatInt(c.limit, 10),
			"LISTEN_ADDR="+proctest.Addr(proctest.FreePort(b)), "ADMIN_ADDR="+admin,
			"BALANCER_ID="+fmt.Sprintf("bench-proc-%d", i), "LOG_LEVEL=warn", "SHUTDOWN_TIMEOUT=1s")
		proctest.WaitHTTP(b, p, "http://"+admin+"/healthz")
		admins = append(admins, admin)
	}
	check := func() error {
		for _, a := range admins {
			st, err := readStatus(a)
			if err != nil {
				return err
			}
			healthy := 0
			for _, be := range st.Backends {
				if be.Healthy {
					healthy++
				}
			}
			if !st.StoreUp || st.Balancers != n || healthy != nb {
				return fmt.Errorf("balancer on %s: store up %v, sees %d balancers of %d, %d healthy backends of %d", a, st.StoreUp, st.Balancers, n, healthy, nb)
			}
		}
		return nil
	}

	time.Sleep(warmUp)
	settle(b, check)
	i0, start := readInfo(b, info), time.Now()
	time.Sleep(c.window)
	i1, wall := readInfo(b, info), time.Since(start)
	if err := check(); err != nil {
		b.Fatalf("after the window: %v", err)
	}

	r := redisFigures(i0, i1, wall)
	r.backends, r.balancers, r.mode = nb, n, modeProcs
	calls := i1.cmd["evalsha"].calls - i0.cmd["evalsha"].calls
	r.syncsPerS = r.evalshaPerS
	r.bytesPerSync = math.NaN()
	if calls > 0 {
		r.bytesPerSync = float64(netDelta(i0, i1)) / float64(calls)
	}
	r.p50, r.p99, r.servedPerS, r.overshoot = math.NaN(), math.NaN(), math.NaN(), -1
	r.report(b)
	// The processes (stopped by pid, SIGTERM then SIGKILL) and redis-server
	// end at cleanup, in reverse order of their start.
}

// healthyBackends listens on nb loopback ports and answers 200 to every
// request on them (health checks included) until the benchmark ends.
func healthyBackends(b *testing.B, nb int) []string {
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }),
		ReadHeaderTimeout: 5 * time.Second,
	}
	var wg sync.WaitGroup
	addrs := make([]string, nb)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			_ = srv.Close()
			b.Fatalf("backend listener %d of %d: %v", i+1, nb, err)
		}
		addrs[i] = l.Addr().String()
		wg.Go(func() { _ = srv.Serve(l) })
	}
	b.Cleanup(func() { _ = srv.Close(); wg.Wait() })
	return addrs
}

func readStatus(admin string) (status, error) {
	var st status
	c := &http.Client{Timeout: 2 * time.Second}
	res, err := c.Get("http://" + admin + "/status")
	if err != nil {
		return st, fmt.Errorf("read status: %w", err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("decode status of %s: %w", admin, err)
	}
	return st, nil
}

// infoClient is the benchmark's own connection to Redis, opened (and its
// handshake done) before any window, closed at cleanup. It speaks RESP2, so
// that an INFO reply is a plain bulk string whose framing netDelta knows.
func infoClient(b *testing.B, addr string) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
	b.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		b.Fatalf("ping redis: %v", err)
	}
	return rdb
}

// cmdstat is one command's line of INFO commandstats.
type cmdstat struct {
	calls, usec int64
}

// info is one INFO snapshot.
type info struct {
	cpu      float64 // used_cpu_sys + used_cpu_user, seconds
	netBytes int64   // total_net_input_bytes + total_net_output_bytes
	commands int64   // total_commands_processed
	cmd      map[string]cmdstat
	size     int // bytes of the reply, which the next snapshot counts
}

func readInfo(b *testing.B, rdb *redis.Client) info {
	b.Helper()
	raw, err := rdb.Info(context.Background(), strings.Fields(infoSections)...).Result()
	if err != nil {
		b.Fatalf("redis INFO: %v", err)
	}
	in, err := parseInfo(raw)
	if err != nil {
		b.Fatalf("redis INFO: %v", err)
	}
	return in
}

// parseInfo reads the figures this benchmark uses from an INFO reply.
func parseInfo(raw string) (info, error) {
	in := info{cmd: map[string]cmdstat{}, size: len(raw)}
	seen := 0
	for line := range strings.Lines(raw) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "used_cpu_sys", "used_cpu_user":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return in, fmt.Errorf("%s: %q: %w", k, v, err)
			}
			in.cpu += f
			seen++
		case "total_net_input_bytes", "total_net_output_bytes", "total_commands_processed":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return in, fmt.Errorf("%s: %q: %w", k, v, err)
			}
			if k == "total_commands_processed" {
				in.commands = n
			} else {
				in.netBytes += n
			}
			seen++
		}
		if name, ok := strings.CutPrefix(k, "cmdstat_"); ok {
			var cs cmdstat
			for _, f := range strings.Split(v, ",") {
				fk, fv, _ := strings.Cut(f, "=")
				switch fk {
				case "calls":
					cs.calls, _ = strconv.ParseInt(fv, 10, 64)
				case "usec":
					cs.usec, _ = strconv.ParseInt(fv, 10, 64)
				}
			}
			in.cmd[name] = cs
		}
	}
	if seen != 5 {
		return in, fmt.Errorf("found %d of the 5 cpu and stats fields in:\n%s", seen, raw)
	}
	return in, nil
}

// infoRequestBytes is what the second snapshot's INFO request adds to the
// input count: RESP array header, one bulk string per word.
var infoRequestBytes = func() int64 {
	words := append([]string{"info"}, strings.Fields(infoSections)...)
	n := len(fmt.Sprintf("*%d\r\n", len(words)))
	for _, w := range words {
		n += len(fmt.Sprintf("$%d\r\n%s\r\n", len(w), w))
	}
	return int64(n)
}()

// netDelta is the bytes Redis moved between two snapshots less the first
// snapshot's own reply (counted after it was taken; bulk-string framing
// included) and the second one's request.
func netDelta(a, b info) int64 {
	framing := int64(len(fmt.Sprintf("$%d\r\n\r\n", a.size)))
	return b.netBytes - a.netBytes - int64(a.size) - framing - infoRequestBytes
}

// redisFigures are the Redis-side figures between two snapshots wall apart.
func redisFigures(a, b info, wall time.Duration) result {
	s := wall.Seconds()
	ev := cmdstat{calls: b.cmd["evalsha"].calls - a.cmd["evalsha"].calls, usec: b.cmd["evalsha"].usec - a.cmd["evalsha"].usec}
	r := result{
		redisCPU: (b.cpu - a.cpu) / s * 100,
		// The first snapshot's INFO is counted in the second's total.
		cmdsPerS:    float64(b.commands-a.commands-1) / s,
		evalshaPerS: float64(ev.calls) / s,
		evalshaUs:   math.NaN(),
		evalshaCPU:  float64(ev.usec) / 1e6 / s * 100,
	}
	if ev.calls > 0 {
		r.evalshaUs = float64(ev.usec) / float64(ev.calls)
	}
	return r
}

func TestParseInfo(t *testing.T) {
	raw := "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n\r\n# Stats\r\ntotal_commands_processed:42\r\n" +
		"total_net_input_bytes:1000\r\ntotal_net_output_bytes:234\r\n\r\n# Commandstats\r\n" +
		"cmdstat_evalsha:calls=10,usec=250,usec_per_call=25.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_hgetall:calls=3,usec=9,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n"
	in, err := parseInfo(raw)
	if err != nil {
		t.Fatal(err)
	}
	if in.cpu != 3.75 || in.netBytes != 1234 || in.commands != 42 || in.cmd["evalsha"] != (cmdstat{10, 250}) || in.cmd["hgetall"] != (cmdstat{3, 9}) {
		t.Errorf("parseInfo = %+v", in)
	}
	if _, err := parseInfo("# CPU\r\nused_cpu_sys:1\r\n"); err == nil {
		t.Error("an INFO without stats parsed")
	}
	// 5,000 bytes of syncs, plus the first reply (with its framing) and
	// the second request.
	framing := int64(len(fmt.Sprintf("$%d\r\n\r\n", in.size)))
	later := info{cpu: 4.75, netBytes: 1234 + int64(in.size) + framing + infoRequestBytes + 5000, commands: 143,
		cmd: map[string]cmdstat{"evalsha": {110, 2250}}}
	r := redisFigures(in, later, 2*time.Second)
	if r.redisCPU != 50 || r.cmdsPerS != 50 || r.evalshaPerS != 50 || r.evalshaUs != 20 || r.evalshaCPU != 0.1 {
		t.Errorf("redisFigures = %+v", r)
	}
	if d := netDelta(in, later); d != 5000 {
		t.Errorf("netDelta = %d, want 5000", d)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	if p50, p99 := percentile(ds, 50), percentile(ds, 99); p50 != 50 || p99 != 99 {
		t.Errorf("p50 %v p99 %v of 1..100 ms, want 50, 99", p50, p99)
	}
	if p := percentile(nil, 50); p == p {
		t.Errorf("percentile of nothing = %v, want NaN", p)
	}
}
