package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"time"

	"lbscale/loadtest/drive"
	"lbscale/loadtest/schedule"
	"lbscale/loadtest/target"
)

// usageError is invalid command-line input: exit status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErr(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// common holds the flags run and saturate share: where to send, how, and
// what to sample.
type common struct {
	Targets        []target.Target
	Timeout        time.Duration
	KeepAlive      bool
	Concurrency    int
	Method         string
	Header         http.Header
	Insecure       bool
	Status         []string
	StatusInterval time.Duration
	StatusToken    string
	Out            string
}

func (c *common) register(fs *flag.FlagSet) {
	c.Header = http.Header{}
	fs.Func("target", "`URL[=weight]` to load; repeat for several (weights split the traffic, default 1)", func(s string) error {
		t, err := target.Parse(s)
		if err != nil {
			return err
		}
		c.Targets = append(c.Targets, t)
		return nil
	})
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Second, "per-request timeout (connect to last byte)")
	fs.BoolVar(&c.KeepAlive, "keepalive", true, "reuse connections (--keepalive=false opens one per request)")
	fs.IntVar(&c.Concurrency, "concurrency", 1000, "open loop: max requests in flight; requests due beyond it are dropped and counted")
	fs.StringVar(&c.Method, "method", http.MethodGet, "HTTP method")
	fs.Func("header", "`'Name: value'` added to every request; repeatable", func(s string) error {
		name, value, ok := strings.Cut(s, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return fmt.Errorf("header %q: want 'Name: value'", s)
		}
		c.Header.Add(name, strings.TrimSpace(value))
		return nil
	})
	fs.BoolVar(&c.Insecure, "insecure", false, "skip TLS certificate verification")
	fs.Func("status", "balancer admin `URL` (e.g. http://127.0.0.1:9091/status) to sample for replicas and in-flight; repeatable", func(s string) error {
		if err := target.CheckURL(s); err != nil {
			return fmt.Errorf("status: %w", err)
		}
		c.Status = append(c.Status, s)
		return nil
	})
	fs.DurationVar(&c.StatusInterval, "status-interval", time.Second, "how often to sample --status")
	// The default is read after parsing, not shown as the flag's default:
	// usage and error messages would print the secret.
	fs.StringVar(&c.StatusToken, "status-token", "", "bearer token for --status (default $ADMIN_TOKEN)")
	fs.StringVar(&c.Out, "out", "", "`DIR` to write timeseries.csv, summary.json, backends.csv, status.csv and PNG plots")
}

func (c *common) validate() error {
	switch {
	case len(c.Targets) == 0:
		return usageErr("missing --target URL")
	case c.Timeout <= 0:
		return usageErr("--timeout must be > 0, got %v", c.Timeout)
	case c.Concurrency <= 0:
		return usageErr("--concurrency must be > 0, got %d", c.Concurrency)
	case c.StatusInterval <= 0:
		return usageErr("--status-interval must be > 0, got %v", c.StatusInterval)
	}
	if err := drive.NewHTTP(c.httpConfig(1)).Check(); err != nil {
		return usageErr("%v", err)
	}
	if c.StatusToken == "" {
		c.StatusToken = os.Getenv("ADMIN_TOKEN")
	}
	if c.Out != "" {
		// Found now, not after a half-hour run whose results would be lost.
		if err := checkWritable(c.Out); err != nil {
			return usageErr("--out %s: %v", c.Out, err)
		}
	}
	return nil
}

// checkWritable creates dir if needed and proves a file can be written there.
func checkWritable(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".loadtest-check-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func (c *common) urls() []string {
	out := make([]string, len(c.Targets))
	for i, t := range c.Targets {
		out[i] = t.URL
	}
	return out
}

func (c *common) httpConfig(conns int) drive.HTTPConfig {
	return drive.HTTPConfig{
		Targets: c.urls(), Method: c.Method, Header: c.Header, Timeout: c.Timeout,
		KeepAlive: c.KeepAlive, Conns: conns, Insecure: c.Insecure,
	}
}

// runConfig is `loadtest run`.
type runConfig struct {
	common
	Rate        float64
	RateTo      float64
	Profile     string
	ProfileFile string
	StepBy      float64
	StepEvery   time.Duration
	SpikeRate   float64
	SpikeAt     time.Duration
	SpikeFor    time.Duration
	Duration    time.Duration
	Requests    int64
	Users       int
	Think       time.Duration
	Trace       bool

	// Derived by load: the open-loop rate profile (nil in closed loop) and
	// its description.
	profile  schedule.Profile
	describe string
}

const defaultDuration = 10 * time.Second

func newFlagSet(name string, stderr io.Writer, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

const runUsage = `usage: loadtest run --target URL[=weight] ... (--rate N | --users N) [--duration D | --requests N] [--status URL] [--trace] [--out DIR]

Open loop (--rate): requests leave on schedule whether or not earlier ones
have returned, and latency is measured from each request's intended send
time, so a stalled server cannot hide its stall. --profile shapes the rate:
  constant  --rate for --duration (default)
  step      --rate, plus --step-by every --step-every
  ramp      linear from --rate to --rate-to over --duration
  spike     --rate, with --spike-rate from --spike-at for --spike-for
  file      --profile-file F: "time,rate" rows, linear between rows
            (repeat a time for an instant step); ends at the last row
            unless --duration is given
Closed loop (--users N): N clients each send, wait, and send again.
--trace sends each request with a fresh W3C traceparent header and lists the
10 slowest requests' trace ids (overall and per target) in the summary.

Flags:
`

// loadRun parses and validates `loadtest run` arguments.
func loadRun(args []string, stderr io.Writer) (*runConfig, error) {
	c := &runConfig{}
	fs := newFlagSet("loadtest run", stderr, runUsage)
	c.common.register(fs)
	fs.Float64Var(&c.Rate, "rate", 0, "open loop: requests per second (the starting rate for step, ramp and spike)")
	fs.Float64Var(&c.RateTo, "rate-to", 0, "ramp: final rate")
	fs.StringVar(&c.Profile, "profile", "constant", "rate profile: constant, step, ramp, spike, file")
	fs.StringVar(&c.ProfileFile, "profile-file", "", "profile `FILE` of time,rate rows (implies --profile file)")
	fs.Float64Var(&c.StepBy, "step-by", 0, "step: rate added at each step (default: --rate)")
	fs.DurationVar(&c.StepEvery, "step-every", 10*time.Second, "step: time between steps")
	fs.Float64Var(&c.SpikeRate, "spike-rate", 0, "spike: rate during the spike (default: 5 x --rate)")
	fs.DurationVar(&c.SpikeAt, "spike-at", 0, "spike: when it starts (default: a third of --duration)")
	fs.DurationVar(&c.SpikeFor, "spike-for", 0, "spike: how long it lasts (default: a third of --duration)")
	fs.DurationVar(&c.Duration, "duration", 0, "how long to send (default 10s unless --requests or a profile file bounds the run)")
	fs.Int64Var(&c.Requests, "requests", 0, "stop after this many requests")
	fs.IntVar(&c.Users, "users", 0, "closed loop: number of clients, each with one request in flight")
	fs.DurationVar(&c.Think, "think", 0, "closed loop: pause between a user's requests")
	fs.BoolVar(&c.Trace, "trace", false, "send each request with a fresh W3C traceparent header (sampled) and list the slowest requests' trace ids in the summary")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := c.common.validate(); err != nil {
		return nil, err
	}
	if err := c.validate(set); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *runConfig) validate(set map[string]bool) error {
	switch {
	case set["duration"] && c.Duration <= 0:
		return usageErr("--duration must be > 0, got %v", c.Duration)
	case set["requests"] && c.Requests <= 0:
		return usageErr("--requests must be > 0, got %d", c.Requests)
	case set["rate"] && (c.Rate <= 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0)):
		return usageErr("--rate must be > 0, got %v", c.Rate)
	case c.Users < 0:
		return usageErr("--users must be > 0, got %d", c.Users)
	case c.Think < 0:
		return usageErr("--think must be >= 0, got %v", c.Think)
	case c.Trace && c.Header.Get(drive.TraceparentHeader) != "":
		// One of the two would be silently lost.
		return usageErr("--trace excludes --header traceparent: --trace sends a fresh one with each request")
	}
	if c.ProfileFile != "" {
		if set["profile"] && c.Profile != "file" {
			return usageErr("--profile-file and --profile %s exclude each other", c.Profile)
		}
		if set["rate"] {
			return usageErr("--rate and --profile-file exclude each other: the file gives the rate")
		}
		c.Profile = "file"
	}
	if c.Users > 0 {
		if set["rate"] || set["profile"] || set["profile-file"] {
			return usageErr("--users (closed loop) excludes --rate and --profile (open loop)")
		}
		if set["concurrency"] {
			return usageErr("--users (closed loop) excludes --concurrency: the users are the concurrency")
		}
		if !set["duration"] && !set["requests"] {
			c.Duration = defaultDuration
		}
		c.describe = fmt.Sprintf("%d users", c.Users)
		return nil
	}
	if set["think"] {
		return usageErr("--think applies to --users (closed loop) only")
	}
	if err := c.buildProfile(set); err != nil {
		return err
	}
	for _, s := range c.profile {
		if max(s.From, s.To) > maxRate {
			return usageErr("rate %g req/s is above %g: no single load driver sends that (run several)", max(s.From, s.To), float64(maxRate))
		}
	}
	return nil
}

// maxRate bounds the offered rate: far beyond what one process can send, and
// low enough that a typo (1e9) is an error, not a run that spends minutes
// counting requests it could never have sent.
const maxRate = 1_000_000

// maxSegments bounds the segments of a generated profile: a step a second
// for a day fits, a typo in --step-every (1ns) is an error instead of
// gigabytes of segments.
const maxSegments = 100_000

// profileFlags are the flags that only mean something to one profile; given
// with another they would be silently ignored, so they are refused.
var profileFlags = map[string]string{
	"rate-to": "ramp", "step-by": "step", "step-every": "step",
	"spike-rate": "spike", "spike-at": "spike", "spike-for": "spike",
}

func (c *runConfig) buildProfile(set map[string]bool) error {
	for name, profile := range profileFlags {
		if set[name] && c.Profile != profile {
			return usageErr("--%s applies to --profile %s only", name, profile)
		}
	}
	if c.Profile == "file" {
		if c.ProfileFile == "" {
			return usageErr("--profile file needs --profile-file FILE")
		}
		f, err := os.Open(c.ProfileFile)
		if err != nil {
			return usageErr("profile file: %v", err)
		}
		defer f.Close()
		p, err := schedule.Read(f)
		if err != nil {
			return usageErr("profile file %s: %v", c.ProfileFile, err)
		}
		if set["duration"] {
			p = p.Extend(c.Duration)
		}
		c.Duration = p.Duration()
		c.profile, c.describe = p, "profile "+c.ProfileFile
		return nil
	}
	if !set["rate"] {
		return usageErr("missing --rate N (open loop) or --users N (closed loop)")
	}
	d := c.Duration
	if !set["duration"] {
		if c.Profile != "constant" {
			return usageErr("--profile %s needs --duration", c.Profile)
		}
		d = defaultDuration
		if set["requests"] {
			// Long enough for every request at this rate; --requests stops it.
			secs := float64(c.Requests)/c.Rate + 1
			if secs >= float64(math.MaxInt64)/float64(time.Second) {
				// The Duration would overflow to a negative length.
				return usageErr("--requests %d at --rate %g would run for centuries; raise --rate or give --duration", c.Requests, c.Rate)
			}
			d = time.Duration(secs * float64(time.Second))
		}
		c.Duration = d
	}
	switch c.Profile {
	case "constant":
		c.profile = schedule.Constant(c.Rate, d)
		c.describe = fmt.Sprintf("constant %g req/s", c.Rate)
	case "step":
		by := c.StepBy
		if !set["step-by"] {
			by = c.Rate
		}
		if c.StepEvery <= 0 {
			return usageErr("--step-every must be > 0, got %v", c.StepEvery)
		}
		if d/c.StepEvery >= maxSegments {
			// One segment a step: --step-every 1ns over an hour would build
			// billions of them before the run starts.
			return usageErr("--step-every %v makes over %d steps in %v; step less often", c.StepEvery, maxSegments, d)
		}
		c.profile = schedule.Step(c.Rate, by, c.StepEvery, d)
		c.describe = fmt.Sprintf("step from %g req/s by %+g every %v", c.Rate, by, c.StepEvery)
	case "ramp":
		if !set["rate-to"] || c.RateTo < 0 {
			return usageErr("--profile ramp needs --rate-to N (>= 0)")
		}
		c.profile = schedule.Ramp(c.Rate, c.RateTo, d)
		c.describe = fmt.Sprintf("ramp %g to %g req/s", c.Rate, c.RateTo)
	case "spike":
		peak, at, length := c.SpikeRate, c.SpikeAt, c.SpikeFor
		if !set["spike-rate"] {
			peak = 5 * c.Rate
		}
		if !set["spike-at"] {
			at = d / 3
		}
		if !set["spike-for"] {
			length = d / 3
		}
		if peak <= 0 || at < 0 || length <= 0 {
			return usageErr("--spike-rate and --spike-for must be > 0, --spike-at >= 0")
		}
		if at >= d {
			return usageErr("--spike-at %v is not within the run's %v", at, d)
		}
		c.profile = schedule.Spike(c.Rate, peak, at, length, d)
		c.describe = fmt.Sprintf("%g req/s with a spike to %g at %v for %v", c.Rate, peak, at, length)
	default:
		return usageErr("--profile %q: want constant, step, ramp, spike or file", c.Profile)
	}
	if err := c.profile.Validate(); err != nil {
		return usageErr("profile: %v", err)
	}
	return nil
}

// saturateConfig is `loadtest saturate`.
type saturateConfig struct {
	common
	SLO          time.Duration
	MaxErrors    float64
	Start        float64
	Factor       float64
	Increment    float64
	StepDuration time.Duration
	MaxRate      float64
	Refine       int
}

const saturateUsage = `usage: loadtest saturate --target URL[=weight] ... --slo D [--max-errors R] [--out DIR]

Runs open-loop steps at rising rates (each for --step-duration) until p99
latency exceeds --slo or the share of failed and dropped requests exceeds
--max-errors, then bisects between the last good and the first bad rate
(--refine times) and reports the highest sustainable rate.

Flags:
`

func loadSaturate(args []string, stderr io.Writer) (*saturateConfig, error) {
	c := &saturateConfig{}
	fs := newFlagSet("loadtest saturate", stderr, saturateUsage)
	c.common.register(fs)
	fs.DurationVar(&c.SLO, "slo", 0, "p99 latency objective (required), e.g. 200ms")
	fs.Float64Var(&c.MaxErrors, "max-errors", 0.01, "largest tolerated share of failed or dropped requests")
	fs.Float64Var(&c.Start, "start", 50, "first step's rate, req/s")
	fs.Float64Var(&c.Factor, "step-factor", 1.5, "multiply the rate by this after a good step")
	fs.Float64Var(&c.Increment, "step-by", 0, "add this to the rate after a good step instead of --step-factor")
	fs.DurationVar(&c.StepDuration, "step-duration", 10*time.Second, "how long each step runs")
	fs.Float64Var(&c.MaxRate, "max-rate", 100000, "never offer more than this, req/s (at most 1e6)")
	fs.IntVar(&c.Refine, "refine", 2, "bisection steps after the first failure")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if err := c.common.validate(); err != nil {
		return nil, err
	}
	switch {
	case c.SLO <= 0:
		return nil, usageErr("missing --slo D (p99 latency objective, e.g. 200ms)")
	case c.MaxErrors < 0 || c.MaxErrors >= 1:
		return nil, usageErr("--max-errors must be in [0, 1), got %v", c.MaxErrors)
	case c.Start <= 0:
		return nil, usageErr("--start must be > 0, got %v", c.Start)
	case c.Increment < 0:
		return nil, usageErr("--step-by must be > 0, got %v", c.Increment)
	case c.Increment == 0 && c.Factor <= 1:
		return nil, usageErr("--step-factor must be > 1, got %v", c.Factor)
	case c.StepDuration <= 0:
		return nil, usageErr("--step-duration must be > 0, got %v", c.StepDuration)
	case c.MaxRate > maxRate:
		return nil, usageErr("--max-rate %g is above %g req/s", c.MaxRate, float64(maxRate))
	case c.MaxRate < c.Start:
		return nil, usageErr("--max-rate (%v) must be >= --start (%v)", c.MaxRate, c.Start)
	case c.Refine < 0:
		return nil, usageErr("--refine must be >= 0, got %d", c.Refine)
	}
	return c, nil
}

// parseFlags parses a subcommand's arguments: -h passes flag.ErrHelp on,
// any other mistake, a stray argument included, is a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageErr("%v", err)
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
