package driver_test

import (
	"regexp"
	"strings"
	"testing"

	"lbscale/scaler/driver"
)

func TestNewNameSaysWhatItIs(t *testing.T) {
	re := regexp.MustCompile(`^lbscale-blue-web-[0-9a-f]{8}$`)
	a, b := driver.NewName("blue"), driver.NewName("blue")
	if !re.MatchString(a) || a == b {
		t.Fatalf("names %q, %q", a, b)
	}
}

func TestHostnameFitsTheLimit(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"web-1", "web-1"},
		{strings.Repeat("a", 63), strings.Repeat("a", 63)},
		{strings.Repeat("b", 70), strings.Repeat("b", 63)},
	} {
		if got := driver.Hostname(tc.in); got != tc.want {
			t.Errorf("Hostname(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
