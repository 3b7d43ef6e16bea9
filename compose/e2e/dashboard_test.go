package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"lbscale/internal/testenv"
	"lbscale/internal/testenv/browsertest"
)

// TestDashboardInBrowser opens the scaler's live dashboard in a real
// browser (Debian's chromium, driven by chromedp) on the compose cluster:
// the replica count it shows is the one /status reports; a burst changes
// the count and the event list without a reload; a restarted scaler is
// reconnected to by the page itself. It saves docs/img/dashboard.png,
// taken during the burst.
func TestDashboardInBrowser(t *testing.T) {
	needDocker(t)
	// The browser first, so that a missing one skips (or fails) the test
	// before the cluster is built; its bound covers scripts/up too.
	ctx := browsertest.New(t, 10*time.Minute)
	up(t, "MIN_REPLICAS=1", "MAX_REPLICAS=4", "WEB_ENV=CAPACITY=2,SLEEP_MS=300", "MAX_INFLIGHT=2",
		"QUEUE_TIMEOUT=60s", "IDLE_TIMEOUT=10s", "SCALE_DOWN_INTERVAL=2s")
	testenv.Eventually(t, 60*time.Second, "pool settles at 1 replica", func() bool {
		return getStatus(t, adminA).Replicas == 1 && getStatus(t, adminB).Replicas == 1
	})

	page := adminScaler + "/"
	browsertest.Do(t, ctx, "open the dashboard", chromedp.Navigate(page), waitLive())
	// A marker the page would lose on a reload.
	browsertest.Do(t, ctx, "mark the page", chromedp.Evaluate[chromedp.Void](`window.__noReload = 1`))

	// 1. The count the page shows is the one /status reports.
	testenv.Eventually(t, 15*time.Second, "the page's ready count matches /status", func() bool {
		return readInt(t, ctx, "#ready") == getStatus(t, adminA).Replicas
	})
	events0 := rows(t, ctx, "#events tr")
	t.Logf("page: ready %d, %d events before the burst", readInt(t, ctx, "#ready"), events0)

	// 2. A burst, open loop, through both balancers: 40 requests/s for
	// 15 s against about 6.7/s per container.
	burst := shape{name: "dashboard burst", dur: 15 * time.Second, rate: func(float64) float64 { return 40 }}
	start := time.Now()
	done := make(chan []outcome, 1)
	go func() {
		done <- driveTo(t, burst, func(k int) string { return []string{proxyA, proxyB}[k%2] + "/" })
	}()
	took := testenv.Eventually(t, 40*time.Second, "the page shows the pool grow and a new event, without a reload", func() bool {
		return readInt(t, ctx, "#ready") > 1 && rows(t, ctx, "#events tr") > events0
	})
	t.Logf("the page showed the scale-up %v into the burst", took.Round(100*time.Millisecond))
	time.Sleep(time.Until(start.Add(10 * time.Second)))                         // let the charts fill
	shot := browsertest.Run(t, ctx, "screenshot", chromedp.FullScreenshot(100)) // 100: PNG; less, JPEG
	out := filepath.Join(testenv.Root(), "docs", "img", "dashboard.png")
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %s (%d bytes) during the burst", out, len(shot))
	if browsertest.Run(t, ctx, "the marker", chromedp.Evaluate[int](`window.__noReload || 0`)) != 1 {
		t.Fatal("the page was reloaded during the burst")
	}
	outs := <-done
	failed := 0
	for _, o := range outs {
		if o.code != http.StatusOK {
			failed++
		}
	}
	t.Logf("burst: %d requests, %d failed", len(outs), failed)
	if failed > 0 {
		t.Errorf("%d of %d burst requests failed", failed, len(outs))
	}
	if page, status := readInt(t, ctx, "#ready"), getStatus(t, adminA).Replicas; page < 2 || status < 2 {
		t.Errorf("after the burst the page shows %d ready and /status %d, want both above 1", page, status)
	}

	// 3. The scaler behind the page restarts: the page reconnects by itself.
	before := browsertest.Run(t, ctx, "count reconnects", chromedp.Evaluate[int](`window.lbscale.reconnects`))
	id := docker(t, "ps", "-q", "--filter", "label=com.docker.compose.project="+project, "--filter", "label=com.docker.compose.service=scaler-a")
	docker(t, "restart", "-t", "10", id)
	back := testenv.Eventually(t, 60*time.Second, "the page reconnects after the scaler's restart", func() bool {
		return browsertest.Run(t, ctx, "reconnects", chromedp.Evaluate[int](`window.lbscale.connected ? window.lbscale.reconnects : -1`)) > before
	})
	t.Logf("the page reconnected %v after the scaler's restart returned", back.Round(100*time.Millisecond))
	ticks0 := browsertest.Run(t, ctx, "ticks", chromedp.Evaluate[int](`window.lbscale.ticks`))
	time.Sleep(3 * time.Second)
	browsertest.Do(t, ctx, "live", waitLive())
	ticks1 := browsertest.Run(t, ctx, "ticks again", chromedp.Evaluate[int](`window.lbscale.ticks`))
	if ticks1 <= ticks0 {
		t.Fatalf("no tick in 3 s after reconnecting (%d then %d)", ticks0, ticks1)
	}
	testenv.Eventually(t, 15*time.Second, "after the restart the page's ready count matches /status", func() bool {
		return readInt(t, ctx, "#ready") == getStatus(t, adminA).Replicas
	})
	if browsertest.Run(t, ctx, "the marker", chromedp.Evaluate[int](`window.__noReload || 0`)) != 1 {
		t.Fatal("the page reloaded instead of reconnecting")
	}
}

// waitLive waits until the page says its stream is live.
func waitLive() chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`))
}

// readInt reads the number an element of the page shows; -1 while it
// shows none (before the first snapshot arrived).
func readInt(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	s := browsertest.Run(t, ctx, "read "+sel, chromedp.TextContent(chromedp.CSS(sel)))
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return -1
	}
	return n
}

// rows counts the elements sel matches.
func rows(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	return browsertest.Run(t, ctx, "count "+sel, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll(%q).length`, sel)))
}
