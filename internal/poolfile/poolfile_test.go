package poolfile

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"lbscale/internal/testenv"
)

const twoPools = `defaults:
  max_inflight: 4
  queue_timeout: 10s
pools:
  web:
    hosts: [web.example.com, "*.web.example.com"]
    paths: [/]
    image: lbscale/webserver:local
    port: 8080
    health_path: /healthz
    env: {CAPACITY: "2", SLEEP_MS: 10}
    min_replicas: 1
    max_replicas: 10
  api:
    hosts: api.example.com
    image: httpbin:local
    health_path: /status/200
    max_inflight: 8
    min_replicas: 0
  plain:
`

func TestParse(t *testing.T) {
	c, err := Parse("pools.yml", []byte(twoPools))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Names(); !slices.Equal(got, []string{"web", "api", "plain"}) {
		t.Fatalf("pools %v, want file order web, api, plain", got)
	}
	web, _ := c.Pool("web")
	api, _ := c.Pool("api")
	plain, _ := c.Pool("plain")
	for _, tc := range []struct {
		pool Pool
		name string
		want string
		set  bool
	}{
		{web, "MAX_INFLIGHT", "4", true},                    // from defaults
		{api, "MAX_INFLIGHT", "8", true},                    // the pool's own wins
		{api, "QUEUE_TIMEOUT", "10s", true},                 // defaults reach every pool
		{web, "WEB_IMAGE", "lbscale/webserver:local", true}, // image is WEB_IMAGE
		{web, "WEB_PORT", "8080", true},
		{web, "WEB_ENV", "CAPACITY=2,SLEEP_MS=10", true}, // env in file order
		{api, "HEALTH_PATH", "/status/200", true},
		{api, "MIN_REPLICAS", "0", true},
		{plain, "MAX_INFLIGHT", "4", true},
		{plain, "WEB_IMAGE", "", false},
	} {
		got, ok := tc.pool.Settings[tc.name]
		if got != tc.want || ok != tc.set {
			t.Errorf("%s %s = %q (set %v), want %q (set %v)", tc.pool.Name, tc.name, got, ok, tc.want, tc.set)
		}
	}
	if !slices.Equal(web.Hosts, []string{"web.example.com", "*.web.example.com"}) || !slices.Equal(web.Paths, []string{"/"}) {
		t.Errorf("web routes %v %v", web.Hosts, web.Paths)
	}
	if !slices.Equal(api.Hosts, []string{"api.example.com"}) || api.Paths != nil {
		t.Errorf("api routes %v %v: one string is a list of one, no paths is nil", api.Hosts, api.Paths)
	}
}

func TestParseErrorsNameFileLineAndKey(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"not yaml", "pools: [", []string{"p.yml: yaml: line 1"}},
		{"empty", "", []string{"p.yml:0: (top)"}},
		{"no pools", "defaults: {max_inflight: 2}\n", []string{"p.yml:0: pools: want a mapping of at least one pool"}},
		{"unknown top key", "pool:\n  web: {}\npools:\n  web:\n", []string{"p.yml:1: pool: unknown key"}},
		{"unknown setting", "pools:\n  web:\n    max_inflite: 3\n", []string{"p.yml:3: pools.web.max_inflite: unknown setting"}},
		{"upper case setting", "pools:\n  web:\n    MAX_INFLIGHT: 3\n", []string{"p.yml:3: pools.web.MAX_INFLIGHT: unknown setting"}},
		{"process-wide setting", "pools:\n  web:\n    listen_addr: :80\n", []string{"p.yml:3: pools.web.listen_addr: unknown setting"}},
		{"bad pool name", "pools:\n  Web:\n", []string{"p.yml:2: pools.Web: pool name"}},
		{"pool twice", "pools:\n  web:\n  web:\n", []string{"p.yml:3: pools.web: pool defined twice"}},
		{"setting twice", "pools:\n  web:\n    port: 1\n    port: 2\n", []string{"p.yml:4: pools.web.port: set twice"}},
		{"list as value", "pools:\n  web:\n    max_inflight: [1]\n", []string{"p.yml:3: pools.web.max_inflight: want a single value"}},
		{"routes in defaults", "defaults:\n  hosts: [a]\npools:\n  web:\n", []string{"p.yml:2: defaults.hosts: routes belong to a pool"}},
		{"hosts mapping", "pools:\n  web:\n    hosts: {a: b}\n", []string{"p.yml:3: pools.web.hosts: want a list of strings"}},
		{"env comma", "pools:\n  web:\n    env: {A: \"x,y\"}\n", []string{"p.yml:3: pools.web.env.A: a value may not contain a comma"}},
		{"two at once", "pools:\n  web:\n    a: 1\n  api:\n    b: 2\n", []string{"p.yml:3: pools.web.a", "p.yml:5: pools.api.b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.yml", []byte(tc.file))
			if err == nil {
				t.Fatal("parsed; want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestLookupOverlaysTheEnvironment(t *testing.T) {
	c, err := Parse("pools.yml", []byte(twoPools))
	if err != nil {
		t.Fatal(err)
	}
	api, _ := c.Pool("api")
	env := map[string]string{"MAX_INFLIGHT": "2", "LB_POLICY": "p2c", "POOL": "web"}
	look := api.Lookup(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	for name, want := range map[string]string{"MAX_INFLIGHT": "8", "LB_POLICY": "p2c", "POOL": "api"} {
		if got, _ := look(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if _, ok := look("QUEUE_MAX"); ok {
		t.Error("QUEUE_MAX is set by nobody, yet found")
	}
}

func TestExplainPointsAtTheEntry(t *testing.T) {
	c, err := Parse("pools.yml", []byte(twoPools))
	if err != nil {
		t.Fatal(err)
	}
	api, _ := c.Pool("api")
	err = api.Explain(errors.Join(errors.New("MAX_INFLIGHT: 0 is below 1"), errors.New("QUEUE_TIMEOUT: bad"), errors.New("LOG_LEVEL: bad")))
	want := "pools.yml:18: pools.api.max_inflight: MAX_INFLIGHT: 0 is below 1\npools.yml:3: defaults.queue_timeout: QUEUE_TIMEOUT: bad\nLOG_LEVEL: bad"
	if err.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", err, want)
	}
}

func TestReadWithoutAFileIsOnePoolFromTheEnvironment(t *testing.T) {
	env := map[string]string{"POOL": "shop"}
	c, data, err := Read(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, "web")
	if err != nil || data != nil || !slices.Equal(c.Names(), []string{"shop"}) || c.File != "" {
		t.Fatalf("got %v %q %v", c.Names(), data, err)
	}
	c, _, _ = Read(func(string) (string, bool) { return "", false }, "web")
	if !slices.Equal(c.Names(), []string{"web"}) {
		t.Fatalf("default pool %v", c.Names())
	}
	env[EnvConfig] = filepath.Join(t.TempDir(), "missing.yml")
	if _, _, err := Read(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, "web"); err == nil || !strings.Contains(err.Error(), EnvConfig) {
		t.Fatalf("missing file: %v, want an error naming %s", err, EnvConfig)
	}
}

func TestEqual(t *testing.T) {
	a, _ := Parse("a", []byte("pools:\n  web:\n    hosts: [a]\n    max_inflight: 2\n"))
	b, _ := Parse("b", []byte("pools:\n  web:\n    hosts: [b]\n    max_inflight: 2\n"))
	c, _ := Parse("c", []byte("pools:\n  web:\n    hosts: [a]\n    max_inflight: 3\n"))
	wa, wb, wc := a.Pools[0], b.Pools[0], c.Pools[0]
	if !wa.Equal(wa) || wa.Equal(wb) || !wa.SameSettings(wb) || wa.SameSettings(wc) {
		t.Error("Equal compares routes and settings; SameSettings settings only")
	}
}

func TestWatcherReportsEachChangeOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pools.yml")
	write := func(s string) { t.Helper(); testenv.ReplaceFile(t, path, s) }
	first := "pools:\n  web:\n"
	write(first)
	var applied []Config
	var invalid []error
	w := &Watcher{Path: path, Every: time.Millisecond,
		Apply: func(c Config) { applied = append(applied, c) }, Invalid: func(err error) { invalid = append(invalid, err) }}
	w.Prime([]byte(first))
	w.Check()
	if len(applied)+len(invalid) != 0 {
		t.Fatal("the primed contents were reported as a change")
	}
	write("pools:\n  web:\n  api:\n")
	w.Check()
	w.Check()
	if len(applied) != 1 || !slices.Equal(applied[0].Names(), []string{"web", "api"}) {
		t.Fatalf("applied %d configurations, want 1 with web and api", len(applied))
	}
	write("pools:\n  web:\n    nope: 1\n")
	w.Check()
	w.Check()
	if len(invalid) != 1 || !strings.Contains(invalid[0].Error(), path+":3: pools.web.nope") || len(applied) != 1 {
		t.Fatalf("invalid %v; want one error naming file, line and key, and nothing applied", invalid)
	}
}

// The floors are per pool: a quoted schedule keeps its spaces, ";" and
// "*", and forecast: on reads as the text on, not YAML 1.1's true.
func TestFloorSettings(t *testing.T) {
	c, err := Parse("pools.yml", []byte(`pools:
  web:
    min_schedule: "*/30 8-17 * * 1-5 10m 4; 0 20 * * * 30m 2"
    forecast: on
    forecast_bucket: 1m
    forecast_period: 168h
    forecast_days: 4
`))
	if err != nil {
		t.Fatal(err)
	}
	web, _ := c.Pool("web")
	look := web.Lookup(func(string) (string, bool) { return "", false })
	for name, want := range map[string]string{
		"MIN_SCHEDULE": "*/30 8-17 * * 1-5 10m 4; 0 20 * * * 30m 2", "FORECAST": "on",
		"FORECAST_BUCKET": "1m", "FORECAST_PERIOD": "168h", "FORECAST_DAYS": "4",
	} {
		if got, ok := look(name); !ok || got != want {
			t.Errorf("%s = %q (%v), want %q", name, got, ok, want)
		}
	}
}
