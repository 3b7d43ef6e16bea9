package testenv

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestEventually(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		ready := start.Add(300 * time.Millisecond)
		took := Eventually(t, time.Second, "the condition", func() bool { return !time.Now().Before(ready) })
		// A condition that takes no time is asked every 10 ms: seen at 300 ms.
		if took != 300*time.Millisecond {
			t.Errorf("took %v, want 300ms (polled every 10 ms)", took)
		}
		// One that takes 100 ms is asked again 100 ms after it answered.
		start, asks := time.Now(), 0
		Eventually(t, time.Second, "the slow condition", func() bool {
			asks++
			time.Sleep(100 * time.Millisecond)
			return time.Since(start) >= 450*time.Millisecond
		})
		if asks != 3 { // asked at 0, 200 and 400 ms, each answering 100 ms later
			t.Errorf("%d asks of a 100 ms condition true from 450 ms, want 3", asks)
		}
	})
}

func TestEnvRequire(t *testing.T) {
	for p, want := range map[Part]string{Redis: "REQUIRE_REDIS", Docker: "REQUIRE_DOCKER", Browser: "REQUIRE_BROWSER"} {
		if got := p.EnvRequire(); got != want {
			t.Errorf("%s: %s, want %s", p, got, want)
		}
	}
}
