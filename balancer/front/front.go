// Package front is the balancer's front door: it sends each request to the
// pool that serves its Host and path, and swaps whole configurations when
// the pool file changes.
//
// The routing table (balancer/route) is built once per configuration and
// read by every request through one atomic pointer load: no lock on the
// request path, and a request already routed keeps the pool it got while
// a reload replaces or removes that pool. A reload builds the new pools
// beside the old ones, starts them, swaps the table, and only then drains
// and stops what it dropped (as Caddy swaps configurations).
package front

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"lbscale/balancer/accesslog"
	"lbscale/balancer/admin"
	"lbscale/balancer/config"
	"lbscale/balancer/route"
)

// Spec is one pool of a configuration: its settings and its routes.
type Spec struct {
	Cfg   config.Config // Cfg.Pool is the pool's name
	Hosts []string
	Paths []string
}

// routing is what one configuration serves: the table and its pools in
// file order. It is immutable once published.
type routing struct {
	table *route.Table[*Pool]
	pools []*Pool
}

// Door routes requests to pools. Apply installs a configuration; the
// zero value is not usable, call NewDoor.
type Door struct {
	deps  Deps
	drain time.Duration
	cur   atomic.Pointer[routing]

	// mu serialises Apply and Close, and guards gen.
	mu  sync.Mutex
	gen int
	// closing counts pools dropped by a reload that are still draining.
	closing sync.WaitGroup
}

// NewDoor returns a door with no pool (every request gets 404) until the
// first Apply. drain bounds how long a dropped pool may take to finish
// the requests it holds (SHUTDOWN_TIMEOUT).
func NewDoor(d Deps, drain time.Duration) *Door {
	door := &Door{deps: d, drain: drain}
	t, _ := route.New(nil, func(string) *Pool { return nil }) // no rule: cannot fail
	door.cur.Store(&routing{table: t})
	return door
}

// ServeHTTP routes r to its pool; a request no pool serves gets 404 with
// a body that tells nothing about the configuration.
func (d *Door) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, ok := d.cur.Load().table.Match(r.Host, r.URL.Path)
	if !ok {
		start := time.Now()
		h := w.Header()
		h["Content-Type"] = plainText
		h["X-Content-Type-Options"] = noSniff
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write(notFound)
		if d.deps.AccessLog != nil {
			d.deps.AccessLog.Log(&accesslog.Entry{Time: start, ID: r.Header.Get("X-Request-Id"), Client: r.RemoteAddr,
				Method: r.Method, Host: r.Host, Path: r.URL.Path, Query: r.URL.RawQuery, Proto: r.Proto,
				Status: http.StatusNotFound, BytesOut: int64(len(notFound)), Duration: time.Since(start), UserAgent: r.UserAgent()})
		}
		return
	}
	p.ServeHTTP(w, r)
}

var (
	plainText = []string{"text/plain; charset=utf-8"}
	noSniff   = []string{"nosniff"}
	notFound  = []byte("404 not found\n")
)

// Pools lists the pools being served, in configuration order.
func (d *Door) Pools() []*Pool { return d.cur.Load().pools }

// AdminPools is Pools as the admin port reports them.
func (d *Door) AdminPools() []admin.Pool {
	pools := d.Pools()
	out := make([]admin.Pool, len(pools))
	for i, p := range pools {
		out[i] = p.Admin()
	}
	return out
}

// Apply installs specs: a pool whose settings did not change keeps
// running as it is (its routes may change), a new or changed one is built
// and started, and the table is swapped in one store. Pools that were
// dropped or replaced then drain in the background and stop. On an error
// (an invalid route, a pool that cannot be built) nothing changes.
func (d *Door) Apply(ctx context.Context, specs []Spec) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	old := d.cur.Load()
	byName := make(map[string]*Pool, len(old.pools))
	for _, p := range old.pools {
		byName[p.Name] = p
	}
	d.gen++
	next := make(map[string]*Pool, len(specs))
	// Pools built for a configuration that is then refused never ran:
	// nothing of them needs stopping.
	var order []*Pool
	var built []*Pool
	rules := make([]route.Rule, 0, len(specs))
	for _, s := range specs {
		name := s.Cfg.Pool
		if _, dup := next[name]; dup {
			return fmt.Errorf("pool %s: defined twice", name)
		}
		p := byName[name]
		if p == nil || !reflect.DeepEqual(p.Cfg, s.Cfg) {
			gen := 0
			if p != nil {
				gen = d.gen
			}
			np, err := NewPool(d.deps, s.Cfg, gen)
			if err != nil {
				return fmt.Errorf("pool %s: %w", name, err)
			}
			built = append(built, np)
			p = np
		}
		next[name] = p
		order = append(order, p)
		rules = append(rules, route.Rule{Pool: name, Hosts: s.Hosts, Paths: s.Paths})
	}
	table, err := route.New(rules, func(name string) *Pool { return next[name] })
	if err != nil {
		return err
	}
	var dropped []*Pool
	for _, p := range old.pools {
		if next[p.Name] != p {
			dropped = append(dropped, p)
			// Its series go now, before the new copy's come in under the
			// same pool label; it keeps counting, unexported, while it
			// drains.
			p.unregister()
		}
	}
	for _, p := range built {
		if err := p.register(); err != nil {
			d.deps.Log.Error("pool metrics not registered", "pool", p.Name, "err", err)
		}
		p.Start(ctx)
	}
	d.cur.Store(&routing{table: table, pools: order})
	for _, p := range dropped {
		d.closing.Add(1)
		go func() {
			defer d.closing.Done()
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.drain)
			defer cancel()
			p.Close(cctx)
			d.deps.Log.Info("pool stopped", "pool", p.Name)
		}()
	}
	return nil
}

// Close stops every pool once its requests are answered or ctx ends;
// call it after the listeners stopped taking requests.
func (d *Door) Close(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cur := d.cur.Load()
	var wg sync.WaitGroup
	for _, p := range cur.pools {
		wg.Add(1)
		go func() { defer wg.Done(); p.unregister(); p.Close(ctx) }()
	}
	wg.Wait()
	d.closing.Wait()
}
