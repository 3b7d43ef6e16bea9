package policy

import (
	"net/http"
	"strings"
)

// The helpers below read request keys by slicing the header strings the
// server already holds: http.Request.Cookie and net.SplitHostPort allocate
// (a parsed cookie slice, an error value), and a pick must not.

// clientIP is the client's address without the port: the first
// X-Forwarded-For hop when trustForwarded (the balancer sits behind another
// proxy that sets it), else r.RemoteAddr.
func clientIP(r *http.Request, trustForwarded bool) string {
	if trustForwarded {
		if vs := r.Header["X-Forwarded-For"]; len(vs) > 0 {
			first, _, _ := strings.Cut(vs[0], ",")
			if first = strings.TrimSpace(first); first != "" {
				return first
			}
		}
	}
	return hostOnly(r.RemoteAddr)
}

// hostOnly strips the port from host:port, [v6]:port; a bare address (IPv4
// or IPv6, no port) is returned as is.
func hostOnly(addr string) string {
	if strings.HasPrefix(addr, "[") {
		if end := strings.IndexByte(addr, ']'); end > 0 {
			return addr[1:end]
		}
		return addr
	}
	if i := strings.IndexByte(addr, ':'); i >= 0 && strings.LastIndexByte(addr, ':') == i {
		return addr[:i]
	}
	return addr
}

// cookieValue returns the value of the first cookie called name, unquoted;
// ok is false when there is none or it is empty. HTTP/2 clients may split
// cookies over several Cookie header lines, so every line is read.
func cookieValue(h http.Header, name string) (value string, ok bool) {
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, v, found := strings.Cut(strings.TrimSpace(part), "=")
			if !found || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, v != ""
		}
	}
	return "", false
}
