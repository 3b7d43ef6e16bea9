package main

import (
	"container/list"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// lru is a set of at most size keys that forgets the least recently used
// one to make room: what a backend's object cache holds.
type lru struct {
	size  int
	order *list.List // front: most recently used; values are keys
	at    map[string]*list.Element
}

func newLRU(size int) *lru {
	return &lru{size: size, order: list.New(), at: make(map[string]*list.Element, size)}
}

// touch reports whether key was held, and makes it the most recently used
// when it was.
func (c *lru) touch(key string) bool {
	e, ok := c.at[key]
	if ok {
		c.order.MoveToFront(e)
	}
	return ok
}

// add holds key as the most recently used, evicting the least recently
// used key when full.
func (c *lru) add(key string) {
	if e, ok := c.at[key]; ok {
		c.order.MoveToFront(e)
		return
	}
	if c.order.Len() >= c.size {
		old := c.order.Back()
		c.order.Remove(old)
		delete(c.at, old.Value.(string))
	}
	c.at[key] = c.order.PushFront(key)
}

// cacheBackend is an HTTP server that answers as a cache in front of a
// disk would: fast for a path it holds, slow for one it must read first.
type cacheBackend struct {
	hit, miss time.Duration
	srv       *http.Server
	addr      string

	mu    sync.Mutex // guards cache
	cache *lru

	served atomic.Int64 // object requests answered, health checks not counted
}

// healthPath is the balancer's default HEALTH_PATH; its checks must not
// touch the cache.
const healthPath = "/healthz"

// startCacheBackend listens on a free loopback port and serves until stop.
func startCacheBackend(size int, hit, miss time.Duration) (*cacheBackend, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &cacheBackend{hit: hit, miss: miss, cache: newLRU(size), addr: l.Addr().String()}
	b.srv = &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = b.srv.Serve(l) }()
	return b, nil
}

// ServeHTTP answers after the hit or miss time. A miss joins the cache
// only once read, so requests for the same object that arrive during the
// read miss too (no request coalescing, as a plain disk cache).
func (b *cacheBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == healthPath {
		_, _ = w.Write([]byte("ok\n"))
		return
	}
	b.served.Add(1)
	b.mu.Lock()
	held := b.cache.touch(r.URL.Path)
	b.mu.Unlock()
	if held {
		time.Sleep(b.hit)
		w.Header().Set("X-Cache", "hit")
	} else {
		time.Sleep(b.miss)
		b.mu.Lock()
		b.cache.add(r.URL.Path)
		b.mu.Unlock()
		w.Header().Set("X-Cache", "miss")
	}
	_, _ = w.Write([]byte("object\n"))
}

// stop closes the server and its connections.
func (b *cacheBackend) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
