package schedule

import (
	"strings"
	"testing"
)

// FuzzRead checks the --profile-file parser: a file is refused with an error
// or yields a profile that Validate accepts, starts at 0 and integrates to a
// finite, non-negative request count.
func FuzzRead(f *testing.F) {
	for _, s := range []string{
		"time,rate\n0,10\n30s,10\n",
		"0,0\n10,100\n10,5\n20,5\n",
		"# ramp\n\n0,1\n1m,1000\n",
		"0,10\n",
		"1,10\n2,10\n",
		"0,10\n5,10\n4,10\n",
		"0,-1\n1,1\n",
		"0,NaN\n1,1\n",
		"0,1\n1e300,1\n",
		"0,1\n2562047h47m16s,1\n",
		"0,1,2\n",
		"0,0\n1,0\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, err := Read(strings.NewReader(text))
		if err != nil {
			// A negative time in the message means a row's time overflowed:
			// the file has none (a leading '-' is refused as such).
			if msg := err.Error(); msg == "" || strings.Contains(msg, "time -") {
				t.Fatalf("%q: unclear error %q", text, msg)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("%q: Read returned a profile Validate refuses: %v", text, err)
		}
		if p[0].Start != 0 || p.Duration() <= 0 {
			t.Fatalf("%q: profile %+v does not start at 0 and run forward", text, p)
		}
		if n := p.Expected(0, p.Duration()); !(n >= 0) || n > 1e300 {
			t.Fatalf("%q: expects %v requests", text, n)
		}
	})
}
