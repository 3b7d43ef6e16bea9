// Command loadtest drives HTTP load at lbscale's balancers and shows how the
// cluster answered: throughput, errors by kind, HDR latency percentiles,
// which backend served each request, and the replica count over time.
//
//	loadtest run --target URL[=weight] ... --rate N --duration D | --requests N | --users N --status URL --trace --out DIR
//	loadtest saturate --target URL --slo D
//	loadtest idle --target URL --conns N --hold D
//
// Exit status: 0 after a run (whatever the target answered: failures are
// results), 1 when the results cannot be written (idle: when not every
// connection could be opened and held), 2 on invalid input.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"lbscale/loadtest/plot"
	"lbscale/loadtest/report"
	"lbscale/loadtest/saturate"
	"lbscale/loadtest/schedule"
)

const usage = `usage:
  loadtest run --target URL[=weight] ... --rate N --duration D | --requests N | --users N --status URL --trace --out DIR
  loadtest saturate --target URL --slo D
  loadtest idle --target URL --conns N --hold D

Commands:
  run        drive load (open loop at a rate profile, or closed-loop users) and report
  saturate   step the rate up until p99 exceeds --slo; report the highest sustainable rate
  idle       open N keep-alive connections, one request each, and hold them idle

Run 'loadtest <command> -h' for the flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal stops sending and lets the run report; restoring
		// the default handler makes a second one end the process at once.
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command, testable without a process: it returns the
// exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stdout, stderr)
	case "saturate":
		err = cmdSaturate(ctx, args[1:], stdout, stderr)
	case "idle":
		err = cmdIdle(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "loadtest: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "loadtest %s: %v\nRun 'loadtest %s -h' for the flags.\n", args[0], err, args[0])
		return 2
	default:
		fmt.Fprintf(stderr, "loadtest %s: %v\n", args[0], err)
		return 1
	}
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := loadRun(args, stderr)
	if err != nil {
		return err
	}
	settings := report.Settings{
		Mode: "open", Profile: c.describe, Requests: c.Requests, Duration: c.Duration,
		Concurrency: c.Concurrency, Timeout: c.Timeout, KeepAlive: c.KeepAlive, StatusURLs: c.Status,
		Trace: c.Trace,
	}
	for _, t := range c.Targets {
		settings.Targets = append(settings.Targets, report.Target{URL: t.URL, Weight: t.Weight})
	}
	p := phase{common: c.common, profile: c.profile, requests: c.Requests, trace: c.Trace, dashboard: stderr}
	if c.Users > 0 {
		settings.Mode, settings.Users, settings.Concurrency = "closed", c.Users, 0
		p.users, p.duration, p.think = c.Users, c.Duration, c.Think
	}
	p.settings = settings
	prog := newProgress(stderr)
	if prog != nil {
		prog.total = c.Duration
	}
	res := execute(ctx, p, prog)
	prog.clear()
	if ctx.Err() != nil {
		fmt.Fprintln(stderr, "loadtest run: interrupted; reporting what was measured")
	}
	if err := res.WriteText(stdout); err != nil {
		return fmt.Errorf("print summary: %w", err)
	}
	if c.Out == "" {
		return nil
	}
	if err := writeOutputs(c.Out, res); err != nil {
		return err
	}
	files := "timeseries.csv summary.json backends.csv replicas.png latency.png backends.png"
	if len(c.Status) > 0 {
		files += " status.csv"
	}
	fmt.Fprintf(stdout, "\nWrote %s: %s\n", c.Out, files)
	return nil
}

// writeOutputs writes the files of --out.
func writeOutputs(dir string, r *report.Run) error {
	if err := r.WriteFiles(dir); err != nil {
		return err
	}
	if err := plot.All(dir, series(r), shares(r)); err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	return nil
}

// series converts a run into the plots' per-second data.
func series(r *report.Run) plot.Series {
	nan := math.NaN()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	s := plot.Series{WindowEnd: r.Window.Seconds()}
	for i, sec := range r.Seconds {
		s.T = append(s.T, float64(i)+0.5)
		s.Offered = append(s.Offered, float64(sec.Offered))
		s.Achieved = append(s.Achieved, float64(sec.OK))
		s.Errors = append(s.Errors, float64(sec.Failed+sec.Dropped))
		rep, inf := nan, nan
		if i < len(r.Points) && r.Points[i].OK {
			rep, inf = float64(r.Points[i].Replicas), float64(r.Points[i].Inflight)
		}
		s.Replicas = append(s.Replicas, rep)
		s.Inflight = append(s.Inflight, inf)
		if sec.OK == 0 {
			s.P50, s.P90, s.P99, s.P999 = append(s.P50, nan), append(s.P90, nan), append(s.P99, nan), append(s.P999, nan)
			continue
		}
		s.P50 = append(s.P50, ms(sec.P50))
		s.P90 = append(s.P90, ms(sec.P90))
		s.P99 = append(s.P99, ms(sec.P99))
		s.P999 = append(s.P999, ms(sec.P999))
	}
	return s
}

func shares(r *report.Run) []plot.Share {
	var out []plot.Share
	for _, b := range r.Report.Backends {
		if b.ID != "" {
			out = append(out, plot.Share{ID: b.ID, Share: b.Share})
		}
	}
	return out
}

func cmdSaturate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := loadSaturate(args, stderr)
	if err != nil {
		return err
	}
	plan := saturate.Plan{
		Start: c.Start, Factor: c.Factor, Increment: c.Increment, Max: c.MaxRate,
		SLO: c.SLO, MaxErrors: c.MaxErrors, Refine: c.Refine,
	}
	fmt.Fprintf(stdout, "saturate: p99 <= %v and errors <= %.2f%%, %v per step\n", c.SLO, 100*c.MaxErrors, c.StepDuration)
	prog := newProgress(stderr)
	var steps []saturate.Step
	for ctx.Err() == nil {
		rate, ok := plan.Next(steps)
		if !ok {
			break
		}
		p := phase{common: c.common, profile: schedule.Constant(rate, c.StepDuration)}
		p.settings = report.Settings{Mode: "open", Profile: fmt.Sprintf("constant %g req/s", rate)}
		if prog != nil {
			prog.total, prog.label = c.StepDuration, fmt.Sprintf("step %d: %.1f req/s", len(steps)+1, rate)
		}
		res := execute(ctx, p, prog)
		prog.clear()
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "loadtest saturate: interrupted; the unfinished step is not judged")
			break
		}
		sum := res.Summarise()
		st := plan.Judge(saturate.Step{
			Rate: rate, Offered: sum.Totals.Offered, OK: sum.Totals.OK, Failed: sum.Totals.Failed,
			Dropped: sum.Totals.Dropped, Late: sum.Totals.Late, Achieved: sum.AchievedRPS,
			P99: time.Duration(sum.Latency.P99 * float64(time.Millisecond)),
		})
		if sum.Status != nil && sum.Status.FinalReplicas != nil {
			st.Replicas = *sum.Status.FinalReplicas
		}
		steps = append(steps, st)
		verdict := "ok"
		if !st.Pass {
			verdict = "FAIL: " + st.Reason
		}
		fmt.Fprintf(stdout, "step %2d  %10.1f req/s  achieved %10.1f ok/s  p99 %9s  errors %6.2f%%  %s\n",
			len(steps), rate, st.Achieved, report.Dur(st.P99MS), 100*st.ErrorRatio(), verdict)
	}
	res := saturate.Conclude(steps)
	switch {
	case len(steps) == 0:
		fmt.Fprintln(stdout, "no step completed")
	case res.Sustainable == 0:
		fmt.Fprintf(stdout, "\nno sustainable rate found: even %.1f req/s failed (%s)\n", res.Breaking, res.Reason)
	case res.Breaking == 0:
		fmt.Fprintf(stdout, "\nhighest sustainable rate: %.1f req/s (never failed up to there)\n", res.Sustainable)
	default:
		fmt.Fprintf(stdout, "\nhighest sustainable rate: %.1f req/s (%.1f req/s failed: %s)\n", res.Sustainable, res.Breaking, res.Reason)
	}
	if c.Out == "" {
		return nil
	}
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return fmt.Errorf("create output dir: %w", err)
	}
	doc := struct {
		SLOMS     float64         `json:"slo_ms"`
		MaxErrors float64         `json:"max_errors"`
		StepS     float64         `json:"step_duration_s"`
		Targets   []string        `json:"targets"`
		Result    saturate.Result `json:"result"`
	}{float64(c.SLO) / float64(time.Millisecond), c.MaxErrors, c.StepDuration.Seconds(), c.urls(), res}
	path := filepath.Join(c.Out, "saturate.json")
	if err := report.WriteFile(path, func(w io.Writer) error { return report.WriteJSON(w, doc) }); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Wrote %s\n", path)
	return nil
}
