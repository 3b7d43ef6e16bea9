package front_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"lbscale/balancer/config"
	"lbscale/balancer/front"
	"lbscale/internal/state"
	"lbscale/internal/state/memstore"
	"lbscale/internal/testenv"
)

// backend is a real HTTP server that names itself in every answer.
func backend(t *testing.T, name string, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		w.Header().Set("X-Backend", name)
		if h != nil {
			h(w, r)
		}
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// spec is a pool over static backends, configured as the balancer reads it.
func spec(t *testing.T, name string, hosts []string, env map[string]string) front.Spec {
	t.Helper()
	m := map[string]string{"POOL": name, "HEALTH_INTERVAL": "1h", "SLOW_START": "0s"}
	for k, v := range env {
		m[k] = v
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := m[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return front.Spec{Cfg: cfg, Hosts: hosts}
}

func newDoor(t *testing.T, reg *prometheus.Registry) *front.Door {
	t.Helper()
	d := front.NewDoor(front.Deps{
		Store:      func(string) (state.Store, state.Reports) { return memstore.New(nil), nil },
		Registerer: reg, Log: slog.New(slog.DiscardHandler), BalancerID: "b1",
	}, 5*time.Second)
	t.Cleanup(func() { d.Close(context.Background()) })
	return d
}

func get(t *testing.T, url, host string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Host = host
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", url, host, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

func TestRoutesByHostAndReloads(t *testing.T) {
	reg := prometheus.NewRegistry()
	door := newDoor(t, reg)
	web := backend(t, "web", nil)
	api := backend(t, "api", nil)
	if err := door.Apply(t.Context(), []front.Spec{
		spec(t, "web", []string{"web.example.com"}, map[string]string{"BACKENDS": web}),
		spec(t, "api", []string{"api.example.com"}, map[string]string{"BACKENDS": api}),
	}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(door)
	defer srv.Close()

	for host, want := range map[string]string{"web.example.com": "web", "API.example.com:8081": "api"} {
		if code, body := get(t, srv.URL, host); code != 200 || body != want {
			t.Errorf("Host %s: %d %q, want 200 from %s", host, code, body, want)
		}
	}
	code, body := get(t, srv.URL, "other.example.com")
	if code != http.StatusNotFound || strings.Contains(body, "web") || strings.Contains(body, "api") {
		t.Errorf("unknown host: %d %q, want 404 with a body that names no pool", code, body)
	}

	// A reload: api goes, shop comes, web stays the very same pool.
	before := door.Pools()[0]
	shop := backend(t, "shop", nil)
	if err := door.Apply(t.Context(), []front.Spec{
		spec(t, "web", []string{"web.example.com"}, map[string]string{"BACKENDS": web}),
		spec(t, "shop", []string{"shop.example.com"}, map[string]string{"BACKENDS": shop}),
	}); err != nil {
		t.Fatal(err)
	}
	if door.Pools()[0] != before {
		t.Error("web's settings did not change, yet it was rebuilt")
	}
	if code, body := get(t, srv.URL, "shop.example.com"); code != 200 || body != "shop" {
		t.Errorf("new pool: %d %q", code, body)
	}
	if code, _ := get(t, srv.URL, "api.example.com"); code != http.StatusNotFound {
		t.Errorf("removed pool still answers: %d", code)
	}
	// Its series are gone with it; the others carry their pool label.
	testenv.Eventually(t, 5*time.Second, "api's series leave the registry", func() bool {
		return replicas(t, reg) == "shop=1 web=1"
	})
}

// replicas is lbscale_balancer_replicas by pool, as "pool=n ...".
func replicas(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != "lbscale_balancer_replicas" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "pool" {
					out = append(out, fmt.Sprintf("%s=%g", l.GetValue(), m.GetGauge().GetValue()))
				}
			}
		}
	}
	return strings.Join(out, " ")
}

func TestInvalidConfigurationChangesNothing(t *testing.T) {
	door := newDoor(t, prometheus.NewRegistry())
	web := backend(t, "web", nil)
	if err := door.Apply(t.Context(), []front.Spec{spec(t, "web", []string{"web.example.com"}, map[string]string{"BACKENDS": web})}); err != nil {
		t.Fatal(err)
	}
	err := door.Apply(t.Context(), []front.Spec{
		spec(t, "web", []string{"web.example.com"}, map[string]string{"BACKENDS": web, "MAX_INFLIGHT": "9"}),
		spec(t, "api", []string{"web.example.com"}, map[string]string{"BACKENDS": web}),
	})
	if err == nil || !strings.Contains(err.Error(), "api") || !strings.Contains(err.Error(), "web") {
		t.Fatalf("two pools on one host: %v, want an error naming both", err)
	}
	if pools := door.Pools(); len(pools) != 1 || pools[0].Cfg.MaxInflight != 4 {
		t.Fatalf("a refused configuration changed the running one: %d pools", len(pools))
	}
}

// TestOnePoolsBurstLeavesTheOtherAlone: a pool whose only backend is held
// has its slot taken and a queue; the other pool's requests neither queue
// nor wait for it.
func TestOnePoolsBurstLeavesTheOtherAlone(t *testing.T) {
	door := newDoor(t, prometheus.NewRegistry())
	release := make(chan struct{})
	slow := backend(t, "slow", func(http.ResponseWriter, *http.Request) { <-release })
	fast := backend(t, "fast", nil)
	if err := door.Apply(t.Context(), []front.Spec{
		spec(t, "slow", []string{"slow.example.com"}, map[string]string{"BACKENDS": slow, "MAX_INFLIGHT": "1"}),
		spec(t, "fast", []string{"fast.example.com"}, map[string]string{"BACKENDS": fast, "MAX_INFLIGHT": "1"}),
	}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(door)
	defer srv.Close()

	var wg sync.WaitGroup
	codes := make(chan int, 8)
	for range 8 {
		wg.Go(func() { code, _ := get(t, srv.URL, "slow.example.com"); codes <- code })
	}
	slowPool := door.Pools()[0]
	testenv.Eventually(t, 5*time.Second, "7 of slow's requests queued", func() bool { return slowPool.Admin().Queue() == 7 })
	for i := range 20 {
		if code, body := get(t, srv.URL, "fast.example.com"); code != 200 || body != "fast" {
			t.Fatalf("fast request %d: %d %q while slow is saturated", i, code, body)
		}
	}
	if q := door.Pools()[1].Admin().Queue(); q != 0 {
		t.Errorf("fast's queue %d, want 0", q)
	}
	if q := slowPool.Admin().Queue(); q != 7 {
		t.Errorf("slow's queue %d while its backend is held, want 7", q)
	}
	close(release)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Errorf("slow request: %d", c)
		}
	}
}

// TestRequestKeepsItsPoolThroughAReload: a request in flight when its pool
// is removed (or rebuilt with new settings) is answered by it.
func TestRequestKeepsItsPoolThroughAReload(t *testing.T) {
	for _, tc := range []struct {
		name string
		next func(t *testing.T, addr string) []front.Spec
	}{
		{"removed", func(t *testing.T, _ string) []front.Spec {
			return []front.Spec{spec(t, "other", []string{"other.example.com"}, map[string]string{"BACKENDS": backend(t, "other", nil)})}
		}},
		{"rebuilt", func(t *testing.T, addr string) []front.Spec {
			return []front.Spec{spec(t, "web", nil, map[string]string{"BACKENDS": addr, "MAX_INFLIGHT": "7"})}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			door := newDoor(t, prometheus.NewRegistry())
			arrived := make(chan struct{}, 1)
			release := make(chan struct{})
			addr := backend(t, "web", func(http.ResponseWriter, *http.Request) {
				select {
				case arrived <- struct{}{}:
					<-release
				default:
				}
			})
			if err := door.Apply(t.Context(), []front.Spec{spec(t, "web", nil, map[string]string{"BACKENDS": addr})}); err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(door)
			defer srv.Close()
			done := make(chan string, 1)
			go func() {
				code, body := get(t, srv.URL, "web.example.com")
				done <- fmt.Sprint(code, " ", body)
			}()
			<-arrived
			if err := door.Apply(t.Context(), tc.next(t, addr)); err != nil {
				t.Fatal(err)
			}
			close(release)
			if got := <-done; got != "200 web" {
				t.Fatalf("request in flight through the reload: %s, want 200 web", got)
			}
		})
	}
}
