// Package envconftest holds the check the config loaders' tests share:
// an error from envconf names the variable it is about.
package envconftest

import (
	"slices"
	"strings"
	"testing"
)

// CheckNamed fails t unless every error joined in err starts with one of
// the known variable names and a colon (envconf's "NAME: problem" form),
// and err mentions name somewhere.
func CheckNamed(t testing.TB, err error, name string, known []string) {
	t.Helper()
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		if v, _, ok := strings.Cut(e.Error(), ": "); !ok || !slices.Contains(known, v) {
			t.Fatalf("error %q does not start with a variable name", e)
		}
	}
	if !strings.Contains(err.Error(), name) {
		t.Fatalf("error %q does not name %s", err, name)
	}
}
