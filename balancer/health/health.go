// Package health runs the balancer's active health checks and, for the
// least-loaded policy, polls each backend's /load. Both run off the request
// path on their own interval. Passive checks are balancer/outlier's: an
// ejection lasts its time whatever the probes say, and an active verdict of
// down lasts until a probe passes; a backend is picked only when neither
// holds it out.
package health

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"

	"lbscale/balancer/pool"
)

// Checker probes every backend of the current set.
type Checker struct {
	// Sets gives the current pool.
	Sets interface{ Set() *pool.Set }
	// Path of the health endpoint (HEALTH_PATH).
	Path     string
	Interval time.Duration
	// FailAfter consecutive failures mark a backend down (default 2: one
	// lost probe on a busy host is not an outage).
	FailAfter int
	// OnUp is called when a backend comes back (the queue dispatches).
	OnUp   func()
	Client *http.Client

	mu    sync.Mutex
	fails map[*pool.Backend]int
}

// Run checks until ctx ends.
func (c *Checker) Run(ctx context.Context) {
	if c.FailAfter <= 0 {
		c.FailAfter = 2
	}
	if c.Client == nil {
		c.Client = &http.Client{Timeout: min(c.Interval, 2*time.Second)}
	}
	c.fails = map[*pool.Backend]int{}
	t := time.NewTicker(c.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.round(ctx)
	}
}

func (c *Checker) round(ctx context.Context) {
	var wg sync.WaitGroup
	for _, b := range c.Sets.Set().Backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.record(b, c.probe(ctx, b))
		}()
	}
	wg.Wait()
}

func (c *Checker) probe(ctx context.Context, b *pool.Backend) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.URL.String()+c.Path, nil)
	if err != nil {
		return false
	}
	res, err := c.Client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
	res.Body.Close()
	return res.StatusCode >= 200 && res.StatusCode < 300
}

func (c *Checker) record(b *pool.Backend, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		delete(c.fails, b)
		if !b.Healthy() {
			b.SetHealthy(true)
			if c.OnUp != nil {
				c.OnUp()
			}
		}
		return
	}
	c.fails[b]++
	if c.fails[b] >= c.FailAfter {
		b.SetHealthy(false)
	}
}

// LoadPoller reads each backend's utilisation from its /load endpoint for
// the least-loaded policy. Polled, never fetched per request.
type LoadPoller struct {
	Sets     interface{ Set() *pool.Set }
	Interval time.Duration
	Client   *http.Client
}

// Run polls until ctx ends.
func (p *LoadPoller) Run(ctx context.Context) {
	if p.Client == nil {
		p.Client = &http.Client{Timeout: min(p.Interval, 2*time.Second)}
	}
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for {
		for _, b := range p.Sets.Set().Backends {
			if u, ok := p.load(ctx, b); ok {
				b.SetLoad(u)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *LoadPoller) load(ctx context.Context, b *pool.Backend) (float64, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.URL.String()+"/load", nil)
	if err != nil {
		return 0, false
	}
	res, err := p.Client.Do(req)
	if err != nil {
		return 0, false
	}
	defer res.Body.Close()
	var v struct {
		Utilization float64 `json:"utilization"`
		Inflight    float64 `json:"inflight"`
		Capacity    float64 `json:"capacity"`
	}
	if res.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(res.Body, 1<<16)).Decode(&v) != nil {
		return 0, false
	}
	if v.Utilization == 0 && v.Capacity == 0 {
		// Unlimited capacity: the in-flight count is the load. A tiny
		// offset keeps 0 distinguishable from "never polled".
		return v.Inflight + 1e-9, true
	}
	return v.Utilization + 1e-9, true
}
