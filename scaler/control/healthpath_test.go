package control_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"lbscale/internal/testenv"
)

// The start gate probes the pool's HEALTH_PATH on a real container: a path
// the image answers 200 on lets the container in; one it does not (the web
// server's /load/reset wants POST: a GET gets 405) never does, and the
// failure names the path in /status, not only in the log.
func TestDockerStartGateProbesHealthPath(t *testing.T) {
	c := newCluster(t)

	cfg := c.config("a")
	cfg.HealthPath = "/load/reset"
	cfg.HealthTimeout = 2 * time.Second
	ctrl, stop := c.start(cfg)
	var problem string
	testenv.Eventually(t, 60*time.Second, "a failed start naming the path", func() bool {
		problem = ctrl.Status(context.Background()).Problems["container start"]
		return problem != ""
	})
	if !strings.Contains(problem, "/load/reset") || !strings.Contains(problem, "405") {
		t.Fatalf("start problem %q does not name the path and its answer", problem)
	}
	if r := c.ready(); len(r) != 0 {
		t.Fatalf("ready with a health path that never answers 200: %v", r)
	}
	t.Logf("start failure: %s", problem)
	stop()

	cfg = c.config("a")
	cfg.HealthPath = "/"
	ctrl, _ = c.start(cfg)
	c.waitPool(1, 60*time.Second)
	if p := ctrl.Status(context.Background()).Problems["container start"]; p != "" {
		t.Fatalf("start problem %q still shown after a start passed the gate", p)
	}
}
