package fleet_test

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"lbscale/internal/testenv"
	"lbscale/internal/testenv/browsertest"
)

// The dashboard of a scaler with two pools offers them in a selector;
// choosing the other reloads the page on ?pool= and its stream shows that
// pool: its name, and its replicas.
func TestDashboardPoolSelector(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: -short skips it")
	}
	ctx := browsertest.New(t, browsertest.Timeout)
	w := newWorld(t)
	f, _ := w.scaler("scaler-a", twoPools)
	testenv.Eventually(t, 15*time.Second, "web 2, api 1", func() bool { return w.settled("web", 2)() && w.settled("api", 1)() })
	srv := httptest.NewServer(f.Handler(""))
	t.Cleanup(func() {
		srv.CloseClientConnections() // the page's stream
		srv.Close()
	})

	browsertest.Do(t, ctx, "open the dashboard", chromedp.Navigate(srv.URL))
	// poll asks the page until expr holds. Each ask is one evaluation, and
	// one that fails is asked again: the page reloads when the pool
	// changes, and an evaluation in the old document fails with it.
	poll := func(what, expr string) {
		t.Helper()
		var err error
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			var ok bool
			ok, err = chromedp.Run(sctx, chromedp.Evaluate[bool](expr))
			cancel()
			if err == nil && ok {
				return
			}
		}
		t.Fatalf("waiting for %s (%s): last error %v", what, expr, err)
	}
	poll("web's page", `document.getElementById('pool').textContent === 'pool web' && document.getElementById('ready').textContent === '2'`)
	opts := browsertest.Run(t, ctx, "the selector's options", chromedp.Evaluate[[]string](
		`[...document.querySelectorAll('#pool-select option')].map(o => o.value + (o.selected ? '*' : ''))`))
	if len(opts) != 2 || opts[0] != "web*" || opts[1] != "api" {
		t.Fatalf("selector options %v, want web (selected) and api", opts)
	}
	if browsertest.Run(t, ctx, "the selector shown", chromedp.Evaluate[bool](`document.getElementById('pool-select').hidden`)) {
		t.Fatal("the selector is hidden with two pools")
	}

	browsertest.Do(t, ctx, "choose api", chromedp.Evaluate[chromedp.Void](
		`const s = document.getElementById('pool-select'); s.value = 'api'; s.dispatchEvent(new Event('change'))`))
	poll("api's page", `location.search === '?pool=api' && document.getElementById('pool').textContent === 'pool api' &&
		document.getElementById('ready').textContent === '1' && window.lbscale.snapshot && window.lbscale.snapshot.pool === 'api'`)
	if got := browsertest.Run(t, ctx, "the selected option", chromedp.Evaluate[string](`document.getElementById('pool-select').value`)); got != "api" {
		t.Fatalf("selector shows %q on api's page", got)
	}
	if got := browsertest.Run(t, ctx, "the title", chromedp.Evaluate[string](`document.title`)); got != "lbscale · api" {
		t.Fatalf("title %q", got)
	}
}
