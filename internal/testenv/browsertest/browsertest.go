// Package browsertest runs a headless Chromium for tests that drive a page
// in a real browser, through chromedp.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"lbscale/internal/testenv"
)

// Timeout is what an in-process browser test gives New: generous, since a
// loaded CI machine starts Chromium slowly, but a hung page still fails in
// a minute.
const Timeout = 60 * time.Second

// Width and Height are the window's size, wide enough for the dashboard's
// two-column layout.
const (
	Width  = 1400
	Height = 1000
)

// New returns a chromedp context on a tab of a new headless Chromium, ended
// (the browser stopped) when t ends or after timeout. An exception the page
// does not catch fails t.
//
// Without Chromium, New skips t, or fails it when REQUIRE_BROWSER is set:
// CI sets it so that a missing browser cannot pass for a green run.
func New(t testing.TB, timeout time.Duration) context.Context {
	t.Helper()
	testenv.Require(t, testenv.Browser)
	path := testenv.BrowserPath()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.WindowSize(Width, Height),
		chromedp.DisableGPU,
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run its sandbox as root
	}
	var ex exceptions
	// Registered first, so it runs last: after the browser has stopped and
	// can report no more.
	t.Cleanup(func() {
		for _, e := range ex.list() {
			t.Errorf("page exception: %s", e)
		}
	})
	ctx, cancelTimeout := context.WithTimeout(context.Background(), timeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithListener(ex.listen))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelTimeout()
	})
	// Start it now, so that a broken install fails here and says so.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return bctx
}

// StepTimeout bounds one call of Do or Run: a step that waits longer for
// the page than this has failed.
const StepTimeout = 30 * time.Second

// Do runs steps in the browser within StepTimeout, failing t with what it
// was doing if they fail.
func Do(t testing.TB, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, StepTimeout)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// Run runs one action that yields a value (an evaluation, a screenshot),
// bounded and failing like Do.
func Run[T any](t testing.TB, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, StepTimeout)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// exceptions collects the page's uncaught exceptions.
type exceptions struct {
	mu   sync.Mutex // protects seen
	seen []string
}

// listen gets the tab's events, on chromedp's reading goroutine.
func (e *exceptions) listen(ev any) {
	x, ok := ev.(*runtime.EventExceptionThrown)
	if !ok || x.ExceptionDetails == nil {
		return
	}
	d := x.ExceptionDetails
	msg := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		msg += " " + d.Exception.Description
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seen = append(e.seen, fmt.Sprintf("%s (line %d, column %d)", msg, d.LineNumber+1, d.ColumnNumber+1))
}

func (e *exceptions) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.seen...)
}
