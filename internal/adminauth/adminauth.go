// Package adminauth guards the admin ports of the balancer and the scaler
// alike: one bearer token, compared in constant time.
package adminauth

import (
	"crypto/subtle"
	"net/http"
)

// Bearer wants "Authorization: Bearer <token>" on every request when token
// is set, and answers 401 otherwise; an empty token lets everything
// through. Both commands' admin ports use it, so both check alike.
func Bearer(token string) func(http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="lbscale"`)
				http.Error(w, "401 unauthorized: ADMIN_TOKEN is set; send Authorization: Bearer <token>", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}
