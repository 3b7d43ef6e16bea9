package fleet_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"lbscale/internal/envconf"
	"lbscale/internal/poolfile"
	"lbscale/internal/state"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv"
	"lbscale/internal/testenv/statetest"
	"lbscale/scaler/config"
	"lbscale/scaler/control"
	"lbscale/scaler/driver"
	"lbscale/scaler/driver/drivertest"
	"lbscale/scaler/fleet"
)

// These tests run fleets against a real Redis and the fake engine: each
// pool's controller, lease and registry are the real ones, only the
// containers are records.

type world struct {
	t     *testing.T
	redis *statetest.Server
	root  *redisstore.Store // the balancers' view, and the stores' client
	eng   *drivertest.Engine
	env   map[string]string
}

func newWorld(t *testing.T) *world {
	srv := statetest.StartRedis(t)
	root, err := redisstore.New(srv.URL(), "web")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return &world{t: t, redis: srv, root: root, eng: drivertest.NewEngine(nil), env: map[string]string{
		config.EnvRedisURL: srv.URL(), config.EnvLeaseTTL: "1s", config.EnvReconcileInterval: "200ms",
		config.EnvPollInterval: "50ms", config.EnvDrainSettle: "100ms", config.EnvDrainTimeout: "5s",
		config.EnvStopGrace: "0s", config.EnvHealthTimeout: "5s", config.EnvScaleDownInterval: "1h",
	}}
}

func logger() *slog.Logger {
	if os.Getenv("SCALER_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// scaler runs a fleet as one scaler process would, named id, until the
// test ends (or stop is called).
func (w *world) scaler(id, file string) (f *fleet.Fleet, stop func()) {
	w.t.Helper()
	env := maps.Clone(w.env)
	env[config.EnvScalerID] = id
	pools, err := fleet.Load(w.parse(file), envconf.FromMap(env))
	if err != nil {
		w.t.Fatal(err)
	}
	f = fleet.New(fleet.Options{
		Env:   envconf.FromMap(env),
		Store: func(pool string) state.Store { return w.root.ForPool(pool) },
		Driver: func(_ context.Context, cfg config.Config) (driver.Driver, func(), error) {
			return w.eng.Driver(cfg.Pool), nil, nil
		},
		Health: func(config.Config) func(context.Context, string) error { return w.eng.Health },
		Logger: logger().With("scaler", id),
	})
	ctx, cancel := context.WithCancel(context.Background())
	if err := f.Start(ctx, pools); err != nil {
		w.t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() { f.Wait(); close(stopped) }()
	done := false
	stop = func() {
		if !done {
			done = true
			cancel()
			<-stopped
		}
	}
	w.t.Cleanup(stop)
	return f, stop
}

func (w *world) parse(file string) poolfile.Config {
	w.t.Helper()
	c, err := poolfile.Parse("pools.yml", []byte(file))
	if err != nil {
		w.t.Fatal(err)
	}
	return c
}

func (w *world) registry(pool string) []state.Backend {
	w.t.Helper()
	bs, err := w.root.ForPool(pool).Backends(context.Background())
	if err != nil {
		w.t.Fatal(err)
	}
	return bs
}

func (w *world) ready(pool string) int {
	n := 0
	for _, b := range w.registry(pool) {
		if b.State == state.Ready {
			n++
		}
	}
	return n
}

// settled: pool runs n containers, all registered ready, nothing else.
func (w *world) settled(pool string, n int) func() bool {
	return func() bool {
		return len(w.eng.Running(pool)) == n && w.ready(pool) == n && len(w.registry(pool)) == n
	}
}

// empty: nothing of pool is left, in the engine or in the registry.
func (w *world) empty(pool string) func() bool {
	return func() bool {
		bs, err := w.root.ForPool(pool).Backends(context.Background())
		if err != nil {
			return false
		}
		list, _ := w.eng.Driver(pool).List(context.Background())
		return len(list) == 0 && len(bs) == 0
	}
}

const twoPools = `pools:
  web:
    min_replicas: 2
    max_replicas: 4
  api:
    hosts: [api.example.com]
    min_replicas: 1
    max_inflight: 8
`

// Two scaler processes, two pools: each pool has one leader (whichever
// scaler took its lease first), its own containers (labelled with its
// pool, never started twice), its own registry, and its own settings.
func TestTwoPoolsEachWithItsLeaderAndContainers(t *testing.T) {
	w := newWorld(t)
	a, _ := w.scaler("scaler-a", twoPools)
	b, _ := w.scaler("scaler-b", twoPools)
	testenv.Eventually(t, 15*time.Second, "web 2, api 1", func() bool { return w.settled("web", 2)() && w.settled("api", 1)() })
	time.Sleep(2 * time.Second) // several lease rounds and reconciles of both
	for _, pool := range []string{"web", "api"} {
		la, lb := a.Controller(pool).Leader(), b.Controller(pool).Leader()
		if la == lb {
			t.Fatalf("pool %s: a leads %v, b leads %v; want exactly one", pool, la, lb)
		}
		who := "scaler-a"
		if lb {
			who = "scaler-b"
		}
		t.Logf("pool %s led by %s", pool, who)
	}
	if w.eng.MaxRunning("web") != 2 || w.eng.MaxRunning("api") != 1 {
		t.Fatalf("most running at once: web %d, api %d; two scalers started a pool twice", w.eng.MaxRunning("web"), w.eng.MaxRunning("api"))
	}
	for _, id := range w.eng.Running("web") {
		if !strings.HasPrefix(id, "lbscale-web-web-") {
			t.Errorf("web container %s", id)
		}
	}
	st := a.Controller("api").Status(context.Background())
	if st.Config.MinReplicas != 1 || st.Config.TargetInflight != 8 || st.Pool != "api" || !slices.Equal(st.Pools, []string{"web", "api"}) {
		t.Fatalf("api status: pool %s, pools %v, config %+v", st.Pool, st.Pools, st.Config)
	}
}

// A reload adds, changes and removes pools without touching the others:
// a new pool gets its MIN_REPLICAS, a changed max_replicas is enforced by
// a new controller that adopts the running containers, and a removed pool
// is drained by one of the two scalers until nothing of it is left.
func TestApplyAddsChangesAndRemovesPools(t *testing.T) {
	w := newWorld(t)
	one := "pools:\n  web:\n    min_replicas: 3\n    max_replicas: 3\n"
	a, _ := w.scaler("scaler-a", one)
	b, _ := w.scaler("scaler-b", one)
	testenv.Eventually(t, 15*time.Second, "web 3", w.settled("web", 3))
	webBefore := w.eng.Running("web")
	starts := w.eng.Starts()

	// Added: api.
	added := "pools:\n  web:\n    min_replicas: 3\n    max_replicas: 3\n  api:\n    min_replicas: 2\n"
	t0 := time.Now()
	a.Apply(w.parse(added))
	b.Apply(w.parse(added))
	took := testenv.Eventually(t, 15*time.Second, "api 2", w.settled("api", 2))
	t.Logf("added pool: MIN_REPLICAS ready %s after Apply (Apply itself %s)", took.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("a new pool took %s to reach MIN_REPLICAS", took)
	}
	if !slices.Equal(w.eng.Running("web"), webBefore) || w.eng.Starts() != starts+2 {
		t.Fatalf("adding api touched web: %v -> %v, starts %d -> %d", webBefore, w.eng.Running("web"), starts, w.eng.Starts())
	}

	// Changed: web's max_replicas 3 -> 2 (min 1).
	changed := "pools:\n  web:\n    min_replicas: 1\n    max_replicas: 2\n  api:\n    min_replicas: 2\n"
	oldWeb := [2]*control.Controller{a.Controller("web"), b.Controller("web")}
	apiCtrl := a.Controller("api")
	a.Apply(w.parse(changed))
	b.Apply(w.parse(changed))
	if a.Controller("web") == oldWeb[0] || b.Controller("web") == oldWeb[1] {
		t.Fatal("web's controller was not replaced for its new settings")
	}
	if a.Controller("api") != apiCtrl {
		t.Fatal("api's controller was replaced though its settings did not change")
	}
	took = testenv.Eventually(t, 15*time.Second, "web trimmed to 2", w.settled("web", 2))
	t.Logf("changed max_replicas 3 -> 2: enforced %s after Apply", took.Round(time.Millisecond))
	for _, id := range w.eng.Running("web") {
		if !slices.Contains(webBefore, id) {
			t.Fatalf("web container %s is new: the new controller should adopt, not replace", id)
		}
	}
	if got := a.Controller("web").Status(context.Background()).Config.MaxReplicas; got != 2 {
		t.Fatalf("web status max_replicas %d", got)
	}
	testenv.Eventually(t, 10*time.Second, "one leader of web", func() bool { return a.Controller("web").Leader() != b.Controller("web").Leader() })

	// Removed: api.
	removed := "pools:\n  web:\n    min_replicas: 1\n    max_replicas: 2\n"
	apiIDs := w.eng.Running("api")
	a.Apply(w.parse(removed))
	b.Apply(w.parse(removed))
	if a.Controller("api") != nil || b.Controller("api") != nil {
		t.Fatal("api still runs after its removal")
	}
	took = testenv.Eventually(t, 15*time.Second, "nothing of api left", w.empty("api"))
	t.Logf("removed pool: drained and gone %s after Apply", took.Round(time.Millisecond))
	testenv.Eventually(t, 15*time.Second, "retirements over", func() bool { return len(a.Retiring())+len(b.Retiring()) == 0 })
	for _, id := range apiIDs {
		if !slices.Contains(w.eng.Stopped(), id) {
			t.Errorf("api container %s was not stopped through a driver", id)
		}
	}
	if !w.settled("web", 2)() {
		t.Fatalf("web changed with api's removal: %v", w.eng.Running("web"))
	}
	// The pool's lease is free again: nothing holds on to a removed pool.
	if l, err := w.root.ForPool("api").AcquireLease(context.Background(), "probe", time.Second); err != nil || !l.HeldBy("probe") {
		t.Fatalf("api's lease after the retirement: %+v %v", l, err)
	}
}

// A pool removed and put back before its retirement ended runs again:
// the retirement stops, and the new controller keeps MIN_REPLICAS.
func TestPoolBackBeforeItsRetirementEnded(t *testing.T) {
	w := newWorld(t)
	file := "pools:\n  web:\n    min_replicas: 2\n"
	// The drain outlasts the test's steps.
	w.env[config.EnvDrainSettle], w.env[config.EnvDrainTimeout] = "5m", "5m"
	f, _ := w.scaler("scaler-a", file)
	testenv.Eventually(t, 15*time.Second, "web 2", w.settled("web", 2))
	ids, starts := w.eng.Running("web"), w.eng.Starts()
	f.Apply(w.parse("pools:\n  other:\n    min_replicas: 0\n"))
	testenv.Eventually(t, 10*time.Second, "web draining", func() bool {
		reg := w.registry("web")
		return len(reg) == 2 && reg[0].State == state.Draining && reg[1].State == state.Draining
	})
	if !slices.Equal(f.Retiring(), []string{"web"}) {
		t.Fatalf("retiring %v", f.Retiring())
	}
	f.Apply(w.parse(file))
	if slices.Contains(f.Retiring(), "web") {
		t.Fatalf("still retiring %v after web came back", f.Retiring())
	}
	testenv.Eventually(t, 15*time.Second, "web 2 ready again", w.settled("web", 2))
	time.Sleep(time.Second) // reconciles and scale-up rounds of the new controller
	if !slices.Equal(w.eng.Running("web"), ids) || w.eng.Starts() != starts {
		t.Fatalf("web came back with %v (%d starts), want its containers %v serving again", w.eng.Running("web"), w.eng.Starts()-starts, ids)
	}
}

// A pool file that does not load changes nothing: the error (file, line
// and key) is logged, counted and shown in /status until a file loads.
// The watcher brings a valid change in within two seconds.
func TestReloadThroughTheWatcherAndInvalidFiles(t *testing.T) {
	w := newWorld(t)
	path := filepath.Join(t.TempDir(), "pools.yml")
	write := func(s string) { t.Helper(); testenv.ReplaceFile(t, path, s) }
	first := "pools:\n  web:\n    min_replicas: 1\n"
	write(first)
	file, data, err := poolfile.Read(envconf.FromMap(map[string]string{poolfile.EnvConfig: path}), "web")
	if err != nil {
		t.Fatal(err)
	}
	w.env[config.EnvScalerID] = "scaler-a"
	pools, err := fleet.Load(file, envconf.FromMap(w.env))
	if err != nil {
		t.Fatal(err)
	}
	f := fleet.New(fleet.Options{
		Env:   envconf.FromMap(w.env),
		Store: func(pool string) state.Store { return w.root.ForPool(pool) },
		Driver: func(_ context.Context, cfg config.Config) (driver.Driver, func(), error) {
			return w.eng.Driver(cfg.Pool), nil, nil
		},
		Health: func(config.Config) func(context.Context, string) error { return w.eng.Health },
		Logger: logger(),
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); f.Wait() }()
	if err := f.Start(ctx, pools); err != nil {
		t.Fatal(err)
	}
	watcher := &poolfile.Watcher{Path: path, Apply: f.Apply, Invalid: f.Invalid}
	watcher.Prime(data)
	watching := make(chan struct{})
	go func() { watcher.Run(ctx); close(watching) }()
	defer func() { cancel(); <-watching }()
	srv := httptest.NewServer(f.Handler(""))
	defer srv.Close()
	testenv.Eventually(t, 15*time.Second, "web 1", w.settled("web", 1))

	write(first + "  api:\n    min_replicas: 2\n")
	took := testenv.Eventually(t, 10*time.Second, "api 2 from the file", w.settled("api", 2))
	t.Logf("file change -> new pool at MIN_REPLICAS in %s", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("the change took %s to apply, want within 2s", took)
	}

	for _, bad := range []struct{ file, want string }{
		{first + "  api:\n    min_replicas: 2\n    max_replica: 3\n", path + ":6: pools.api.max_replica: unknown setting"},
		{first + "  api:\n    min_replicas: 2\n    max_replicas: 1\n", path + ":6: pools.api.max_replicas: MAX_REPLICAS: 1 is below MIN_REPLICAS=2"},
	} {
		before := counter(t, srv.URL, "lbscale_scaler_config_reload_errors_total")
		write(bad.file)
		var s control.Status
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			s = status(t, srv.URL+"/status")
			if strings.Contains(s.Problems["pool file"], bad.want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("/status problems %q, want one saying %q", s.Problems, bad.want)
			}
		}
		if got := counter(t, srv.URL, "lbscale_scaler_config_reload_errors_total"); got != before+1 {
			t.Errorf("reload errors %v -> %v, want one more", before, got)
		}
		if !slices.Equal(s.Pools, []string{"web", "api"}) || !w.settled("api", 2)() || !w.settled("web", 1)() {
			t.Fatalf("an invalid file changed the pools: %v", s.Pools)
		}
	}
	write(first)
	testenv.Eventually(t, 15*time.Second, "api removed and gone", w.empty("api"))
	if p := status(t, srv.URL+"/status").Problems["pool file"]; p != "" {
		t.Fatalf("the problem %q stays after a file loaded", p)
	}
}

// The process's admin endpoints cover every pool: /status picks one
// (?pool=, the first by default, 404 for an unknown one), /metrics holds
// each pool's series and the process's once, /healthz all of them, and
// the dashboard's stream follows ?pool=.
func TestAdminAcrossPools(t *testing.T) {
	w := newWorld(t)
	f, _ := w.scaler("scaler-a", twoPools)
	testenv.Eventually(t, 15*time.Second, "web 2, api 1", func() bool { return w.settled("web", 2)() && w.settled("api", 1)() })
	srv := httptest.NewServer(f.Handler("s3cret"))
	defer srv.Close()
	auth := func(path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	decode := func(path string) control.Status {
		t.Helper()
		resp := auth(path)
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s", path, resp.Status)
		}
		var s control.Status
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	testenv.Eventually(t, 10*time.Second, "status of both", func() bool {
		return decode("/status").Replicas == 2 && decode("/status?pool=api").Replicas == 1
	})
	if s := decode("/status"); s.Pool != "web" || !slices.Equal(s.Pools, []string{"web", "api"}) || s.Config.MaxReplicas != 4 {
		t.Fatalf("default status: pool %s, pools %v, max %d", s.Pool, s.Pools, s.Config.MaxReplicas)
	}
	if resp := auth("/status?pool=nope"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown pool: %s", resp.Status)
	}
	if resp, _ := http.Get(srv.URL + "/status"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("status without the token: %s", resp.Status)
	}

	var m string
	testenv.Eventually(t, 10*time.Second, "the replica gauges", func() bool {
		resp := auth("/metrics")
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m = string(body)
		return strings.Contains(m, `lbscale_scaler_replicas{pool="api",state="ready"} 1`) &&
			strings.Contains(m, `lbscale_scaler_replicas{pool="web",state="ready"} 2`)
	})
	for _, want := range []string{
		`lbscale_scaler_replicas{pool="web",state="ready"} 2`,
		`lbscale_scaler_replicas{pool="api",state="ready"} 1`,
		`lbscale_scaler_leader{pool="web"} 1`,
		`lbscale_scaler_leader{pool="api"} 1`,
		"lbscale_scaler_config_reload_errors_total 0",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if n := strings.Count(m, "\ngo_goroutines "); n != 1 {
		t.Errorf("go_goroutines %d times in /metrics, want once", n)
	}

	if resp, _ := http.Get(srv.URL + "/healthz"); resp.StatusCode != 200 {
		t.Fatalf("healthz: %s", resp.Status)
	}
	if resp, _ := http.Get(srv.URL + "/?pool=api"); resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("dashboard page of api: %s", resp.Status)
	}
	if resp, _ := http.Get(srv.URL + "/?pool=nope"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("dashboard page of an unknown pool: %s", resp.Status)
	}
	// The stream's first event is the chosen pool's.
	resp := auth("/dashboard/stream?pool=api")
	defer resp.Body.Close()
	buf := make([]byte, 64<<10)
	var got string
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(got, `"pool":"api"`) && time.Now().Before(deadline) {
		n, err := resp.Body.Read(buf)
		got += string(buf[:n])
		if err != nil {
			break
		}
	}
	if !strings.Contains(got, `"pool":"api"`) || !strings.Contains(got, `"pools":["web","api"]`) {
		t.Fatalf("api's stream: %.300s", got)
	}
}

func status(t *testing.T, url string) control.Status {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s control.Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func counter(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			var f float64
			if err := json.Unmarshal([]byte(v), &f); err == nil {
				return f
			}
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}
