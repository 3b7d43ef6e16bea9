package accesslog

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fullEntry has every field set, with values that need escaping where a
// client controls them.
func fullEntry() Entry {
	return Entry{
		Time:        time.Date(2025, 3, 4, 5, 6, 7, 891_234_567, time.FixedZone("CET", 3600)),
		ID:          "req-0001",
		Client:      "[2001:db8::1]:51234",
		Method:      "POST",
		Host:        "api.example.com",
		Path:        `/a "quoted"\path`,
		Query:       "token=s3cr3t&x=1",
		Proto:       "HTTP/2.0",
		Status:      502,
		BytesIn:     1 << 40,
		BytesOut:    12345,
		Duration:    1234567 * time.Nanosecond,
		Queue:       250 * time.Millisecond,
		ColdStart:   2*time.Second + 500*time.Microsecond,
		Upstream:    999 * time.Microsecond,
		Pool:        "web",
		Backend:     "web-3",
		Attempts:    3,
		RetryReason: "connect refused",
		TLS:         "TLS 1.3",
		UserAgent:   "curl/8.5\x00\tü",
		TraceID:     "4bf92f3577b34da6a3ce929d0e0e4736",
	}
}

// record is the line as a consumer decodes it, with encoding/json.
type record struct {
	Time        time.Time `json:"time"`
	RequestID   string    `json:"request_id"`
	Client      string    `json:"client"`
	Method      string    `json:"method"`
	Host        string    `json:"host"`
	Path        string    `json:"path"`
	Query       *string   `json:"query"`
	Proto       string    `json:"proto"`
	Status      int       `json:"status"`
	BytesIn     int64     `json:"bytes_in"`
	BytesOut    int64     `json:"bytes_out"`
	DurationMS  float64   `json:"duration_ms"`
	QueueMS     float64   `json:"queue_ms"`
	ColdStartMS float64   `json:"cold_start_ms"`
	UpstreamMS  float64   `json:"upstream_ms"`
	Pool        string    `json:"pool"`
	Backend     string    `json:"backend"`
	Attempts    int       `json:"attempts"`
	RetryReason string    `json:"retry_reason"`
	TLS         string    `json:"tls"`
	UserAgent   string    `json:"user_agent"`
	TraceID     string    `json:"trace_id"`
}

func decodeLine(t *testing.T, line []byte) record {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var r record
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("decode %q: %v", line, err)
	}
	return r
}

// keys lists the object's keys in the order they appear.
func keys(t *testing.T, line []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("decode %q: %v", line, err)
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	// Order them by position in the line (each key is unique and quoted).
	pos := func(k string) int { return bytes.Index(line, []byte(`"`+k+`":`)) }
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && pos(out[j]) < pos(out[j-1]); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

func checkRoundTrip(t *testing.T, e Entry, r record, keepQuery bool) {
	t.Helper()
	if want := e.Time.UTC().Truncate(time.Millisecond); !r.Time.Equal(want) {
		t.Errorf("time = %v, want %v", r.Time, want)
	}
	str := []struct{ name, got, want string }{
		{"request_id", r.RequestID, e.ID},
		{"client", r.Client, e.Client},
		{"method", r.Method, e.Method},
		{"host", r.Host, e.Host},
		{"path", r.Path, e.Path},
		{"proto", r.Proto, e.Proto},
		{"pool", r.Pool, e.Pool},
		{"backend", r.Backend, e.Backend},
		{"retry_reason", r.RetryReason, e.RetryReason},
		{"tls", r.TLS, e.TLS},
		{"user_agent", r.UserAgent, e.UserAgent},
		{"trace_id", r.TraceID, e.TraceID},
	}
	for _, s := range str {
		if s.got != s.want {
			t.Errorf("%s = %q, want %q", s.name, s.got, s.want)
		}
	}
	wantQuery := e.Query
	if !keepQuery && e.Query != "" {
		wantQuery = redacted
	}
	switch {
	case e.Query == "" && r.Query != nil:
		t.Errorf("query = %q, want no query field", *r.Query)
	case e.Query != "" && (r.Query == nil || *r.Query != wantQuery):
		t.Errorf("query = %v, want %q", r.Query, wantQuery)
	}
	if r.Status != e.Status || r.BytesIn != e.BytesIn || r.BytesOut != e.BytesOut || r.Attempts != e.Attempts {
		t.Errorf("numbers = %d %d %d %d, want %d %d %d %d",
			r.Status, r.BytesIn, r.BytesOut, r.Attempts, e.Status, e.BytesIn, e.BytesOut, e.Attempts)
	}
	durs := []struct {
		name string
		got  float64
		want time.Duration
	}{
		{"duration_ms", r.DurationMS, e.Duration},
		{"queue_ms", r.QueueMS, e.Queue},
		{"cold_start_ms", r.ColdStartMS, e.ColdStart},
		{"upstream_ms", r.UpstreamMS, e.Upstream},
	}
	for _, d := range durs {
		if d.got != ms(d.want) {
			t.Errorf("%s = %v, want %v", d.name, d.got, ms(d.want))
		}
	}
}

func TestAppendEntryRoundTrip(t *testing.T) {
	e := fullEntry()
	for _, keep := range []bool{true, false} {
		line := appendEntry(nil, &e, keep)
		if !bytes.HasSuffix(line, []byte("}\n")) || bytes.Count(line, []byte("\n")) != 1 {
			t.Fatalf("not one line: %q", line)
		}
		checkRoundTrip(t, e, decodeLine(t, line), keep)
	}
}

func TestAppendEntryFields(t *testing.T) {
	all := []string{"time", "request_id", "client", "method", "host", "path", "query", "proto",
		"status", "bytes_in", "bytes_out", "duration_ms", "queue_ms", "cold_start_ms", "upstream_ms",
		"pool", "backend", "attempts", "retry_reason", "tls", "user_agent", "trace_id"}
	without := func(drop ...string) []string {
		var out []string
	next:
		for _, k := range all {
			for _, d := range drop {
				if k == d {
					continue next
				}
			}
			out = append(out, k)
		}
		return out
	}
	full := fullEntry()
	bare := full
	bare.Query, bare.RetryReason, bare.TLS, bare.TraceID = "", "", "", ""
	for _, tc := range []struct {
		name string
		e    Entry
		keep bool
		want []string
	}{
		{"all set, query kept", full, true, all},
		{"all set, query redacted", full, false, all},
		{"optional fields empty", bare, true, without("query", "retry_reason", "tls", "trace_id")},
		{"zero entry", Entry{}, false, without("query", "retry_reason", "tls", "trace_id")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line := appendEntry(nil, &tc.e, tc.keep)
			got := keys(t, line)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("keys\n got %v\nwant %v", got, tc.want)
			}
			checkRoundTrip(t, tc.e, decodeLine(t, line), tc.keep)
		})
	}
}

func TestAppendEntryQuery(t *testing.T) {
	for _, tc := range []struct {
		query string
		keep  bool
		want  string // the query field in the line, "" for none
	}{
		{"a=1&b=2", true, `"query":"a=1&b=2"`},
		{"token=secret", false, `"query":"REDACTED"`},
		{"", true, ""},
		{"", false, ""},
	} {
		e := Entry{Query: tc.query}
		line := string(appendEntry(nil, &e, tc.keep))
		has := strings.Contains(line, `"query":`)
		if tc.want == "" && has || tc.want != "" && !strings.Contains(line, tc.want) {
			t.Errorf("query %q keep=%v: line %s, want %q", tc.query, tc.keep, line, tc.want)
		}
		if strings.Contains(tc.query, "secret") && strings.Contains(line, "secret") {
			t.Errorf("redacted query leaked: %s", line)
		}
	}
}

func TestAppendEntryTime(t *testing.T) {
	e := Entry{Time: time.Date(2025, 12, 31, 23, 59, 59, 999_999_999, time.FixedZone("X", -5*3600))}
	line := string(appendEntry(nil, &e, false))
	if want := `{"time":"2026-01-01T04:59:59.999Z",`; !strings.HasPrefix(line, want) {
		t.Errorf("line %s, want prefix %s", line, want)
	}
}

func TestAppendMillis(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0.000"},
		{1, "0.000"},
		{499, "0.000"},
		{500, "0.001"},
		{time.Microsecond, "0.001"},
		{1234567, "1.235"},
		{1500 * time.Microsecond, "1.500"},
		{999_999_499, "999.999"},
		{999_999_500, "1000.000"},
		{2 * time.Hour, "7200000.000"},
		{-1500 * time.Microsecond, "-1.500"},
		{math.MaxInt64, "9223372036854.776"},
		{math.MinInt64, "-9223372036854.776"},
	} {
		if got := string(appendMillis(nil, tc.d)); got != tc.want {
			t.Errorf("appendMillis(%d) = %s, want %s", int64(tc.d), got, tc.want)
		}
	}
}

func TestAppendString(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"", `""`},
		{"plain /path?x", `"plain /path?x"`},
		{`say "hi"`, `"say \"hi\""`},
		{`C:\dir\`, `"C:\\dir\\"`},
		{"a\nb\rc\td\be\ff", `"a\nb\rc\td\be\ff"`},
		{"\x00\x01\x1f\x7f", `"\u0000\u0001\u001f` + "\x7f\""},
		{"ünïcødé ✓ 😀", `"ünïcødé ✓ 😀"`},
		{"bad\xffbyte", `"bad\ufffdbyte"`},
		{"\xc3", `"\ufffd"`},                     // truncated two-byte sequence
		{"\xc3(", `"\ufffd("`},                   // bad continuation
		{"\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`}, // UTF-8-encoded surrogate
		{"\xf0\x9f\x98", `"\ufffd\ufffd\ufffd"`}, // truncated four-byte sequence
		{"\xc0\xaf", `"\ufffd\ufffd"`},           // overlong '/'
		{"</script>&", `"</script>&"`},           // no HTML escaping needed in a log
		{"\u2028\ufffd", "\"\u2028\ufffd\""},     // valid runes pass through
		{"x\"\\\n\xff", `"x\"\\\n\ufffd"`},       // mixed
		{strings.Repeat("é", 3), `"` + strings.Repeat("é", 3) + `"`},
	} {
		got := string(appendString(nil, tc.in))
		if got != tc.want {
			t.Errorf("appendString(%q) = %s, want %s", tc.in, got, tc.want)
		}
		checkDecodes(t, tc.in, got)
	}
}

// checkDecodes checks that enc is valid JSON and UTF-8 and that it decodes
// to in, with each invalid byte of in replaced by U+FFFD (as []rune does).
func checkDecodes(t *testing.T, in, enc string) {
	t.Helper()
	if !utf8.ValidString(enc) {
		t.Errorf("encoding of %q is not valid UTF-8: %q", in, enc)
	}
	var dec string
	if err := json.Unmarshal([]byte(enc), &dec); err != nil {
		t.Errorf("encoding of %q does not decode: %v (%q)", in, err, enc)
		return
	}
	if want := string([]rune(in)); dec != want {
		t.Errorf("encoding of %q decodes to %q, want %q", in, dec, want)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\x00\xff", "\xed\xa0\x80", "😀\\", "\xf4\x90\x80\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkDecodes(t, s, string(appendString(nil, s)))
	})
}
