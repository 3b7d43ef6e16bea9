package policy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// The LB_POLICY names, in the order docs and error messages list them.
const (
	NameRoundRobin         = "round-robin"
	NameWeightedRoundRobin = "weighted-round-robin"
	NameRandom             = "random"
	NameLeastConnections   = "least-connections"
	NameLeastLoaded        = "least-loaded"
	NameP2C                = "p2c"
	NameConsistentHash     = "consistent-hash"
	NameSticky             = "sticky"
	NameLeastLatency       = "least-latency"
)

var names = []string{
	NameRoundRobin, NameWeightedRoundRobin, NameRandom, NameLeastConnections,
	NameLeastLoaded, NameP2C, NameConsistentHash, NameSticky, NameLeastLatency,
}

// ErrUnknown is returned (wrapped) by New for a name not in Names.
var ErrUnknown = errors.New("unknown policy")

// Names lists the policy names New accepts; the caller owns the slice.
func Names() []string { return append([]string(nil), names...) }

// Options tunes the policies New builds; the zero value gives the defaults.
// Each policy reads only its own fields.
type Options struct {
	// Rand is the randomness of random, p2c and the tie-breaks of
	// least-connections, least-loaded, least-latency and sticky. The policy serialises its
	// use, so it must not be used elsewhere. Nil: a PCG seeded with Seed.
	Rand rand.Source
	// Seed seeds the PCG used when Rand is nil; 0 means a random seed.
	Seed uint64
	// HashKey is consistent-hash's key in HASH_KEY syntax ("ip", "path",
	// "url", "header:<Name>", "cookie:<Name>"); empty means "ip".
	HashKey string
	// TrustForwardedFor makes consistent-hash key client addresses by the
	// first X-Forwarded-For hop (only behind a proxy that sets it).
	TrustForwardedFor bool
	// HashLoadFactor is consistent-hash's bounded-loads factor c (>= 1);
	// 0 means DefaultLoadFactor.
	HashLoadFactor float64
	// StickyCookie is the sticky policy's cookie name; empty means
	// DefaultStickyCookie.
	StickyCookie string
	// LatencyDecay is least-latency's EWMA time constant; 0 means
	// DefaultLatencyDecay.
	LatencyDecay time.Duration
	// Now is least-latency's clock; nil means time.Now.
	Now func() time.Time
}

// New builds the policy called name. An unknown name or an invalid option
// of that policy is an error naming the valid choices.
func New(name string, opts Options) (Policy, error) {
	src := opts.Rand
	if src == nil {
		seed := opts.Seed
		if seed == 0 {
			seed = rand.Uint64()
		}
		src = rand.NewPCG(seed, seed^0x6a09e667f3bcc908)
	}
	switch name {
	case NameRoundRobin:
		return NewRoundRobin(), nil
	case NameWeightedRoundRobin:
		return NewWeightedRoundRobin(), nil
	case NameRandom:
		return NewRandom(src), nil
	case NameLeastConnections:
		return NewLeastConnections(src), nil
	case NameLeastLoaded:
		return NewLeastLoaded(src), nil
	case NameP2C:
		return NewP2C(src), nil
	case NameConsistentHash:
		key, err := ParseHashKey(opts.HashKey)
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", name, err)
		}
		p, err := NewConsistentHash(HashConfig{Key: key, TrustForwardedFor: opts.TrustForwardedFor, LoadFactor: opts.HashLoadFactor})
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", name, err)
		}
		return p, nil
	case NameLeastLatency:
		return NewLeastLatency(src, opts.LatencyDecay, opts.Now), nil
	case NameSticky:
		p, err := NewSticky(opts.StickyCookie, src)
		if err != nil {
			return nil, fmt.Errorf("policy %s: %w", name, err)
		}
		return p, nil
	}
	return nil, fmt.Errorf("%w %q: valid policies are %s", ErrUnknown, name, strings.Join(names, ", "))
}
