package admin_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"lbscale/balancer/admin"
	"lbscale/balancer/pool"
	"lbscale/internal/state"
)

type src struct{}

func (src) Set() *pool.Set            { return &pool.Set{} }
func (src) State(string) state.Status { return "" }
func (src) StoreUp() bool             { return true }
func (src) Peers() int                { return 1 }

// TestPprof: the profiles are served only with DEBUG_PPROF, and only to a
// caller holding the admin token.
func TestPprof(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pprof bool
		auth  string
		want  int
	}{
		{"off", false, "Bearer s3cret", http.StatusNotFound},
		{"on, no token", true, "", http.StatusUnauthorized},
		{"on, wrong token", true, "Bearer nope", http.StatusUnauthorized},
		{"on, token", true, "Bearer s3cret", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &admin.Server{Token: "s3cret", Pools: func() []admin.Pool { return []admin.Pool{{Name: "web", Src: src{}, Queue: func() int64 { return 0 }}} }, Gather: prometheus.NewRegistry(), Pprof: tc.pprof}
			srv := httptest.NewServer(s.Handler())
			defer srv.Close()
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/cmdline"} {
				req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
				if tc.auth != "" {
					req.Header.Set("Authorization", tc.auth)
				}
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				res.Body.Close()
				if res.StatusCode != tc.want {
					t.Errorf("%s: status %d, want %d", path, res.StatusCode, tc.want)
				}
			}
		})
	}
}
