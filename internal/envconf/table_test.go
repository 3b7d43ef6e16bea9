package envconf

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDocProblems(t *testing.T) {
	vars := Table{
		{Name: "A_TIMEOUT", Default: 300 * time.Second, Min: time.Millisecond, Max: time.Hour, Help: "a"},
		{Name: "B_COUNT", Default: 4, Min: 1, Max: 10, Help: "b"},
		{Name: "C_ID", Shown: "hostname", Help: "c"},
		{Name: "D_FILE", Help: "d"},
	}
	md := strings.Join([]string{
		"# x", "### other", "| `E_ELSEWHERE` | `1` | not this section |",
		"### cmd", "| variable | default | meaning |", "|---|---|---|",
		"| `A_TIMEOUT` | `300s` | ok |",
		"| `B_COUNT` | `5` | wrong default |",
		"| `C_ID`, `Z_EXTRA` | hostname | C computed; Z not declared |",
		"### next", "| `D_FILE` | — | documented, but under another heading |",
	}, "\n")
	want := []string{
		`B_COUNT: documented default "5", declared "4"`,
		`D_FILE: declared, not documented under "cmd"`,
		`Z_EXTRA: documented under "cmd", not declared`,
	}
	if got := vars.DocProblems(md, "cmd"); !slices.Equal(got, want) {
		t.Errorf("DocProblems:\n got %q\nwant %q", got, want)
	}
}

func TestDefaultAndRangeText(t *testing.T) {
	for _, tc := range []struct {
		v           Var
		def, ranges string
	}{
		{Var{Default: 300 * time.Second, Min: time.Millisecond, Max: 24 * time.Hour}, "300s", "1ms…24h"},
		{Var{Default: 25 * time.Millisecond, Min: time.Duration(0), Max: time.Minute}, "25ms", "0…60s"},
		{Var{Default: 1.25, Min: 1.0, Max: 100.0}, "1.25", "1…100"},
		{Var{Default: 64 << 10, Min: 0, Max: 1 << 20}, "65536", "0…1048576"},
		{Var{Default: true}, "true", "true | false"},
		{Var{Default: "info", OneOf: []string{"debug", "info"}}, "info", "debug | info"},
		{Var{Shown: "hostname-pid"}, "hostname-pid", ""},
		{Var{}, "", ""},
	} {
		if d, r := tc.v.DefaultText(), tc.v.RangeText(); d != tc.def || r != tc.ranges {
			t.Errorf("%+v: default %q range %q, want %q and %q", tc.v, d, r, tc.def, tc.ranges)
		}
	}
}

func TestUsage(t *testing.T) {
	var b bytes.Buffer
	Table{{Name: "MAX_INFLIGHT", Default: 4, Min: 1, Max: 1 << 20, Help: "requests in flight per backend"}}.Usage(&b, "balancer")
	for _, want := range []string{"usage: balancer", "MAX_INFLIGHT", "4", "1…1048576", "requests in flight per backend"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, b.String())
		}
	}
}

// TestUndeclaredReadPanics: reading a variable the table does not declare
// is the command's mistake, found by its first test.
func TestUndeclaredReadPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("a read of an undeclared variable did not panic")
		}
	}()
	New(FromMap(nil), Table{{Name: "DECLARED"}}).String("UNDECLARED")
}
