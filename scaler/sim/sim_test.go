package sim

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"time"

	"lbscale/scaler/decide"
)

// kpaStream is the stream of the seeded source KPA's scraper draws from,
// apart from the arrivals' stream.
const kpaStream = 0x6b7061

// policies are the two compared, by name, each made fresh per run.
var policies = []struct {
	name string
	make func(Config) Policy
}{
	{"ours/demand", func(c Config) Policy { return NewOurs(c.Scaler, decide.RuleDemand) }},
	{"kpa", func(c Config) Policy { return NewKPA(c.Scaler, rand.New(rand.NewPCG(c.Seed, kpaStream))) }},
}

// traces are the three shapes at a peak rate for a duration.
var traces = []func(peak float64, d time.Duration) Trace{Steps, Daily, Bursts}

// coldStarts are the cold starts the comparison is made at: a small image
// on a warm host, a typical one, and a large one or a cold host.
var coldStarts = []time.Duration{time.Second, 5 * time.Second, 10 * time.Second}

// job is one run to make.
type job struct {
	cfg    Config
	policy func(Config) Policy
	trace  Trace
}

// runAll runs the jobs on every CPU and returns their results in order.
// Each run is deterministic on its own, so the order of execution does
// not change them.
func runAll(jobs []job) []Result {
	out := make([]Result, len(jobs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(runtime.GOMAXPROCS(0), 1) {
		wg.Go(func() {
			for i := range next {
				j := jobs[i]
				out[i] = Run(j.cfg, j.policy(j.cfg), j.trace)
			}
		})
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// scaled is Default for a pool whose traces peak at n containers.
func scaled(n int, poisson bool) Config {
	c := Default()
	c.Max = MaxFor(n)
	c.Poisson = poisson
	return c
}

// fairJobs is the fair comparison at n containers for d: every trace,
// every cold start, both policies (in that nesting, so a row's two
// policies are neighbours), Poisson arrivals over two balancers.
func fairJobs(n int, d time.Duration) []job {
	var jobs []job
	for _, tr := range traces {
		for _, cold := range coldStarts {
			cfg := scaled(n, true)
			cfg.ColdStart = cold
			peak := PeakRate(n, cfg.Target, cfg.Service)
			for _, p := range policies {
				jobs = append(jobs, job{cfg, p.make, tr(peak, d)})
			}
		}
	}
	return jobs
}

// row is a result's figures for a log line.
func row(r Result) string {
	return fmt.Sprintf("%-11s ratio %.3f (%.0f/%.0f container-s) p50 %v p99 %v steady p99 %v failed %d started %d reclaimed %d drained %d flaps %d (%.1f/h) peak %d queue %d queued starts %d",
		r.Policy, r.Ratio, r.ContainerSeconds, r.IdealSeconds, r.P50, r.P99, r.SteadyP99, r.Failed(), r.Started, r.Reclaimed, r.Drained,
		r.Flaps, r.FlapsPerHour(), r.PeakReplicas, r.PeakQueued, r.QueuedStarts)
}

// runAll's runs are independent: run side by side they give what they
// give one by one.
func TestRunAll(t *testing.T) {
	var jobs []job
	for _, poisson := range []bool{false, true} {
		cfg := scaled(10, poisson)
		for _, tr := range traces {
			for _, p := range policies {
				jobs = append(jobs, job{cfg, p.make, tr(PeakRate(10, cfg.Target, cfg.Service), 5*time.Minute)})
			}
		}
	}
	for i, r := range runAll(jobs) {
		j := jobs[i]
		if want := Run(j.cfg, j.policy(j.cfg), j.trace); !reflect.DeepEqual(r, want) {
			t.Errorf("job %d: %+v\nalone: %+v", i, r, want)
		}
	}
}
