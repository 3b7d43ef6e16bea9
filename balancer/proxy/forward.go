package proxy

import (
	"net"
	"net/http"
	"strings"
	"unsafe"
)

// forward sets the four forwarding headers a backend reads to learn who
// asked and how (RFC 7239's Forwarded, and X-Forwarded-For, -Host and
// -Proto) by one rule for all four:
//
//   - By default lbscale is the edge: what a client says in these headers
//     is not believed (anyone can send them), so all four are dropped and
//     set afresh from the connection: for= and X-Forwarded-For the
//     client's address, host= and X-Forwarded-Host the Host it asked for
//     (none when it named none, as an HTTP/1.0 request may), proto= and
//     X-Forwarded-Proto http or https.
//   - With TrustForwarded (TRUST_FORWARDED_FOR), every client comes
//     through a proxy of one's own, whose headers are kept: the balancer
//     appends its peer to X-Forwarded-For and an element to Forwarded, and
//     sets X-Forwarded-Host and -Proto only where they are missing.
//
// ReverseProxy's Rewrite has dropped all four from out already. The values
// point into the attempt (a client's address and host are substrings of
// the request's own strings), so the common case allocates nothing.
func (h *Handler) forward(a *attempt, in, out *http.Request) {
	ip, _, err := net.SplitHostPort(in.RemoteAddr)
	if err != nil {
		ip = "" // not an address (a test's recorder): no for=
	}
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	if a.fwd[0] == "" { // once per request: a retry sends the same
		a.fwd[0] = a.forwardedElement(ip, in.Host, proto)
	}
	hdr := out.Header
	if !h.o.TrustForwarded {
		if ip != "" {
			a.xff[0] = ip
			hdr["X-Forwarded-For"] = a.xff[:]
		}
		if in.Host != "" {
			a.xfh[0] = in.Host
			hdr["X-Forwarded-Host"] = a.xfh[:]
		}
		a.xfp[0] = proto
		hdr["X-Forwarded-Proto"] = a.xfp[:]
		hdr["Forwarded"] = a.fwd[:]
		return
	}
	if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 && ip != "" {
		hdr["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + ip}
	} else if len(prior) > 0 {
		hdr["X-Forwarded-For"] = prior
	} else if ip != "" {
		a.xff[0] = ip
		hdr["X-Forwarded-For"] = a.xff[:]
	}
	if v := in.Header["X-Forwarded-Host"]; len(v) > 0 {
		hdr["X-Forwarded-Host"] = v
	} else if in.Host != "" {
		a.xfh[0] = in.Host
		hdr["X-Forwarded-Host"] = a.xfh[:]
	}
	if v := in.Header["X-Forwarded-Proto"]; len(v) > 0 {
		hdr["X-Forwarded-Proto"] = v
	} else {
		a.xfp[0] = proto
		hdr["X-Forwarded-Proto"] = a.xfp[:]
	}
	if prior := in.Header["Forwarded"]; len(prior) > 0 {
		hdr["Forwarded"] = append(prior[:len(prior):len(prior)], a.fwd[0])
	} else {
		hdr["Forwarded"] = a.fwd[:]
	}
}

// forwardedElement is this hop's Forwarded element, for=ip;host=h;proto=p
// (RFC 7239 section 4), with a value quoted where it is not a token (an
// IPv6 address goes in brackets and quotes; a host with a port is
// quoted). It is built in the attempt's buffer when it fits.
func (a *attempt) forwardedElement(ip, host, proto string) string {
	b := a.fwdBuf[:0]
	sep := false
	if ip != "" {
		b = append(b, "for="...)
		if strings.IndexByte(ip, ':') >= 0 {
			b = append(b, `"[`...)
			b = append(b, ip...)
			b = append(b, `]"`...)
		} else {
			b = append(b, ip...)
		}
		sep = true
	}
	if host != "" {
		if sep {
			b = append(b, ';')
		}
		b = append(b, "host="...)
		b = appendForwardedValue(b, host)
		sep = true
	}
	if sep {
		b = append(b, ';')
	}
	b = append(b, "proto="...)
	b = append(b, proto...)
	if len(b) <= len(a.fwdBuf) && &b[0] == &a.fwdBuf[0] {
		// The buffer is written once per request (forward's a.fwd check),
		// so the string's bytes never change.
		return unsafe.String(&b[0], len(b))
	}
	return string(b)
}

// appendForwardedValue appends v as a token, or as a quoted string when it
// is not one (RFC 7230's tchar; a quoted string escapes " and \).
func appendForwardedValue(b []byte, v string) []byte {
	token := v != ""
	for i := 0; i < len(v) && token; i++ {
		token = isTchar(v[i])
	}
	if token {
		return append(b, v...)
	}
	b = append(b, '"')
	for i := 0; i < len(v); i++ {
		if v[i] == '"' || v[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, v[i])
	}
	return append(b, '"')
}

func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
