package adminauth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"lbscale/internal/adminauth"
)

func TestBearer(t *testing.T) {
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, tc := range []struct {
		token, header string
		want          int
	}{
		{"", "", http.StatusOK},
		{"", "Bearer anything", http.StatusOK},
		{"s3cret", "", http.StatusUnauthorized},
		{"s3cret", "Bearer nope", http.StatusUnauthorized},
		{"s3cret", "bearer s3cret", http.StatusUnauthorized},
		{"s3cret", "Bearer s3cret ", http.StatusUnauthorized},
		{"s3cret", "Bearer s3cret", http.StatusOK},
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/status", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		adminauth.Bearer(tc.token)(ok).ServeHTTP(w, r)
		if w.Code != tc.want || (w.Code == http.StatusUnauthorized) != (w.Header().Get("WWW-Authenticate") != "") {
			t.Errorf("token %q, Authorization %q: %d (WWW-Authenticate %q), want %d", tc.token, tc.header, w.Code, w.Header().Get("WWW-Authenticate"), tc.want)
		}
	}
}
