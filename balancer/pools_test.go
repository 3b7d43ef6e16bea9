package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lbscale/internal/testenv"
	"lbscale/internal/testenv/proctest"
)

// named is a real backend that answers with its name.
func named(t *testing.T, name string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func hostAnswer(t *testing.T, url, host string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Host = host
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return fmt.Sprintf("%d %s", res.StatusCode, strings.TrimSpace(string(body)))
}

// TestPoolFile: a balancer started with LBSCALE_CONFIG routes by host and
// path; a changed file applies without a restart; an invalid one is
// refused, naming file, line and key, while the running pools serve on;
// at start-up an invalid file exits 2.
func TestPoolFile(t *testing.T) {
	bin := proctest.Build(t, "balancer")
	dir := t.TempDir()
	file := filepath.Join(dir, "pools.yml")
	web, api, v2, shop := named(t, "web"), named(t, "api"), named(t, "api-v2"), named(t, "shop")
	testenv.ReplaceFile(t, file, fmt.Sprintf(`pools:
  web:
    backends: %s
  api:
    hosts: [api.example.com]
    backends: %s
  api-v2:
    hosts: [api.example.com]
    paths: [/v2]
    backends: %s
`, web, api, v2))
	port, admin := proctest.FreePort(t), proctest.FreePort(t)
	p := proctest.Start(t, "balancer", bin, "LBSCALE_CONFIG="+file, "LISTEN_ADDR="+proctest.Addr(port),
		"ADMIN_ADDR="+proctest.Addr(admin), "HEALTH_INTERVAL=1h")
	proxy := "http://" + proctest.Addr(port)
	proctest.WaitHTTP(t, p, fmt.Sprintf("http://%s/healthz", proctest.Addr(admin)))

	for _, tc := range []struct{ host, path, want string }{
		{"web.example.com", "/", "200 web"},      // no host rule: the pool without hosts
		{"api.example.com", "/users", "200 api"}, // exact host
		{"api.example.com", "/v2/users", "200 api-v2"},
		{"api.example.com", "/v2x", "200 api"}, // a prefix ends at a segment
	} {
		if got := hostAnswer(t, proxy+tc.path, tc.host); got != tc.want {
			t.Errorf("%s%s: %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}

	// A change: web goes, shop comes for its own host only; unknown hosts
	// then get 404.
	testenv.ReplaceFile(t, file, fmt.Sprintf(`pools:
  shop:
    hosts: [shop.example.com]
    backends: %s
  api:
    hosts: [api.example.com]
    backends: %s
`, shop, api))
	took := testenv.Eventually(t, 5*time.Second, "the changed file applies", func() bool {
		return hostAnswer(t, proxy+"/", "shop.example.com") == "200 shop"
	})
	t.Logf("a changed pool file served %v after it was written", took.Round(time.Millisecond))
	if got := hostAnswer(t, proxy+"/", "web.example.com"); !strings.HasPrefix(got, "404 ") {
		t.Errorf("removed pool's host: %q, want 404", got)
	}
	var st struct {
		Pools []struct {
			Name string `json:"name"`
		} `json:"pools"`
	}
	res, err := http.Get(fmt.Sprintf("http://%s/status", proctest.Addr(admin)))
	if err != nil {
		t.Fatal(err)
	}
	_ = json.NewDecoder(res.Body).Decode(&st)
	res.Body.Close()
	if len(st.Pools) != 2 || st.Pools[0].Name != "shop" || st.Pools[1].Name != "api" {
		t.Errorf("/status pools %+v, want shop then api", st.Pools)
	}

	// Invalid: an unknown key, and a value out of range.
	testenv.ReplaceFile(t, file, "pools:\n  shop:\n    hosts: [shop.example.com]\n    max_inflight: 0\n    colour: red\n")
	testenv.Eventually(t, 5*time.Second, "the refusal is logged", func() bool {
		return strings.Contains(p.Output(), "pool file refused")
	})
	for _, want := range []string{file + ":5: pools.shop.colour: unknown setting"} {
		if !strings.Contains(p.Output(), want) {
			t.Errorf("log does not say %q:\n%s", want, p.Output())
		}
	}
	testenv.ReplaceFile(t, file, "pools:\n  shop:\n    hosts: [shop.example.com]\n    max_inflight: 0\n")
	testenv.Eventually(t, 5*time.Second, "the value's refusal is logged", func() bool {
		return strings.Contains(p.Output(), file+":4: pools.shop.max_inflight: MAX_INFLIGHT")
	})
	if got := hostAnswer(t, proxy+"/x", "api.example.com"); got != "200 api" {
		t.Errorf("after a refused file: %q, want the running configuration to serve", got)
	}

	// At start-up, the same file exits 2 naming it.
	out := exitsNaming(t, bin, []string{"LBSCALE_CONFIG=" + file}, file+":4: pools.shop.max_inflight")
	t.Logf("start-up with an invalid pool file:\n%s", out)
}
