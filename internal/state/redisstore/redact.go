package redisstore

import (
	"net/url"
	"strings"
)

// redacted stands where a password was, as net/url's URL.Redacted writes it.
const redacted = "xxxxx"

// RedactURL returns raw with every password replaced by xxxxx, for logs
// and error messages: the user info's (a server's, or the Sentinels' in a
// failover URL) and the value of a password= parameter (the primary's, in
// a failover URL). It works on text, not on a parsed URL, so that a URL
// that does not parse (the case that gets reported) is redacted too: the
// user info is everything between "://" and the last "@", and a password=
// value runs to the next "&name=" or the end, which may hide more than
// the password but never less.
func RedactURL(raw string) string {
	raw = redactQuery(raw)
	user, pass, ok := userinfo(raw)
	if !ok || pass == "" {
		return raw
	}
	i := strings.Index(raw, "://") + len("://")
	at := strings.LastIndex(raw, "@")
	return raw[:i] + user + ":" + redacted + raw[at:]
}

// redactQuery replaces the values of password= parameters (any name
// ending in "password") with xxxxx.
func redactQuery(raw string) string {
	start, end, ok := queryPasswords(raw)
	if !ok {
		return raw
	}
	var b strings.Builder
	last := 0
	for i := range start {
		b.WriteString(raw[last:start[i]])
		b.WriteString(redacted)
		last = end[i]
	}
	b.WriteString(raw[last:])
	return b.String()
}

// queryPasswords finds the values of password parameters in raw's query:
// raw[start[i]:end[i]] is one. A value runs to the next "&" that starts
// another name=, so a stray "&" in a password does not end it early.
func queryPasswords(raw string) (start, end []int, ok bool) {
	q := strings.Index(raw, "?")
	if q < 0 {
		return nil, nil, false
	}
	params := splitParams(raw, q+1)
	for i, p := range params {
		name, _, hasValue := strings.Cut(raw[p:], "=")
		name, _, _ = strings.Cut(name, "&")
		if !hasValue || !strings.HasSuffix(strings.ToLower(name), "password") {
			continue
		}
		e := len(raw)
		if i+1 < len(params) {
			e = params[i+1] - 1 // the "&" before the next parameter
		}
		start = append(start, p+len(name)+1)
		end = append(end, e)
	}
	return start, end, len(start) > 0
}

// splitParams returns the offsets in raw, from 'from' on, of each
// parameter that starts with a name and "=": the first one, and each after
// an "&" whose next "=" comes before any other "&".
func splitParams(raw string, from int) []int {
	offsets := []int{from}
	for i := from; i < len(raw); i++ {
		if raw[i] != '&' {
			continue
		}
		rest := raw[i+1:]
		eq, amp := strings.IndexByte(rest, '='), strings.IndexByte(rest, '&')
		if eq > 0 && (amp < 0 || eq < amp) {
			offsets = append(offsets, i+1)
		}
	}
	return offsets
}

// secrets are the passwords in raw, as written and decoded, to scrub from
// a parser's error.
func secrets(raw string) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if d, err := url.QueryUnescape(s); err == nil && d != s {
			out = append(out, d)
		}
	}
	if start, end, ok := queryPasswords(raw); ok {
		for i := range start {
			add(raw[start[i]:end[i]])
		}
	}
	if _, pass, ok := userinfo(redactQuery(raw)); ok {
		add(pass)
	}
	return out
}

// userinfo splits the user info of a URL string at its first colon.
func userinfo(raw string) (user, pass string, ok bool) {
	i := strings.Index(raw, "://")
	if i < 0 {
		return "", "", false
	}
	rest := raw[i+len("://"):]
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return "", "", false
	}
	user, pass, _ = strings.Cut(rest[:at], ":")
	return user, pass, true
}
