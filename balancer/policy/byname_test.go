package policy_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"lbscale/balancer/policy"
)

func TestNew(t *testing.T) {
	// The LB_POLICY names of the contract in DESIGN.md.
	contract := []string{"round-robin", "weighted-round-robin", "random", "least-connections",
		"least-loaded", "p2c", "consistent-hash", "sticky", "least-latency"}
	if got := policy.Names(); !slices.Equal(got, contract) {
		t.Fatalf("Names() = %v, want %v", got, contract)
	}
	policy.Names()[0] = "mutated"
	if policy.Names()[0] != "round-robin" {
		t.Fatal("Names shares its slice with callers")
	}
	for _, name := range contract {
		if p, err := policy.New(name, policy.Options{}); err != nil || p == nil {
			t.Errorf("New(%q) = %v, %v", name, p, err)
		}
	}

	_, err := policy.New("fastest", policy.Options{})
	if !errors.Is(err, policy.ErrUnknown) {
		t.Fatalf("unknown name: %v, want ErrUnknown", err)
	}
	for _, name := range contract {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not list %s", err, name)
		}
	}

	bad := []struct {
		name string
		opts policy.Options
	}{
		{"consistent-hash", policy.Options{HashKey: "query:x"}},
		{"consistent-hash", policy.Options{HashKey: "header:"}},
		{"consistent-hash", policy.Options{HashLoadFactor: 0.9}},
		{"sticky", policy.Options{StickyCookie: "a b"}},
	}
	for _, tc := range bad {
		if _, err := policy.New(tc.name, tc.opts); err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("New(%q, %+v) = %v, want an error naming the policy", tc.name, tc.opts, err)
		}
	}
	// Options of other policies are not checked.
	if _, err := policy.New("round-robin", policy.Options{HashKey: "query:x", StickyCookie: "a b"}); err != nil {
		t.Errorf("round-robin rejected options it does not use: %v", err)
	}
}

func TestNewSeedReproducible(t *testing.T) {
	set := setOf(1, newBackends(8, 10)...)
	for _, name := range []string{"random", "p2c", "least-connections", "least-loaded"} {
		a := sequence(newPolicy(t, name, policy.Options{Seed: 99}), set, 40)
		b := sequence(newPolicy(t, name, policy.Options{Seed: 99}), set, 40)
		c := sequence(newPolicy(t, name, policy.Options{Rand: seeded(5)}), set, 40)
		if a != b {
			t.Errorf("%s: seed 99 gave %q then %q", name, a, b)
		}
		if a == c {
			t.Errorf("%s: seed 99 and another source gave the same 40 picks", name)
		}
	}
}
