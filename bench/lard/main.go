package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"
)

// params is one measurement's load and backends, the same for every
// configuration compared.
type params struct {
	backends, cache, objects, requests, clients int
	hit, miss                                   time.Duration
	zipfS, zipfV                                float64
	seed                                        uint64
}

// spec is one balancer configuration: LB_POLICY, and for consistent-hash
// HASH_KEY and HASH_LOAD_FACTOR.
type spec struct {
	policy, key, factor string
}

// parseSpec reads "policy[/hashkey[/factor]]", e.g. "least-connections" or
// "consistent-hash/path/1.25".
func parseSpec(s string) (spec, error) {
	parts := strings.Split(s, "/")
	if parts[0] == "" || len(parts) > 3 {
		return spec{}, fmt.Errorf("run %q: want policy[/hashkey[/factor]]", s)
	}
	sp := spec{policy: parts[0]}
	if len(parts) > 1 {
		sp.key = parts[1]
	}
	if len(parts) > 2 {
		if _, err := strconv.ParseFloat(parts[2], 64); err != nil {
			return spec{}, fmt.Errorf("run %q: factor: %w", s, err)
		}
		sp.factor = parts[2]
	}
	return sp, nil
}

func (s spec) String() string {
	out := s.policy
	if s.key != "" {
		out += " HASH_KEY=" + s.key
	}
	if s.factor != "" {
		out += " c=" + s.factor
	}
	return out
}

// result is one configuration's figures, measured at the clients.
type result struct {
	spec              spec
	hits, hitsLate, n int
	mean, p50, p99    time.Duration
	rps               float64
	busiest           float64 // the busiest backend's share of requests
	errors            int
	elapsed           time.Duration
	served            []int64
}

func main() {
	var p params
	flag.IntVar(&p.backends, "backends", 4, "cache backends")
	flag.IntVar(&p.cache, "cache", 100, "objects each backend's LRU cache holds")
	flag.IntVar(&p.objects, "objects", 1000, "distinct object paths")
	flag.IntVar(&p.requests, "requests", 5000, "requests per configuration")
	flag.IntVar(&p.clients, "clients", 16, "concurrent clients (closed loop)")
	flag.DurationVar(&p.hit, "hit", time.Millisecond, "a hit's service time")
	flag.DurationVar(&p.miss, "miss", 10*time.Millisecond, "a miss's service time")
	flag.Float64Var(&p.zipfS, "zipf-s", 1.1, "Zipf exponent s (> 1): P(k) ∝ (v+k)^-s")
	flag.Float64Var(&p.zipfV, "zipf-v", 1, "Zipf offset v (>= 1)")
	flag.Uint64Var(&p.seed, "seed", 1, "seed of the request sequence")
	runs := flag.String("runs", "least-connections,consistent-hash/path/1.25", "configurations, comma-separated: policy[/hashkey[/factor]]")
	bin := flag.String("balancer", "", "balancer binary (empty: go build lbscale/balancer)")
	repeat := flag.Int("repeat", 1, "rounds; configurations alternate within a round and the table shows each figure's median")
	flag.Parse()

	var specs []spec
	for _, s := range strings.Split(*runs, ",") {
		sp, err := parseSpec(s)
		if err != nil {
			fail(err)
		}
		specs = append(specs, sp)
	}
	if *repeat < 1 || p.zipfS <= 1 || p.zipfV < 1 || p.objects < 1 || p.backends < 1 || p.clients < 1 || p.requests < 2 || p.cache < 1 {
		fail(errors.New("want -zipf-s > 1, -zipf-v >= 1, -requests >= 2 and the counts >= 1"))
	}
	if err := run(specs, p, *bin, *repeat); err != nil {
		fail(err)
	}
}

// run measures every configuration and prints the table. It returns rather
// than exits on an error so that the built binary's directory is removed.
func run(specs []spec, p params, bin string, repeat int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if bin == "" {
		dir, err := os.MkdirTemp("", "lard-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "balancer")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "lbscale/balancer").CombinedOutput(); err != nil {
			return fmt.Errorf("go build lbscale/balancer (run from the module): %w\n%s", err, out)
		}
	}
	keys := sequence(p)
	fmt.Printf("%d backends × LRU %d objects, hit %v / miss %v; %d requests by %d clients over %d paths, Zipf s=%v v=%v seed %d\n\n",
		p.backends, p.cache, p.hit, p.miss, p.requests, p.clients, p.objects, p.zipfS, p.zipfV, p.seed)
	// Rounds alternate the configurations, so that a slow spell of a shared
	// machine falls on all of them rather than on one.
	rounds := make([][]result, len(specs))
	for range repeat {
		for i, sp := range specs {
			r, err := measure(ctx, bin, sp, p, keys)
			if err != nil {
				return fmt.Errorf("%s: %w", sp, err)
			}
			rounds[i] = append(rounds[i], r)
		}
	}
	printTable(os.Stdout, rounds, p)
	return nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "lard:", err)
	os.Exit(1)
}

// sequence is the object path of every request, drawn once so that each
// configuration is driven by the same sequence.
func sequence(p params) []string {
	z := rand.NewZipf(rand.New(rand.NewPCG(p.seed, p.seed^0x9e3779b97f4a7c15)), p.zipfS, p.zipfV, uint64(p.objects-1))
	keys := make([]string, p.requests)
	for i := range keys {
		keys[i] = "/obj/" + strconv.FormatUint(z.Uint64(), 10)
	}
	return keys
}

// measure starts fresh backends and a balancer configured by sp, drives
// the load through it and stops them all.
func measure(ctx context.Context, bin string, sp spec, p params, keys []string) (result, error) {
	var bs []*cacheBackend
	defer func() {
		for _, b := range bs {
			_ = b.stop()
		}
	}()
	var addrs []string
	for range p.backends {
		b, err := startCacheBackend(p.cache, p.hit, p.miss)
		if err != nil {
			return result{}, err
		}
		bs = append(bs, b)
		addrs = append(addrs, b.addr)
	}
	lb, err := startBalancer(ctx, bin, sp, p, addrs)
	if err != nil {
		return result{}, err
	}
	defer lb.stop()

	res := drive(ctx, "http://"+lb.proxy, p, keys)
	res.spec = sp
	var total int64
	for _, b := range bs {
		n := b.served.Load()
		res.served = append(res.served, n)
		total += n
	}
	if total > 0 {
		res.busiest = float64(slices.Max(res.served)) / float64(total)
	}
	return res, ctx.Err()
}

// drive sends keys through proxy from p.clients clients in a closed loop
// and collects what they saw.
func drive(ctx context.Context, proxy string, p params, keys []string) result {
	client := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: p.clients, MaxConnsPerHost: p.clients},
		Timeout:   30 * time.Second,
	}
	defer client.CloseIdleConnections()
	lat := make([]time.Duration, len(keys))
	hit := make([]bool, len(keys))
	var next atomic.Int64
	var errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range p.clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(keys) {
					return
				}
				t0 := time.Now()
				res, err := client.Get(proxy + keys[i])
				if err != nil {
					errs.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				lat[i] = time.Since(t0)
				if res.StatusCode != http.StatusOK {
					errs.Add(1)
					continue
				}
				hit[i] = res.Header.Get("X-Cache") == "hit"
			}
		})
	}
	wg.Wait()
	r := result{n: len(keys), elapsed: time.Since(start), errors: int(errs.Load())}
	for i, h := range hit {
		if h {
			r.hits++
			if i >= len(keys)/2 {
				r.hitsLate++
			}
		}
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	r.mean = sum / time.Duration(len(sorted))
	r.p50, r.p99 = percentile(sorted, 50), percentile(sorted, 99)
	r.rps = float64(len(keys)) / r.elapsed.Seconds()
	return r
}

// percentile is the q-th percentile of sorted by the nearest-rank method.
func percentile(sorted []time.Duration, q int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (q*len(sorted) + 99) / 100 // ceil(q/100 × n)
	return sorted[max(rank, 1)-1]
}

// printTable prints one row per configuration, each figure the median
// over its rounds, with the range of req/s.
func printTable(w io.Writer, rounds [][]result, p params) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\thit rate\thit rate, 2nd half\tmean\tp50\tp99\treq/s\treq/s range\tbusiest backend\terrors\t")
	late := p.requests - p.requests/2
	for _, rs := range rounds {
		med := func(f func(r result) float64) float64 {
			v := make([]float64, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			return median(v)
		}
		errs := 0
		rps := make([]float64, len(rs))
		for i, r := range rs {
			errs += r.errors
			rps[i] = r.rps
		}
		fmt.Fprintf(tw, "%s\t%.1f%%\t%.1f%%\t%.1f ms\t%.1f ms\t%.1f ms\t%.0f\t%.0f–%.0f\t%.1f%%\t%d\t\n", rs[0].spec,
			med(func(r result) float64 { return 100 * float64(r.hits) / float64(r.n) }),
			med(func(r result) float64 { return 100 * float64(r.hitsLate) / float64(late) }),
			med(func(r result) float64 { return ms(r.mean) }), med(func(r result) float64 { return ms(r.p50) }), med(func(r result) float64 { return ms(r.p99) }),
			median(rps), slices.Min(rps), slices.Max(rps),
			med(func(r result) float64 { return 100 * r.busiest }), errs)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nrequests per backend (round 1):\n")
	for _, rs := range rounds {
		fmt.Fprintf(w, "  %s: %v\n", rs[0].spec, rs[0].served)
	}
}

// median of v (the mean of the middle two for an even count); v is
// reordered.
func median(v []float64) float64 {
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// balancerProc is a running balancer process.
type balancerProc struct {
	cmd   *exec.Cmd
	proxy string
	done  chan struct{}
}

// startBalancer runs bin on free loopback ports in front of addrs and
// waits until it routes to every backend. The environment is only the
// balancer's variables, so that a REDIS_URL or LB_POLICY of the caller's
// cannot change what is measured.
func startBalancer(ctx context.Context, bin string, sp spec, p params, addrs []string) (*balancerProc, error) {
	proxyAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	adminAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	env := []string{
		"LISTEN_ADDR=" + proxyAddr, "ADMIN_ADDR=" + adminAddr, "BACKENDS=" + strings.Join(addrs, ","),
		"LB_POLICY=" + sp.policy, "MAX_INFLIGHT=" + strconv.Itoa(4*p.clients), "LOG_LEVEL=warn",
		"HEALTH_PATH=" + healthPath, "SHUTDOWN_TIMEOUT=2s",
	}
	if sp.key != "" {
		env = append(env, "HASH_KEY="+sp.key)
	}
	if sp.factor != "" {
		env = append(env, "HASH_LOAD_FACTOR="+sp.factor)
	}
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start balancer: %w", err)
	}
	b := &balancerProc{cmd: cmd, proxy: proxyAddr, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(b.done) }()
	if err := b.waitReady(ctx, "http://"+adminAddr+"/status", len(addrs)); err != nil {
		b.stop()
		return nil, err
	}
	return b, nil
}

// waitReady polls /status until the balancer reports n ready backends.
func (b *balancerProc) waitReady(ctx context.Context, status string, n int) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-b.done:
			return errors.New("balancer exited at start-up (its log is above)")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		res, err := http.Get(status)
		if err != nil {
			continue
		}
		var s struct {
			Replicas int `json:"replicas"`
		}
		err = json.NewDecoder(res.Body).Decode(&s)
		res.Body.Close()
		if err == nil && s.Replicas == n {
			return nil
		}
	}
	return fmt.Errorf("balancer not routing to %d backends after 15s", n)
}

// stop ends the process this program started, by its pid: SIGTERM, then
// SIGKILL if it has not finished draining in 5 s.
func (b *balancerProc) stop() {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
	case <-time.After(5 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
}

// freeAddr is a loopback address that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
