package status

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// statusServer serves a /status document whose replica count grows with
// each poll, as a balancer's would during a scale-up.
func statusServer(t *testing.T, token string) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var polls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		n := polls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"balancer":"lb-a","replicas":%d,"queue_depth":0,"backends":[
			{"id":"web-1","addr":"10.0.0.2:8080","state":"ready","inflight_local":3,"inflight_cluster":5,"last_seen":"2025-01-02T03:04:05Z"},
			{"id":"web-2","addr":"10.0.0.3:8080","state":"starting","inflight_local":0,"inflight_cluster":0,"last_seen":null}]}`, n)
	}))
	t.Cleanup(srv.Close)
	return srv, &polls
}

func TestSamplerRecordsDataAndGaps(t *testing.T) {
	good, _ := statusServer(t, "secret")
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer broken.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"backends": [`)
	}))
	defer garbage.Close()
	noField := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"backends": []}`)
	}))
	defer noField.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/status"
	ln.Close()

	s := &Sampler{
		URLs:     []string{good.URL + "/status", broken.URL + "/status", garbage.URL + "/status", noField.URL + "/status", closed},
		Interval: 50 * time.Millisecond,
		Token:    "secret",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	recorded := func() (good, sources int) {
		seen := map[int]bool{}
		for _, smp := range s.Samples() {
			seen[smp.Source] = true
			if smp.Source == 0 {
				good++
			}
		}
		return good, len(seen)
	}
	for time.Now().Before(deadline) {
		if good, sources := recorded(); good >= 4 && sources == 5 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done

	bySource := map[int][]Sample{}
	for _, smp := range s.Samples() {
		bySource[smp.Source] = append(bySource[smp.Source], smp)
	}
	goods := bySource[0]
	if len(goods) < 4 {
		t.Fatalf("only %d samples of the good source", len(goods))
	}
	for i, smp := range goods {
		if !smp.OK() {
			t.Fatalf("good source sample %d failed: %s", i, smp.Err)
		}
		if smp.Replicas != i+1 {
			t.Errorf("sample %d: replicas %d, want %d", i, smp.Replicas, i+1)
		}
	}
	first := goods[0]
	if len(first.Backends) != 2 {
		t.Fatalf("backends %+v", first.Backends)
	}
	b := first.Backends[0]
	if b.ID != "web-1" || b.Addr != "10.0.0.2:8080" || b.State != "ready" || b.InflightLocal != 3 || b.InflightCluster != 5 ||
		b.LastSeen == nil || !b.LastSeen.Equal(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("backend %+v", b)
	}
	if first.Backends[1].LastSeen != nil || first.Backends[1].State != "starting" {
		t.Errorf("backend %+v", first.Backends[1])
	}
	for src, want := range map[int]string{1: "HTTP 500", 2: "decode", 3: "replicas", 4: "connect"} {
		smps := bySource[src]
		if len(smps) == 0 {
			t.Errorf("source %d: no samples (gaps must be recorded)", src)
			continue
		}
		for _, smp := range smps {
			if smp.OK() || !strings.Contains(smp.Err, want) {
				t.Errorf("source %d: sample %+v, want a gap mentioning %q", src, smp, want)
			}
		}
	}
	if latest := s.Latest(); len(latest) != 5 || latest[0].Source != 0 {
		t.Errorf("latest %+v", latest)
	}
}

func TestSamplerSendsToken(t *testing.T) {
	srv, _ := statusServer(t, "secret")
	s := &Sampler{}
	if _, err := s.Fetch(context.Background(), srv.URL+"/status"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("without token: %v", err)
	}
	s.Token = "secret"
	if doc, err := s.Fetch(context.Background(), srv.URL+"/status"); err != nil || doc.Replicas < 1 {
		t.Fatalf("with token: %+v %v", doc, err)
	}
}

func TestPerSecond(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return start.Add(time.Duration(ms) * time.Millisecond) }
	bk := func(id string, n int64) Backend { return Backend{ID: id, InflightCluster: n} }
	samples := []Sample{
		// second 0: source 0 twice (last wins), source 1 lags by one replica
		{At: at(100), Source: 0, Doc: Doc{Replicas: 1, Backends: []Backend{bk("a", 9)}}},
		{At: at(900), Source: 0, Doc: Doc{Replicas: 2, Backends: []Backend{bk("a", 4), bk("b", 1)}}},
		{At: at(500), Source: 1, Doc: Doc{Replicas: 1, Backends: []Backend{bk("a", 6)}}},
		// second 1: only a failed sample: a gap
		{At: at(1500), Source: 0, Err: "connection refused"},
		// second 2: good again
		{At: at(2100), Source: 1, Doc: Doc{Replicas: 3, Backends: []Backend{bk("a", 1), bk("b", 2), bk("c", 3)}}},
		// beyond n: ignored
		{At: at(7000), Source: 0, Doc: Doc{Replicas: 9}},
	}
	got := PerSecond(samples, start, 4)
	want := []Point{
		{OK: true, Replicas: 2, Inflight: 6 + 1},
		{},
		{OK: true, Replicas: 3, Inflight: 6},
		{},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("second %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

// A /status document may name the live dashboard: a scaler's says "/", a
// balancer's an absolute URL; either comes back absolute.
func TestDashboardURL(t *testing.T) {
	cases := []struct{ doc, want string }{
		{`{"replicas":1}`, ""},
		{`{"replicas":1,"dashboard":"/"}`, "{srv}/"},
		{`{"replicas":1,"dashboard":"http://127.0.0.1:9093/"}`, "http://127.0.0.1:9093/"},
	}
	for _, tc := range cases {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, tc.doc) }))
		s := &Sampler{URLs: []string{"http://127.0.0.1:1/status", srv.URL + "/status"}}
		want := strings.ReplaceAll(tc.want, "{srv}", srv.URL)
		if got := s.Dashboard(context.Background()); got != want {
			t.Errorf("%s: dashboard %q, want %q", tc.doc, got, want)
		}
		srv.Close()
	}
}
