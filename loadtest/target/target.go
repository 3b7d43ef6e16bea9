// Package target parses --target arguments and splits traffic among them.
//
// The split is a smooth weighted round robin (the nginx algorithm): it is
// deterministic, so a 9:1 split is exactly 90/10 over every 10 requests and a
// run is reproducible, and it interleaves targets instead of sending nine in a
// row to one, so each balancer sees an even arrival stream.
package target

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Target is one URL to load and its share of the traffic.
type Target struct {
	URL    string
	Weight int
}

// numeric matches what the user meant as a weight suffix, valid or not, so
// "=0", "=-3" and "=1.5" are rejected rather than read as part of the URL.
var numeric = regexp.MustCompile(`^[-+]?[0-9]*\.?[0-9]+$`)

// Parse reads "URL" or "URL=weight". The weight is split off at the last '='
// when what follows it is a number and the '=' does not belong to the query:
// "…/?sleep_ms=10" is a URL of weight 1, "…/?sleep_ms=10=3" the same URL of
// weight 3.
func Parse(s string) (Target, error) {
	raw, weight := s, 1
	if i := strings.LastIndexByte(s, '='); i >= 0 && numeric.MatchString(s[i+1:]) && !endsInQueryKey(s[:i]) {
		w, err := strconv.Atoi(s[i+1:])
		if err != nil || w <= 0 {
			return Target{}, fmt.Errorf("target %q: weight %q must be a positive integer", s, s[i+1:])
		}
		raw, weight = s[:i], w
	}
	if err := CheckURL(raw); err != nil {
		return Target{}, fmt.Errorf("target %q: %w", s, err)
	}
	return Target{URL: raw, Weight: weight}, nil
}

// endsInQueryKey reports whether u ends in a query parameter that has no
// value yet ("…?a=1&b"): an '=' after it is that parameter's, not a weight's.
// An empty key ("…?", "…&") is no parameter, and past a '#' the text is the
// fragment: an '=' after either is a weight's, so that URL=weight always
// reads back as URL and weight.
func endsInQueryKey(u string) bool {
	q := strings.IndexByte(u, '?')
	if q < 0 || strings.IndexByte(u, '#') >= 0 {
		return false
	}
	query := u[q+1:]
	last := query[strings.LastIndexByte(query, '&')+1:]
	return last != "" && !strings.Contains(last, "=")
}

// CheckURL accepts absolute http and https URLs with a host.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bad URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("bad URL %q: scheme must be http or https", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("bad URL %q: no host", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("bad URL %q: port must be 1-65535", raw)
		}
	}
	return nil
}

// Picker chooses the target of each request. It is safe for concurrent use
// (closed-loop users share one) and allocates nothing per pick.
type Picker struct {
	mu      sync.Mutex
	weights []int
	current []int
	total   int
}

// NewPicker returns a picker over ts, which must be non-empty with positive
// weights (Parse guarantees both).
func NewPicker(ts []Target) *Picker {
	p := &Picker{weights: make([]int, len(ts)), current: make([]int, len(ts))}
	for i, t := range ts {
		p.weights[i] = t.Weight
		p.total += t.Weight
	}
	return p
}

// Pick returns the index of the next target.
func (p *Picker) Pick() int {
	if len(p.weights) == 1 {
		return 0
	}
	p.mu.Lock()
	best := 0
	for i, w := range p.weights {
		p.current[i] += w
		if p.current[i] > p.current[best] {
			best = i
		}
	}
	p.current[best] -= p.total
	p.mu.Unlock()
	return best
}
