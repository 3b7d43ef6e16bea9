package accesslog

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// timeLayout is RFC 3339 with milliseconds; times are converted to UTC
// first, so the zone is always "Z" and lines sort as strings.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// redacted stands in for a query string when Options.KeepQuery is off.
const redacted = "REDACTED"

// appendEntry appends e as one JSON object and a newline. It appends to
// buf and nothing else, so with a buffer of sufficient capacity it does
// not allocate.
func appendEntry(buf []byte, e *Entry, keepQuery bool) []byte {
	buf = append(buf, `{"time":"`...)
	buf = e.Time.UTC().AppendFormat(buf, timeLayout)
	buf = append(buf, '"')
	buf = appendField(buf, "request_id", e.ID)
	buf = appendField(buf, "client", e.Client)
	buf = appendField(buf, "method", e.Method)
	buf = appendField(buf, "host", e.Host)
	buf = appendField(buf, "path", e.Path)
	if e.Query != "" {
		q := redacted
		if keepQuery {
			q = e.Query
		}
		buf = appendField(buf, "query", q)
	}
	buf = appendField(buf, "proto", e.Proto)
	buf = append(buf, `,"status":`...)
	buf = strconv.AppendInt(buf, int64(e.Status), 10)
	buf = append(buf, `,"bytes_in":`...)
	buf = strconv.AppendInt(buf, e.BytesIn, 10)
	buf = append(buf, `,"bytes_out":`...)
	buf = strconv.AppendInt(buf, e.BytesOut, 10)
	buf = append(buf, `,"duration_ms":`...)
	buf = appendMillis(buf, e.Duration)
	buf = append(buf, `,"queue_ms":`...)
	buf = appendMillis(buf, e.Queue)
	buf = append(buf, `,"cold_start_ms":`...)
	buf = appendMillis(buf, e.ColdStart)
	buf = append(buf, `,"upstream_ms":`...)
	buf = appendMillis(buf, e.Upstream)
	buf = appendField(buf, "pool", e.Pool)
	buf = appendField(buf, "backend", e.Backend)
	buf = append(buf, `,"attempts":`...)
	buf = strconv.AppendInt(buf, int64(e.Attempts), 10)
	if e.RetryReason != "" {
		buf = appendField(buf, "retry_reason", e.RetryReason)
	}
	if e.TLS != "" {
		buf = appendField(buf, "tls", e.TLS)
	}
	buf = appendField(buf, "user_agent", e.UserAgent)
	if e.TraceID != "" {
		buf = appendField(buf, "trace_id", e.TraceID)
	}
	return append(buf, '}', '\n')
}

// appendField appends ,"name":"value"; name must need no escaping.
func appendField(buf []byte, name, value string) []byte {
	buf = append(buf, ',', '"')
	buf = append(buf, name...)
	buf = append(buf, '"', ':')
	return appendString(buf, value)
}

// appendMillis appends d in milliseconds with exactly three decimals,
// rounded to the nearest microsecond. It works in integers, so 1.5ms is
// 1.500 and never 1.4999999.
func appendMillis(buf []byte, d time.Duration) []byte {
	// In uint64 so that the most negative Duration negates without overflow.
	u := uint64(d)
	if d < 0 {
		buf = append(buf, '-')
		u = -u
	}
	us := (u + 500) / 1000
	buf = strconv.AppendUint(buf, us/1000, 10)
	frac := us % 1000
	return append(buf, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string per RFC 8259: '"' and '\\' are
// escaped, control characters (U+0000 to U+001F) become \b \f \n \r \t or
// \u00XX, and each byte of invalid UTF-8 becomes \ufffd, so the line is
// valid JSON and valid UTF-8 whatever the client sent. Everything else,
// including valid multi-byte UTF-8, is copied as is.
func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0 // s[start:i] is still to be copied
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch b {
			case '"', '\\':
				buf = append(buf, '\\', b)
			case '\b':
				buf = append(buf, '\\', 'b')
			case '\f':
				buf = append(buf, '\\', 'f')
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
