package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"lbscale/loadtest/measure"
	"lbscale/loadtest/report"
	"lbscale/loadtest/status"
)

// progress rewrites one terminal line with the latest finished second. It
// exists only when stderr is a terminal: piped or redirected output gets the
// summary alone, with no carriage-return noise.
type progress struct {
	w     io.Writer
	fd    int
	total time.Duration // expected length, 0 if unknown
	label string        // e.g. "step 3 200 req/s"
	last  time.Time
}

// newProgress returns nil unless w is a terminal.
func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return &progress{w: w, fd: int(f.Fd())}
}

func (p *progress) update(now, start time.Time, rec *measure.Recorder, inflight int64, latest []status.Sample) {
	if now.Sub(p.last) < 500*time.Millisecond {
		return
	}
	p.last = now
	var b strings.Builder
	el := now.Sub(start).Truncate(time.Second)
	if p.label != "" {
		fmt.Fprintf(&b, "%s  ", p.label)
	}
	if p.total > 0 {
		fmt.Fprintf(&b, "%v/%v", el, p.total.Truncate(time.Second))
	} else {
		fmt.Fprintf(&b, "%v", el)
	}
	if s, _, ok := rec.LastClosed(now); ok {
		fmt.Fprintf(&b, "  offered %d/s  achieved %d/s  errors %d  dropped %d  p99 %s",
			s.Offered, s.OK, s.Failed, s.Dropped, report.Dur(float64(s.P99)/float64(time.Millisecond)))
	}
	fmt.Fprintf(&b, "  in flight %d", inflight)
	if len(latest) > 0 {
		replicas, gaps := -1, 0
		for _, smp := range latest {
			if smp.OK() {
				replicas = max(replicas, smp.Replicas)
			} else if !smp.At.IsZero() {
				gaps++
			}
		}
		if replicas >= 0 {
			fmt.Fprintf(&b, "  replicas %d", replicas)
		} else if gaps > 0 {
			b.WriteString("  replicas ? (status failing)")
		}
	}
	// A line longer than the terminal wraps, and "\r" then rewrites only
	// the last row, leaving a trail of stale rows: cut it to the width.
	line := b.String()
	if w, _, err := term.GetSize(p.fd); err == nil && w > 1 {
		line = fitWidth(line, w-1)
	}
	fmt.Fprintf(p.w, "\r%s\x1b[K", line)
}

// fitWidth cuts s to at most n runes (the line is plain ASCII but for "µ").
func fitWidth(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}

// clear removes the progress line before the summary is printed.
func (p *progress) clear() {
	if p != nil {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}
