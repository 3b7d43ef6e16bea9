// Package poolfile reads the pool file (LBSCALE_CONFIG): the services one
// lbscale cluster fronts, each a pool with its own image, limits and
// autoscaling, and the hosts and paths that route requests to it.
//
// Balancers and scalers read the same file. A per-pool setting is the
// environment variable's name in lower case (max_inflight, lb_policy,
// stable_window, …), so a pool's configuration is the process environment
// overlaid with the file's defaults and then the pool's own entries
// (Pool.Lookup): each command parses and validates it with its own
// envconf table, exactly as it parses the environment alone, and an error
// naming a variable is turned back into the file, line and key that set it
// (Pool.Explain). Without LBSCALE_CONFIG one pool comes from the
// environment (Single), so the single-pool product is the same code path.
//
// A Config is an immutable value: a reload parses a new one beside the old
// and the commands swap whole configurations (Watch).
package poolfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// EnvConfig names the pool file.
const EnvConfig = "LBSCALE_CONFIG"

// Settings are the per-pool settings a pool file may give, as environment
// variable names; the file spells each in lower case. The balancer and the
// scaler each read the ones their tables declare (a test in each command
// holds the two tables to this list). Process-wide settings — listen
// addresses, Redis, TLS, the client edge, the network the containers
// join — are not per pool.
var Settings = []string{
	// The balancers' request path.
	"LB_POLICY", "HASH_KEY", "HASH_LOAD_FACTOR", "STICKY_COOKIE", "TRUST_FORWARDED_FOR",
	"MAX_INFLIGHT", "QUEUE_MAX", "QUEUE_TIMEOUT", "SHARE_STATE", "SYNC_INTERVAL", "BACKENDS",
	"HEALTH_INTERVAL", "HEALTH_PATH", "SLOW_START", "UPSTREAM_TIMEOUT", "LOAD_INTERVAL",
	"RETRY_ON", "RETRY_BUDGET_PERCENT", "RETRY_MIN_CONCURRENCY", "LATENCY_DECAY",
	"OUTLIER_CONSECUTIVE_5XX", "OUTLIER_BASE_EJECTION", "OUTLIER_MAX_EJECTION", "OUTLIER_MAX_EJECTION_PERCENT",
	"MAX_CONNECTIONS", "STREAM_AFTER",
	// The scalers' containers and autoscaling.
	"WEB_IMAGE", "WEB_PORT", "WEB_ENV", "WEB_CONSTRAINTS", "CPU_LIMIT", "MEMORY_LIMIT",
	"MIN_REPLICAS", "MAX_REPLICAS", "TARGET_INFLIGHT", "SCALE_UP_COOLDOWN", "IDLE_TIMEOUT",
	"SCALE_DOWN_INTERVAL", "DRAIN_TIMEOUT", "DRAIN_SETTLE", "STOP_GRACE", "HEALTH_TIMEOUT",
	"SCALE_DOWN", "STABLE_WINDOW", "PANIC_WINDOW", "MAX_SCALE_DOWN_RATE", "BACKLOG_DRAIN",
	"LATENCY_TARGET",
	"TARGET_CONNECTIONS", "CONNECTION_DRAIN",
	"MIN_SCHEDULE", "FORECAST", "FORECAST_BUCKET", "FORECAST_PERIOD", "FORECAST_DAYS",
	// The scalers' deploys.
	"DEPLOY_SURGE", "DEPLOY_CANARY_REQUESTS", "DEPLOY_CANARY_TIME", "DEPLOY_MAX_ERROR_RATE", "DEPLOY_MAX_LATENCY",
}

// The file's own spellings: image, port and env are the short names of
// WEB_IMAGE, WEB_PORT and WEB_ENV (env is a mapping there); hosts and
// paths are routes, not settings.
const (
	keyHosts = "hosts"
	keyPaths = "paths"
	keyEnv   = "env"
	envPool  = "POOL"
)

var aliases = map[string]string{"image": "WEB_IMAGE", "port": "WEB_PORT", keyEnv: "WEB_ENV"}

// poolName is what a pool may be called: it becomes a container label
// value, a Redis hash tag and a Prometheus label value.
var poolName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)

// Pool is one pool as the file gives it, defaults merged.
type Pool struct {
	Name  string
	Hosts []string // Host match; empty: any host
	Paths []string // path prefixes; empty: /
	// Settings maps a variable name to the file's value for this pool
	// (its own entry, else the file's defaults). Variables not here come
	// from the environment.
	Settings map[string]string
	// where maps a variable name to "file:line: key" of the entry that set
	// it, for errors.
	where map[string]string
}

// Config is a whole pool file: its pools in file order.
type Config struct {
	// File is the pool file's path; empty when the pools come from the
	// environment.
	File  string
	Pools []Pool
}

// Single is the configuration without a pool file: one pool, named name
// (POOL), any host and path, every setting from the environment.
func Single(name string) Config {
	return Config{Pools: []Pool{{Name: name, Settings: map[string]string{}}}}
}

// Lookup is env overlaid with the pool's settings: what a command's
// envconf table reads for this pool. POOL is the pool's name, and
// LBSCALE_CONFIG is unset (a pool is not itself a pool file).
func (p Pool) Lookup(env func(string) (string, bool)) func(string) (string, bool) {
	return func(name string) (string, bool) {
		switch name {
		case envPool:
			return p.Name, true
		case EnvConfig:
			return "", false
		}
		if v, ok := p.Settings[name]; ok {
			return v, true
		}
		return env(name)
	}
}

// Explain rewrites an error from reading the pool's configuration: each
// line that names a variable the file set gets the file, line and key in
// front ("pools.yml:12: pools.api.max_inflight: MAX_INFLIGHT: …"); lines
// about variables from the environment keep their form.
func (p Pool) Explain(err error) error {
	if err == nil || len(p.where) == 0 {
		return err
	}
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		name, _, ok := strings.Cut(l, ":")
		if w, set := p.where[name]; ok && set {
			lines[i] = w + ": " + l
		}
	}
	return errors.New(strings.Join(lines, "\n"))
}

// Names lists the pools' names in file order.
func (c Config) Names() []string {
	names := make([]string, len(c.Pools))
	for i, p := range c.Pools {
		names[i] = p.Name
	}
	return names
}

// Pool returns the pool called name.
func (c Config) Pool(name string) (Pool, bool) {
	for _, p := range c.Pools {
		if p.Name == name {
			return p, true
		}
	}
	return Pool{}, false
}

// Equal reports whether a and b configure the pool alike: same routes and
// same settings. A reload keeps what is equal as it runs.
func (p Pool) Equal(q Pool) bool {
	return p.Name == q.Name && slices.Equal(p.Hosts, q.Hosts) && slices.Equal(p.Paths, q.Paths) && p.SameSettings(q)
}

// SameSettings reports whether p and q have the same settings (routes
// aside): a change of routes alone needs no new pool, only a new table.
func (p Pool) SameSettings(q Pool) bool {
	if len(p.Settings) != len(q.Settings) {
		return false
	}
	for k, v := range p.Settings {
		if w, ok := q.Settings[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Load reads and parses the pool file at path.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("pool file: %w", err)
	}
	return Parse(path, data)
}

// Parse reads a pool file's contents; file names it in errors. Every
// problem is reported, each as "file:line: key: what is wrong".
func Parse(file string, data []byte) (Config, error) {
	p := parser{file: file}
	c := p.parse(data)
	if len(p.errs) > 0 {
		return Config{}, errors.Join(p.errs...)
	}
	c.File = file
	return c, nil
}

type parser struct {
	file string
	errs []error
}

func (p *parser) fail(n *yaml.Node, key, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, fmt.Errorf("%s:%d: %s: %s", p.file, line, key, fmt.Sprintf(format, args...)))
}

func (p *parser) parse(data []byte) Config {
	var doc yaml.Node
	err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc)
	if errors.Is(err, io.EOF) {
		p.fail(nil, "(top)", "the file is empty; want pools: with at least one pool")
		return Config{}
	}
	if err != nil {
		// yaml's own message carries "line N".
		p.errs = append(p.errs, fmt.Errorf("%s: %w", p.file, err))
		return Config{}
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		p.fail(&doc, "(top)", "want a mapping with pools: (and optionally defaults:)")
		return Config{}
	}
	var defaults map[string]entry
	var pools *yaml.Node
	for k, v := range pairs(doc.Content[0]) {
		switch k.Value {
		case "defaults":
			defaults = p.settings(v, "defaults", false)
		case "pools":
			pools = v
		default:
			p.fail(k, k.Value, "unknown key (want defaults or pools)")
		}
	}
	if pools == nil || pools.Kind != yaml.MappingNode || len(pools.Content) == 0 {
		p.fail(pools, "pools", "want a mapping of at least one pool")
		return Config{}
	}
	var c Config
	seen := map[string]bool{}
	for k, v := range pairs(pools) {
		name := k.Value
		switch {
		case !poolName.MatchString(name):
			p.fail(k, "pools."+name, "pool name must be lower-case letters, digits, '-', '_' or '.', starting with a letter or digit (at most 63)")
			continue
		case seen[name]:
			p.fail(k, "pools."+name, "pool defined twice")
			continue
		}
		seen[name] = true
		c.Pools = append(c.Pools, p.pool(name, v, defaults))
	}
	return c
}

// entry is one setting's value and where it was written.
type entry struct {
	value string
	where string
}

func (p *parser) pool(name string, n *yaml.Node, defaults map[string]entry) Pool {
	pool := Pool{Name: name, Settings: map[string]string{}, where: map[string]string{}}
	for k, e := range defaults {
		pool.Settings[k], pool.where[k] = e.value, e.where
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return pool // "name:" alone: every setting from defaults and env
	}
	for k, e := range p.settings(n, "pools."+name, true) {
		pool.Settings[k], pool.where[k] = e.value, e.where
	}
	if n.Kind == yaml.MappingNode {
		for k, v := range pairs(n) {
			switch k.Value {
			case keyHosts:
				pool.Hosts = p.strings(v, "pools."+name+"."+keyHosts)
			case keyPaths:
				pool.Paths = p.strings(v, "pools."+name+"."+keyPaths)
			}
		}
	}
	return pool
}

// settings reads a mapping of settings (a pool's, or defaults); routes
// are read by the caller when allowed.
func (p *parser) settings(n *yaml.Node, at string, routes bool) map[string]entry {
	if n.Kind != yaml.MappingNode {
		p.fail(n, at, "want a mapping of settings")
		return nil
	}
	out := map[string]entry{}
	seen := map[string]bool{}
	for k, v := range pairs(n) {
		key := at + "." + k.Value
		if seen[k.Value] {
			p.fail(k, key, "set twice")
			continue
		}
		seen[k.Value] = true
		if k.Value == keyHosts || k.Value == keyPaths {
			if !routes {
				p.fail(k, key, "routes belong to a pool, not to defaults")
			}
			continue
		}
		name, ok := aliases[k.Value]
		if !ok {
			name = strings.ToUpper(k.Value)
			if k.Value != strings.ToLower(k.Value) || !slices.Contains(Settings, name) {
				p.fail(k, key, "unknown setting (per-pool settings are %s, image, port, env, hosts, paths)", lowerList())
				continue
			}
		}
		where := fmt.Sprintf("%s:%d: %s", p.file, k.Line, key)
		if k.Value == keyEnv {
			if val, ok := p.env(v, key); ok {
				out[name] = entry{val, where}
			}
			continue
		}
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			p.fail(v, key, "want a single value")
			continue
		}
		out[name] = entry{v.Value, where}
	}
	return out
}

// env reads a pool's env mapping into WEB_ENV's KEY=VALUE,… form.
func (p *parser) env(n *yaml.Node, at string) (string, bool) {
	if n.Kind != yaml.MappingNode {
		p.fail(n, at, "want a mapping of NAME: value")
		return "", false
	}
	var items []string
	ok := true
	for k, v := range pairs(n) {
		switch {
		case k.Value == "" || strings.ContainsAny(k.Value, "=, \t"):
			p.fail(k, at+"."+k.Value, "not a variable name")
			ok = false
		case v.Kind != yaml.ScalarNode:
			p.fail(v, at+"."+k.Value, "want a single value")
			ok = false
		case strings.Contains(v.Value, ","):
			// WEB_ENV is a comma-separated list.
			p.fail(v, at+"."+k.Value, "a value may not contain a comma")
			ok = false
		default:
			items = append(items, k.Value+"="+v.Value)
		}
	}
	return strings.Join(items, ","), ok
}

// strings reads a list of strings (one string alone is a list of one).
func (p *parser) strings(n *yaml.Node, at string) []string {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return []string{n.Value}
	}
	if n.Kind != yaml.SequenceNode {
		p.fail(n, at, "want a list of strings")
		return nil
	}
	var out []string
	for _, item := range n.Content {
		if item.Kind != yaml.ScalarNode || item.Value == "" {
			p.fail(item, at, "want a non-empty string")
			continue
		}
		out = append(out, item.Value)
	}
	return out
}

// pairs walks a mapping node's keys and values.
func pairs(n *yaml.Node) func(yield func(k, v *yaml.Node) bool) {
	return func(yield func(k, v *yaml.Node) bool) {
		if n == nil || n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !yield(n.Content[i], n.Content[i+1]) {
				return
			}
		}
	}
}

func lowerList() string {
	var out []string
	for _, s := range Settings {
		switch s {
		case "WEB_IMAGE", "WEB_PORT", "WEB_ENV":
			continue
		}
		out = append(out, strings.ToLower(s))
	}
	return strings.Join(out, ", ")
}

// Read is the configuration a command starts with: the pool file that
// LBSCALE_CONFIG names, else one pool from the environment, named by POOL
// (default defPool). data is the file's contents (nil without a file), for
// a Watcher's Prime.
func Read(env func(string) (string, bool), defPool string) (c Config, data []byte, err error) {
	path, _ := env(EnvConfig)
	if path = strings.TrimSpace(path); path == "" {
		name, ok := env(envPool)
		if name = strings.TrimSpace(name); !ok || name == "" {
			name = defPool
		}
		return Single(name), nil, nil
	}
	if data, err = os.ReadFile(path); err != nil {
		return Config{}, nil, fmt.Errorf("%s: %w", EnvConfig, err)
	}
	c, err = Parse(path, data)
	return c, data, err
}

// Each reads every pool's configuration with load (a command's config.Load
// over p.Lookup of the environment). Every pool's problems are reported at
// once, each line explained by the file, line and key that set the value
// (Explain); a line that several pools share (an environment variable's)
// is reported once.
func Each[T any](c Config, load func(Pool) (T, error)) ([]T, error) {
	var out []T
	var lines []string
	for _, p := range c.Pools {
		v, err := load(p)
		if err != nil {
			for _, l := range strings.Split(p.Explain(err).Error(), "\n") {
				if !slices.Contains(lines, l) {
					lines = append(lines, l)
				}
			}
			continue
		}
		out = append(out, v)
	}
	if len(lines) > 0 {
		return nil, errors.New(strings.Join(lines, "\n"))
	}
	return out, nil
}
