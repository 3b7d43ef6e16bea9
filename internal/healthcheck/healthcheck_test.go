package healthcheck

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestLocalURL(t *testing.T) {
	for _, tc := range []struct{ addr, def, want string }{
		{"", ":8080", "http://127.0.0.1:8080/healthz"},
		{":9091", ":9090", "http://127.0.0.1:9091/healthz"},
		{"0.0.0.0:8081", ":8080", "http://127.0.0.1:8081/healthz"},
		{"[::]:8081", ":8080", "http://127.0.0.1:8081/healthz"},
		{"127.0.0.1:7000", ":8080", "http://127.0.0.1:7000/healthz"},
		{"10.1.2.3:7000", ":8080", "http://10.1.2.3:7000/healthz"},
		{"[::1]:7000", ":8080", "http://[::1]:7000/healthz"},
		{"nonsense", ":8080", "http://nonsense/healthz"},
	} {
		if got := LocalURL(tc.addr, tc.def); got != tc.want {
			t.Errorf("LocalURL(%q, %q) = %q, want %q", tc.addr, tc.def, got, tc.want)
		}
	}
}

func TestRun(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(http.StatusNoContent)
		case "/down":
			http.Error(w, "draining", http.StatusServiceUnavailable)
		case "/slow":
			time.Sleep(500 * time.Millisecond)
		}
	}))
	defer srv.Close()

	// A port nobody listens on: bind one, note it, release it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/healthz"
	l.Close()

	for _, tc := range []struct {
		name, url string
		want      int
		msg       string
	}{
		{"2xx", srv.URL + "/ok", 0, ""},
		{"503", srv.URL + "/down", 1, "503"},
		{"refused", closed, 1, "refused"},
		{"timeout", srv.URL + "/slow", 1, "Timeout"},
		{"bad url", "http://nonsense/healthz", 1, "healthcheck:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if got := run(tc.url, 100*time.Millisecond, &out); got != tc.want {
				t.Fatalf("run(%s) = %d, want %d (%s)", tc.url, got, tc.want, out.String())
			}
			if !strings.Contains(out.String(), tc.msg) {
				t.Errorf("message %q does not mention %q", out.String(), tc.msg)
			}
		})
	}
	if got := Run(srv.URL + "/ok"); got != 0 {
		t.Errorf("Run = %d, want 0", got)
	}
}
