package target

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// FuzzParse checks --target URL[=weight]: an accepted target is an absolute
// http(s) URL with a host and a positive weight, and writing it back as
// URL=weight parses to the same target (unless the URL ends in a query key
// with no value, which then takes the '='); a refused one is quoted in the
// error.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"http://a", "http://a:80=3", "https://a/?sleep_ms=10", "http://a/?sleep_ms=10=3",
		"http://a/?a=1&b=2", "http://a/?x=0", "http://a=0", "http://a=-3", "http://a=1.5",
		"http://a=99999999999999999999", "ftp://a", "http://:80", "http://a:0", "a:80",
		"http://[::1]:8080/p=2", "http://a/#frag=2", "=3", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := Parse(s)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(s)) {
				t.Fatalf("error %q does not quote the target %q", err, s)
			}
			return
		}
		if tg.Weight < 1 {
			t.Fatalf("%q: weight %d", s, tg.Weight)
		}
		u, err := url.Parse(tg.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			t.Fatalf("%q: accepted URL %q", s, tg.URL)
		}
		written := tg.URL + "=" + strconv.Itoa(tg.Weight)
		want := tg
		if endsInQueryKey(tg.URL) {
			// "…?b=3" is the query b=3 at weight 1 (see Parse): such a URL
			// takes a weight only as "…?b=3=2".
			want = Target{URL: written, Weight: 1}
		}
		again, err := Parse(written)
		if err != nil || again != want {
			t.Fatalf("%q: %+v does not round-trip: %+v, %v", s, tg, again, err)
		}
	})
}
