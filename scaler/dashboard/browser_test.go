package dashboard_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"lbscale/internal/testenv/browsertest"
	"lbscale/scaler/dashboard"
	"lbscale/scaler/dashboard/dashboardtest"
)

// screenshotEnv names a file the thousand-backend test saves the page to,
// to look at it (unset: no screenshot).
const screenshotEnv = "DASHBOARD_SCREENSHOT"

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: -short skips it")
	}
}

// serve serves h's page and stream, and ends the streams the browser
// holds when the test ends (Close alone would wait for them).
func serve(t *testing.T, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv
}

// poll waits until the page's expression is true.
func poll(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	return browsertest.Run(t, ctx, "evaluate "+expr, chromedp.Evaluate[T](expr))
}

// history fills h with 30 minutes of a made-up day: the load climbs from
// half to base's, a queue builds up around minute 20, and the source
// fails for ten seconds around minute 15 (a gap in the charts). The clock
// the source reads is fake until history returns, then real.
func history(t *testing.T, h *dashboard.Hub, src *dashboardtest.Source, fake *atomic.Int64, base dashboard.Snapshot) {
	const n = 1800
	start := time.Now().Add(-n * time.Second)
	// The lists only matter in the last snapshot; without them a sample
	// costs little.
	src.Update(func(s *dashboard.Snapshot) { s.Backends, s.Balancers, s.Events = nil, nil, nil })
	for i := range n {
		fake.Store(start.Add(time.Duration(i) * time.Second).UnixMilli())
		x := float64(i) / n
		f := 0.5 + 0.5*x*x*(3-2*x) + 0.03*math.Sin(float64(i)/40)
		src.Update(func(s *dashboard.Snapshot) {
			s.Replicas.Ready = int(float64(base.Replicas.Ready) * f)
			s.Replicas.Starting = int(float64(base.Replicas.Starting) * (0.5 + 0.5*math.Sin(float64(i)/90)))
			s.Replicas.Draining = int(float64(base.Replicas.Draining) * (0.5 + 0.5*math.Cos(float64(i)/70)))
			s.Replicas.Desired = s.Replicas.Ready + s.Replicas.Starting
			s.Requests.Inflight = int64(float64(base.Requests.Inflight) * f)
			s.Requests.Queued = 0
			if i > 1150 && i < 1300 {
				s.Requests.Queued = int64(400 * math.Sin(float64(i-1150)/150*math.Pi))
			}
			s.Requests.Rate = base.Requests.Rate * f
			s.Replicas.Ideal = float64(s.Requests.Inflight+s.Requests.Queued) / dashboardtest.Target
		})
		if i == 900 {
			src.Fail(errors.New("redis: i/o timeout"))
		}
		if i == 910 {
			src.Fail(nil)
		}
		h.Sample(context.Background())
	}
	fake.Store(0)
	src.Update(func(s *dashboard.Snapshot) { *s = dashboardtest.Clone(base) })
	if got := len(h.History()); got != n-10 {
		t.Fatalf("history = %d points, want %d", got, n-10)
	}
}

type pagePerf struct {
	FirstPaint float64   `json:"firstPaint"`
	FirstData  float64   `json:"firstData"`
	Render     []float64 `json:"render"`
	Ticks      int       `json:"ticks"`
}

func TestDashboardThousandBackends(t *testing.T) {
	skipShort(t)
	ctx := browsertest.New(t, browsertest.Timeout)
	var fake atomic.Int64
	now := func() time.Time {
		if ms := fake.Load(); ms != 0 {
			return time.UnixMilli(ms)
		}
		return time.Now()
	}
	base := dashboardtest.Cluster(dashboardtest.Shape{Backends: 1000, Balancers: 10, Events: 50, Seed: 42, Time: time.Now()})
	src := dashboardtest.NewSource(base, now)
	h := dashboard.New(dashboard.Options{Source: src})
	history(t, h, src, &fake, base)
	h.Sample(context.Background())
	srv := serve(t, dashboardtest.Mux(h))

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "the first data", `window.lbscale && window.lbscale.ticks > 0 && window.lbscale.firstDataMs !== null`)
	// Five more ticks, with some load moving, as the hub would send them.
	r := rand.New(rand.NewPCG(7, 7))
	for range 5 {
		time.Sleep(200 * time.Millisecond)
		n := eval[int](t, ctx, `window.lbscale.ticks`)
		src.Update(func(s *dashboard.Snapshot) {
			for range 100 {
				b := &s.Backends[r.IntN(len(s.Backends))]
				if b.State == "ready" {
					b.Inflight = int64(r.IntN(dashboardtest.Limit + 1))
				}
			}
		})
		h.Sample(context.Background())
		poll(t, ctx, "the next tick", `window.lbscale.ticks > `+strconv.Itoa(n))
	}
	p := eval[pagePerf](t, ctx, `({
		firstPaint: (performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint') || {startTime: -1}).startTime,
		firstData: window.lbscale.firstDataMs,
		render: window.lbscale.renderMs,
		ticks: window.lbscale.ticks,
	})`)
	sorted := slices.Sorted(slices.Values(p.Render))
	p50, worst := sorted[len(sorted)/2], sorted[len(sorted)-1]
	msg := fmt.Sprintf("dashboard 1000 backends: first paint %.0f ms, first data %.0f ms, render p50/max %.1f/%.1f ms (%d renders)",
		p.FirstPaint, p.FirstData, p50, worst, len(p.Render))
	t.Log(msg)
	fmt.Println(msg)

	if p.FirstData > 5000 {
		t.Errorf("first data after %.0f ms, want within 5 s", p.FirstData)
	}
	for i, ms := range p.Render {
		if ms >= 1000 {
			t.Errorf("render %d took %.0f ms, want < 1 s", i, ms)
		}
	}
	if p.Ticks < 6 {
		t.Errorf("%d renders, want the init's and five ticks'", p.Ticks)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#backends tr').length`); n != 50 {
		t.Errorf("backend table shows %d rows, want a page of 50", n)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#heatmap > *').length`); n != 1000 {
		t.Errorf("heat-map has %d cells, want 1000", n)
	}
	if got, want := eval[string](t, ctx, `document.getElementById('ready').textContent`), strconv.Itoa(base.Replicas.Ready); got != want {
		t.Errorf("#ready = %q, want %s", got, want)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#events tr').length`); n != 50 {
		t.Errorf("events table shows %d rows, want 50", n)
	}
	if n := eval[int](t, ctx, `document.querySelectorAll('#balancers tr').length`); n != 10 {
		t.Errorf("balancers table shows %d rows, want 10", n)
	}
	// The table is sorted by in-flight, highest first.
	first := eval[string](t, ctx, `document.querySelector('#backends tr td:nth-child(3)').textContent`)
	if want := fmt.Sprintf("%d / %d", dashboardtest.Limit, dashboardtest.Limit); first != want {
		t.Errorf("first row's in flight = %q, want %q", first, want)
	}
	// Paging and the filter.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("next"))); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "page 2", `document.getElementById('page').textContent === 'page 2 / 20'`)
	id := base.Backends[123].ID
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("filter"), id)); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "the filtered row", `document.querySelectorAll('#backends tr').length === 1 &&
		document.querySelector('#backends tr td').textContent === `+strconv.Quote(id))

	if path := os.Getenv(screenshotEnv); path != "" {
		clear := `const f = document.getElementById('filter'); f.value = ''; f.dispatchEvent(new Event('input'))`
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](clear)); err != nil {
			t.Fatal(err)
		}
		h.Sample(context.Background())
		time.Sleep(300 * time.Millisecond)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot in %s", path)
	}
}

func TestDashboardLive(t *testing.T) {
	skipShort(t)
	ctx := browsertest.New(t, browsertest.Timeout)
	src := dashboardtest.NewSource(dashboardtest.Cluster(dashboardtest.Shape{Backends: 12, Balancers: 2, Events: 3, Seed: 9, Time: time.Now()}), nil)
	run := func() (*dashboard.Hub, func()) {
		h := dashboard.New(dashboard.Options{Source: src, Every: 200 * time.Millisecond})
		hctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			h.Run(hctx)
			close(done)
		}()
		return h, func() {
			cancel()
			<-done
		}
	}
	h, stop := run()
	defer func() { stop() }()
	srv := serve(t, dashboardtest.Mux(h))
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "live", `document.querySelector('#conn[data-state=live]') !== null && window.lbscale.ticks > 0`)
	ready := 0
	src.Update(func(s *dashboard.Snapshot) { ready = s.Replicas.Ready })
	poll(t, ctx, "the ready count", `document.getElementById('ready').textContent === '`+strconv.Itoa(ready)+`'`)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.sameLoad = true`)); err != nil {
		t.Fatal(err)
	}

	src.Update(func(s *dashboard.Snapshot) { s.Replicas.Ready = 42 })
	poll(t, ctx, "the new ready count", `document.getElementById('ready').textContent === '42'`)

	src.Update(func(s *dashboard.Snapshot) {
		s.Events = append(s.Events, dashboard.Event{Time: time.Now(), Direction: "up", Reason: "demand", From: 42, To: 44, IDs: []string{"web-9999-abcdef"}})
	})
	poll(t, ctx, "the new event", `document.querySelectorAll('#events tr').length === 4 &&
		document.querySelector('#events tr td:nth-child(3)').textContent === '42 → 44'`)

	src.Update(func(s *dashboard.Snapshot) { s.Problems = map[string]string{"scale up": "docker: no such image"} })
	poll(t, ctx, "the problem", `!document.getElementById('problems').hidden &&
		document.getElementById('problems').textContent.includes('no such image')`)
	src.Update(func(s *dashboard.Snapshot) { s.Problems = nil })
	poll(t, ctx, "no problem", `document.getElementById('problems').hidden`)

	// The scaler restarts: its streams end, its port is closed a moment,
	// and a new one answers on the same address with fresh data.
	addr := srv.Listener.Addr().String()
	stop()
	srv.CloseClientConnections()
	srv.Close()
	poll(t, ctx, "reconnecting", `document.querySelector('#conn[data-state=reconnecting]') !== null && !window.lbscale.connected`)
	src.Update(func(s *dashboard.Snapshot) { s.Replicas.Ready = 7 })
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	h, stop = run()
	srv2 := httptest.NewUnstartedServer(dashboardtest.Mux(h))
	srv2.Listener.Close()
	srv2.Listener = ln
	srv2.Start()
	t.Cleanup(func() {
		srv2.CloseClientConnections()
		srv2.Close()
	})
	poll(t, ctx, "live again", `document.querySelector('#conn[data-state=live]') !== null && window.lbscale.reconnects >= 1`)
	poll(t, ctx, "fresh data", `document.getElementById('ready').textContent === '7'`)
	if !eval[bool](t, ctx, `window.sameLoad === true`) {
		t.Error("the page reloaded")
	}
}

// The deploy box shows the deploy under way highlighted, a rolled-back
// one as a warning, and nothing when the pool was never deployed; the
// connections card and the member rows' images follow the snapshot.
func TestDashboardDeployAndConns(t *testing.T) {
	skipShort(t)
	ctx := browsertest.New(t, browsertest.Timeout)
	base := dashboardtest.Cluster(dashboardtest.Shape{Backends: 6, Balancers: 1, Seed: 5, Time: time.Now()})
	src := dashboardtest.NewSource(base, nil)
	h := dashboard.New(dashboard.Options{Source: src, Every: 200 * time.Millisecond})
	hctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		h.Run(hctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	srv := serve(t, dashboardtest.Mux(h))
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "live", `document.querySelector('#conn[data-state=live]') !== null && window.lbscale.ticks > 0`)

	// Never deployed: no box. The connections card shows the pool's sum.
	if !eval[bool](t, ctx, `document.getElementById('deploy').hidden`) {
		t.Error("the deploy box shows with no deploy")
	}
	poll(t, ctx, "the connections", `document.getElementById('conns').textContent === '`+strconv.FormatInt(base.Conns, 10)+`'`)
	src.Update(func(s *dashboard.Snapshot) { s.Conns = 12345 })
	poll(t, ctx, "the new connections", `document.getElementById('conns').textContent === '12,345'`)

	// Member rows: the image's tag, the whole reference in the title, and
	// the backend's connections.
	row := `document.querySelector('#backends tr')`
	if got := eval[string](t, ctx, row+`.cells[7].textContent`); got != "1.4.2" {
		t.Errorf("image cell = %q, want the tag 1.4.2", got)
	}
	if got := eval[string](t, ctx, row+`.cells[7].querySelector('span').title`); got != dashboardtest.Image {
		t.Errorf("image cell's title = %q, want %q", got, dashboardtest.Image)
	}
	src.Update(func(s *dashboard.Snapshot) {
		for i := range s.Backends {
			s.Backends[i].Conns = 777
		}
	})
	poll(t, ctx, "the row's connections", row+`.cells[3].textContent === '777'`)
	for ref, want := range map[string]string{
		"web:2":                           "2",
		"registry.local:5000/shop/web":    "web",
		"registry.local:5000/web:v3-rc1":  "v3-rc1",
		"web@sha256:0123456789abcdef0123": "0123456789ab",
		"":                                "",
	} {
		if got := eval[string](t, ctx, `tag(`+strconv.Quote(ref)+`)`); got != want {
			t.Errorf("tag(%q) = %q, want %q", ref, got, want)
		}
	}

	// A canary under way: highlighted, with the images, the reason and
	// how long it has run.
	src.Update(func(s *dashboard.Snapshot) {
		s.Deploy = &dashboard.Deploy{Phase: "canary", Image: "shop/web:1.5.0", Previous: "shop/web:1.4.2",
			Reason: "asked through the admin API", Started: time.Now().Add(-125 * time.Second)}
	})
	poll(t, ctx, "the canary", `(() => {
		const d = document.getElementById('deploy');
		return !d.hidden && d.classList.contains('active') && !d.classList.contains('warn') &&
			document.getElementById('deploy-phase').textContent === 'canary' &&
			document.getElementById('deploy-images').textContent === 'shop/web:1.5.0 ← shop/web:1.4.2' &&
			document.getElementById('deploy-reason').textContent === 'asked through the admin API' &&
			document.getElementById('deploy-time').textContent.startsWith('running for 2m ');
	})()`)
	if bg := eval[string](t, ctx, `getComputedStyle(document.getElementById('deploy-phase')).backgroundColor`); bg != "rgb(59, 130, 246)" {
		t.Errorf("an active phase's pill is %s, want the highlight (var(--starting))", bg)
	}

	// Rolled back: a warning, no longer active, with when it ended.
	src.Update(func(s *dashboard.Snapshot) {
		now := time.Now()
		s.Deploy.Phase, s.Deploy.Reason = "rolled-back", "canary failed 80% of 50 requests"
		s.Deploy.Started, s.Deploy.Finished = now.Add(-10*time.Minute), now.Add(-3*time.Minute)
	})
	poll(t, ctx, "the rollback", `(() => {
		const d = document.getElementById('deploy');
		const when = document.getElementById('deploy-time').textContent;
		return !d.hidden && d.classList.contains('warn') && !d.classList.contains('active') &&
			document.getElementById('deploy-phase').textContent === 'rolled-back' &&
			document.getElementById('deploy-reason').textContent.includes('80%') &&
			when.startsWith('finished ') && when.includes('(3m ') && when.endsWith('took 7m 00s');
	})()`)
	if bg := eval[string](t, ctx, `getComputedStyle(document.getElementById('deploy-phase')).backgroundColor`); bg != "rgb(180, 83, 9)" {
		t.Errorf("a rolled-back phase's pill is %s, want the warning colour (var(--warn))", bg)
	}

	src.Update(func(s *dashboard.Snapshot) { s.Deploy = nil })
	poll(t, ctx, "no deploy", `document.getElementById('deploy').hidden`)
}

// bearer lets a request through to next only with the token.
func bearer(token string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next(w, r)
	}
}

func TestDashboardToken(t *testing.T) {
	skipShort(t)
	ctx := browsertest.New(t, browsertest.Timeout)
	src := dashboardtest.NewSource(dashboardtest.Cluster(dashboardtest.Shape{Backends: 3, Balancers: 1, Seed: 11, Time: time.Now()}), nil)
	h := dashboard.New(dashboard.Options{Source: src})
	h.Sample(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", h.Page)
	mux.HandleFunc("GET "+dashboard.StreamPath, bearer("s3cret", h.Stream))
	srv := serve(t, mux)

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL), chromedp.WaitVisible(chromedp.ID("token"))); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "the token state", `document.querySelector('#conn[data-state=token]') !== null`)

	// A wrong token is dropped, and the page asks again.
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("token"), "wrong"), chromedp.Click(chromedp.ID("token-save"))); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "the token asked again", `document.querySelector('#conn[data-state=token]') !== null &&
		document.getElementById('token-form').offsetParent !== null && document.getElementById('token-why').textContent.includes('refused')`)
	if n := eval[int](t, ctx, `sessionStorage.length`); n != 0 {
		t.Errorf("sessionStorage keeps %d items after a refused token", n)
	}

	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("token"), "s3cret"), chromedp.Click(chromedp.ID("token-save"))); err != nil {
		t.Fatal(err)
	}
	poll(t, ctx, "live", `document.querySelector('#conn[data-state=live]') !== null && window.lbscale.ticks > 0`)
	ready := strconv.Itoa(dashboardtest.Cluster(dashboardtest.Shape{Backends: 3, Balancers: 1, Seed: 11}).Replicas.Ready)
	poll(t, ctx, "the data", `document.getElementById('ready').textContent === '`+ready+`'`)
	if got := eval[string](t, ctx, `Object.values(sessionStorage).join()`); got != "s3cret" {
		t.Errorf("sessionStorage holds %q, want the token alone", got)
	}
	if n := eval[int](t, ctx, `localStorage.length`); n != 0 {
		t.Errorf("localStorage holds %d items, want none", n)
	}
	if !eval[bool](t, ctx, `document.getElementById('token-form').offsetParent === null`) {
		t.Error("the token form is still shown")
	}
}
