package control

import (
	"context"
	"testing"
	"time"

	"lbscale/internal/state"
	"lbscale/internal/testenv"
	"lbscale/scaler/config"
	"lbscale/scaler/decide"
	"lbscale/scaler/forecast"
)

func TestChooseFloor(t *testing.T) {
	for _, c := range []struct {
		minR, maxR, sched, fc int
		want                  int
		source                string
	}{
		{1, 10, 0, 0, 1, FloorMinReplicas},
		{1, 10, 4, 0, 4, FloorSchedule},
		{1, 10, 4, 6, 6, FloorForecast},
		{1, 5, 4, 6, 5, FloorForecast}, // never above MAX_REPLICAS
		{2, 10, 2, 2, 2, FloorMinReplicas},
		{0, 10, 0, 3, 3, FloorForecast},
	} {
		f := chooseFloor(c.minR, c.maxR, c.sched, c.fc)
		if f.Replicas != c.want || f.Source != c.source {
			t.Errorf("chooseFloor(%d, %d, %d, %d) = %d from %s, want %d from %s", c.minR, c.maxR, c.sched, c.fc, f.Replicas, f.Source, c.want, c.source)
		}
	}
	// A start below MIN_REPLICAS stays min_replicas; above it, it is the
	// floor's; demand starts keep their reason.
	f := Floor{Replicas: 4, Source: FloorSchedule}
	for _, c := range []struct {
		in   decide.Reason
		have int
		want decide.Reason
	}{
		{decide.ReasonMinReplicas, 0, decide.ReasonMinReplicas},
		{decide.ReasonMinReplicas, 2, ReasonSchedule},
		{decide.ReasonDemand, 2, decide.ReasonDemand},
	} {
		if got := f.reason(c.in, c.have, 1); got != c.want {
			t.Errorf("reason(%s, have %d) = %s, want %s", c.in, c.have, got, c.want)
		}
	}
}

// floorConfig scales down by demand every second over a one-second
// window, so that a pool above its floor shrinks within a few seconds.
func floorConfig() config.Config {
	cfg := testConfig()
	cfg.ScaleDown = config.ScaleDownDemand
	cfg.StableWindow = time.Second
	cfg.ScaleDownSpec = "@every 1s"
	return cfg
}

// at moves the controller's clock forward to t.
// walk moves the clock on by d a poll at a time, so that the scaler's
// samples stay a continuous record (a jump is a gap, after which a
// scale-down waits for a whole stable window of samples).
func (h *harness) walk(d time.Duration) {
	const step = 10 * time.Millisecond
	for x := time.Duration(0); x < d; x += step {
		h.clk.advance(step)
		time.Sleep(step)
	}
}

func (h *harness) at(t time.Time) {
	h.t.Helper()
	d := t.Sub(h.clk.now())
	if d < 0 {
		h.t.Fatalf("clock at %s, cannot go back to %s", h.clk.now().Format(time.TimeOnly), t.Format(time.TimeOnly))
	}
	h.clk.advance(d)
}

// offered reports an arrival rate, served in 100 ms, as a balancer's sync
// does: at 4 in flight per container, 40 req/s is one container's worth.
func (h *harness) offered(rate float64) {
	h.t.Helper()
	req := state.SyncRequest{Balancer: "lb-1", TTL: time.Hour, Flow: state.Flow{Arrivals: rate, Done: rate, Service: 100 * time.Millisecond}}
	if _, err := h.store.Sync(context.Background(), req); err != nil {
		h.t.Fatal(err)
	}
}

// starts counts the scale-up events for reason and returns the first one's time.
func starts(c *Controller, reason decide.Reason) (n int, first time.Time) {
	for _, e := range c.Status(context.Background()).Events {
		if e.Direction == "up" && e.Reason == reason {
			if n == 0 {
				first = e.Time
			}
			n += e.Count
		}
	}
	return n, first
}

// A MIN_SCHEDULE entry raises the pool to its replicas while it is active
// (starts labelled schedule, no scale-down below it), and the pool
// shrinks back to MIN_REPLICAS after it ends.
func TestScheduleRaisesAndReleasesTheFloor(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := floorConfig()
		s, err := forecast.ParseSchedule("CRON_TZ=UTC 0 1 * * * 30m 3")
		if err != nil {
			t.Fatal(err)
		}
		cfg.MinSchedule = s
		c, _ := h.start(cfg, nil)
		h.settle(1)
		if f := c.Status(context.Background()).Floor; f.Replicas != 1 || f.Source != FloorMinReplicas {
			t.Fatalf("floor before the entry: %+v", f)
		}
		day := h.clk.now().UTC().Truncate(24 * time.Hour)
		h.at(day.Add(time.Hour + 5*time.Second))
		h.settle(3)
		if n, _ := starts(c, ReasonSchedule); n != 2 {
			t.Errorf("%d starts labelled schedule, want 2", n)
		}
		if f := c.Status(context.Background()).Floor; f.Replicas != 3 || f.Source != FloorSchedule || f.Schedule != 3 {
			t.Errorf("floor during the entry: %+v", f)
		}
		// Idle for seconds of scale-down rounds: the entry holds the pool.
		time.Sleep(3 * time.Second)
		if got := len(h.ready()); got != 3 {
			t.Fatalf("%d ready while the entry is active, want 3", got)
		}
		h.at(day.Add(time.Hour + 30*time.Minute))
		h.walk(2 * time.Second)
		h.settle(1)
		if f := c.Status(context.Background()).Floor; f.Replicas != 1 || f.Source != FloorMinReplicas {
			t.Errorf("floor after the entry: %+v", f)
		}
	})
}

// forecastConfig learns over periods of 10 one-minute buckets.
func forecastConfig() config.Config {
	cfg := floorConfig()
	cfg.Forecast = true
	cfg.ForecastBucket, cfg.ForecastPeriod, cfg.ForecastDays = time.Minute, 10*time.Minute, 2
	return cfg
}

// recordPeriod offers 4 req/s (one container) in each bucket of the period
// starting at p, and 120 req/s (3 containers at 100 ms and 4 in flight
// each) in bucket 5; the pool follows reactively and shrinks back. Each
// bucket's readings last 4 s, which lets starts and drains finish inside it.
func (h *harness) recordPeriod(p time.Time, b forecast.Bucketing) {
	h.t.Helper()
	for k := range 10 {
		rate := 4.0
		if k == 5 {
			rate = 120
		}
		h.at(p.Add(time.Duration(k)*b.Bucket + 5*time.Second))
		h.offered(rate)
		time.Sleep(4 * time.Second)
	}
}

// After a period with a rise in bucket 5, the forecast starts containers
// in the next period one cold start ahead of bucket 4 (whose next bucket
// is the rise): the look-ahead is the measured cold start plus a bucket.
func TestForecastStartsAheadOfARecordedRise(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		h.eng.SetBootDelay(2 * time.Second)
		cfg := forecastConfig()
		b := cfg.Bucketing()
		c, _ := h.start(cfg, nil)
		h.settle(1)
		p0 := b.Start(forecast.Slot{Period: b.Slot(h.clk.now()).Period})
		h.recordPeriod(p0, b)
		if n, _ := starts(c, decide.ReasonDemand); n < 2 {
			t.Fatalf("the rise started %d containers reactively, want 2", n)
		}
		p1 := p0.Add(b.Period)
		h.at(p1.Add(3*time.Minute + 5*time.Second))
		h.offered(4)
		h.walk(2 * time.Second)
		h.settle(1)
		rates, err := h.store.BucketRates(context.Background())
		if err != nil || len(rates) != 10 || rates[5].Rate != 120 || rates[4].Rate != 4 {
			t.Fatalf("history in the store: %v %v, want 10 buckets, the sixth at 120", rates, err)
		}
		// The cold start measured is the boot delay (and under one health
		// probe interval).
		lead := c.up.coldStart()
		if lead < 2*time.Second || lead > 2*time.Second+2*healthPoll {
			t.Fatalf("measured cold start %s, want about 2s", lead)
		}
		// 13:57 + 2 s is still in bucket 3: nothing yet.
		h.at(p1.Add(4*time.Minute - lead - time.Second))
		time.Sleep(100 * time.Millisecond)
		if n, _ := starts(c, ReasonForecast); n != 0 || len(h.ready()) != 1 {
			t.Fatalf("%d forecast starts, %d ready a second before the lead", n, len(h.ready()))
		}
		// One cold start before bucket 4: the forecast sees bucket 5's rise.
		h.at(p1.Add(4*time.Minute - lead + 500*time.Millisecond))
		testenv.Eventually(t, 10*time.Second, "forecast starts", func() bool { n, _ := starts(c, ReasonForecast); return n == 2 })
		f := c.Status(context.Background()).Floor
		if f.Replicas != 3 || f.Source != FloorForecast || f.Predicted != 120 || f.LeadMs != float64(lead)/1e6 {
			t.Errorf("floor %+v, want 3 from the forecast of 120 req/s, %s ahead", f, lead)
		}
		_, first := starts(c, ReasonForecast)
		// The clock stood half a second past the lead: the starts came at
		// the next poll, a bucket and a cold start ahead of the rise, less
		// that half second.
		if ahead := p1.Add(5 * time.Minute).Sub(first); ahead > b.Bucket+lead || ahead < b.Bucket+lead-time.Second {
			t.Errorf("forecast started %s before the rise, want a bucket and a cold start (%s) less at most 1s", ahead, b.Bucket+lead)
		}
		h.settle(3)
		// The rise has not come (4 req/s): the floor alone holds the pool
		// through bucket 5, and lets it go after.
		h.at(p1.Add(5*time.Minute + 30*time.Second))
		time.Sleep(2 * time.Second)
		if got := len(h.ready()); got != 3 {
			t.Fatalf("%d ready in the bucket of the rise, want 3", got)
		}
		h.at(p1.Add(6*time.Minute + 5*time.Second))
		h.walk(2 * time.Second)
		h.settle(1)
	})
}

// A new leader reads the history the old one wrote: it starts containers
// for a rise the old leader recorded.
func TestForecastSurvivesALeaderChange(t *testing.T) {
	inBubble(t, func(t *testing.T) {
		h := newHarness(t)
		cfg := forecastConfig()
		b := cfg.Bucketing()
		_, stopA := h.start(cfg, nil)
		h.settle(1)
		p0 := b.Start(forecast.Slot{Period: b.Slot(h.clk.now()).Period})
		h.recordPeriod(p0, b)
		p1 := p0.Add(b.Period)
		h.at(p1.Add(5 * time.Second)) // closes bucket 9
		time.Sleep(100 * time.Millisecond)
		stopA()

		cfgB := cfg
		cfgB.ID = "scaler-b"
		cB, _ := h.start(cfgB, nil)
		testenv.Eventually(t, 10*time.Second, "scaler-b leads", func() bool { return cB.Leader() })
		h.at(p1.Add(3*time.Minute + 5*time.Second))
		h.offered(4)
		h.walk(2 * time.Second)
		h.settle(1)
		if f := cB.Status(context.Background()).Floor; f.Replicas != 1 {
			t.Fatalf("new leader's floor before the rise: %+v", f)
		}
		// Bucket 4: its next bucket held the rise the old leader recorded.
		h.at(p1.Add(4*time.Minute + 5*time.Second))
		h.settle(3)
		if n, _ := starts(cB, ReasonForecast); n != 2 {
			t.Errorf("new leader: %d forecast starts, want 2", n)
		}
		if f := cB.Status(context.Background()).Floor; f.Source != FloorForecast || f.Predicted != 120 {
			t.Errorf("new leader's floor: %+v", f)
		}
	})
}
