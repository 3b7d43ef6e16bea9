// Package envconf reads a command's configuration from environment variables.
//
// Every lbscale command declares its variables once, in a Table (name,
// default, range, meaning), and loads one config struct through a Reader
// of that table, so that the rule "an invalid value stops the program at
// start-up with a message naming the variable" is implemented once, -h
// prints the table, and a test holds docs/configuration.md to it. A Reader collects every error instead of
// stopping at the first, so a user fixing a compose file sees all mistakes at
// once.
package envconf

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// ExitCode is the status a command exits with when its configuration is
// invalid (the design's contract: invalid values exit with status 2).
const ExitCode = 2

// Reader reads a command's variables, as its Table declares them, from a
// lookup function, and remembers the errors.
type Reader struct {
	lookup func(string) (string, bool)
	vars   map[string]*Var
	errs   []error
}

// New returns a Reader of the variables vars declares, over lookup; pass
// os.LookupEnv in main (nil means the same) and a map in tests.
func New(lookup func(string) (string, bool), vars Table) *Reader {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	r := &Reader{lookup: lookup, vars: make(map[string]*Var, len(vars))}
	for i := range vars {
		r.vars[vars[i].Name] = &vars[i]
	}
	return r
}

// FromMap adapts a map to the lookup signature, for tests.
func FromMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// Err returns every problem found so far joined into one error, or nil.
func (r *Reader) Err() error { return errors.Join(r.errs...) }

// Fail records a problem with variable name that the caller found itself
// (a cross-field rule, say).
func (r *Reader) Fail(name, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

// v is name's declaration. A read of a variable the table does not
// declare is a mistake in the command, not in its input: it panics, and
// every command's Load test finds it.
func (r *Reader) v(name string) *Var {
	v, ok := r.vars[name]
	if !ok {
		panic("envconf: " + name + " is read but not declared in the command's table")
	}
	return v
}

func (r *Reader) raw(name string) (string, bool) {
	v, ok := r.lookup(name)
	if !ok {
		return "", false
	}
	v = strings.TrimSpace(v)
	return v, v != ""
}

// String returns the value of name, or its default when unset or empty.
func (r *Reader) String(name string) string {
	def, _ := r.v(name).Default.(string)
	return r.StringOr(name, def)
}

// StringOr is String with a default worked out at start-up (the host's
// name, say), which the table documents in Shown.
func (r *Reader) StringOr(name, def string) string {
	r.v(name)
	if v, ok := r.raw(name); ok {
		return v
	}
	return def
}

// OneOf returns the value of name, which must be one of the table's OneOf.
func (r *Reader) OneOf(name string) string {
	d := r.v(name)
	v := r.String(name)
	for _, a := range d.OneOf {
		if v == a {
			return v
		}
	}
	r.Fail(name, "%q is not one of %s", v, strings.Join(d.OneOf, ", "))
	def, _ := d.Default.(string)
	return def
}

// Int returns the integer value of name within the table's Min and Max.
func (r *Reader) Int(name string) int {
	def, _ := r.v(name).Default.(int)
	return r.IntOr(name, def)
}

// IntOr is Int with a default worked out at start-up (another variable's
// value, say), which the table documents in Shown.
func (r *Reader) IntOr(name string, def int) int {
	d := r.v(name)
	lo, hi := d.Min.(int), d.Max.(int)
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.Fail(name, "%q is not a whole number from %d to %d", v, lo, hi)
		return def
	}
	return n
}

// Float returns the value of name within the table's Min and Max.
func (r *Reader) Float(name string) float64 {
	d := r.v(name)
	def, _ := d.Default.(float64)
	lo, hi := d.Min.(float64), d.Max.(float64)
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	// NaN passes both range comparisons, so it is refused by name.
	if err != nil || math.IsNaN(f) || f < lo || f > hi {
		r.Fail(name, "%q is not a number from %g to %g", v, lo, hi)
		return def
	}
	return f
}

// Bool returns the boolean value of name (true/false/1/0/yes/no/on/off).
func (r *Reader) Bool(name string) bool {
	def, _ := r.v(name).Default.(bool)
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true
	case "0", "false", "no", "off":
		return false
	}
	r.Fail(name, "%q is not a boolean (true or false)", v)
	return def
}

// Duration returns the Go duration value of name within the table's Min
// and Max.
func (r *Reader) Duration(name string) time.Duration {
	d := r.v(name)
	def, _ := d.Default.(time.Duration)
	lo, hi := d.Min.(time.Duration), d.Max.(time.Duration)
	v, ok := r.raw(name)
	if !ok {
		return def
	}
	x, err := time.ParseDuration(v)
	if err != nil || x < lo || x > hi {
		r.Fail(name, "%q is not a Go duration from %s to %s (e.g. 250ms, 2m)", v, lo, hi)
		return def
	}
	return x
}

// URL returns the value of name parsed as an absolute URL with one of
// the table's OneOf schemes.
func (r *Reader) URL(name string) string {
	d := r.v(name)
	v := r.String(name)
	def, _ := d.Default.(string)
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || u.Host == "" {
		r.Fail(name, "%q is not a URL like %s://host:port", v, d.OneOf[0])
		return def
	}
	for _, s := range d.OneOf {
		if u.Scheme == s {
			return v
		}
	}
	r.Fail(name, "%q has scheme %q, want one of %s", v, u.Scheme, strings.Join(d.OneOf, ", "))
	return def
}

// HostPort checks that v is host:port with a numeric port (host may be
// empty); a scheme, a path or blanks are refused, since "http://a:80" would
// otherwise pass and fail on every request instead of at start-up.
func HostPort(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%q is not host:port", v)
	}
	if strings.ContainsAny(host, "/ \t@?#") {
		return fmt.Errorf("%q is not host:port (no scheme, path or blanks)", v)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("%q has no port from 1 to 65535", v)
	}
	return nil
}

// Addr returns a listen address (":8080", "127.0.0.1:9090").
func (r *Reader) Addr(name string) string {
	def, _ := r.v(name).Default.(string)
	v := r.String(name)
	if err := HostPort(v); err != nil {
		r.Fail(name, "%v", err)
		return def
	}
	return v
}

// List returns the comma-separated items of name with blanks dropped.
func (r *Reader) List(name string) []string {
	r.v(name)
	v, _ := r.raw(name)
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Exit prints err and exits with ExitCode; main calls it when Load fails.
func Exit(command string, err error) {
	fmt.Fprintf(os.Stderr, "%s: invalid configuration:\n%s\n", command, indent(err.Error()))
	os.Exit(ExitCode)
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// Logger returns the commands' structured JSON logger on stderr at level
// (debug, info, warn, error; LOG_LEVEL) and makes it slog's default.
func Logger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(strings.ToUpper(level)))
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
	slog.SetDefault(log)
	return log
}
