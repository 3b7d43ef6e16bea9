// Package redisstore is the state.Store of a cluster: the registry, counts,
// grants, demand and lease of every balancer and scaler of a pool, in Redis
// (one server, or whatever go-redis's UniversalClient reaches). The Lua
// scripts beside it keep each multi-key step atomic; all of a pool's keys
// share one hash tag, so each script touches one slot.
package redisstore

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"lbscale/internal/state"
)

// Store is the cluster's state.Store, in Redis.
//
// Why slot grants: MAX_INFLIGHT must hold for the sum over balancers, yet
// the request path may not wait on Redis. So each balancer holds a grant of
// each backend's slots and never exceeds it locally; the grants of live
// balancers never sum past the limit, hence neither do their requests. The
// sync script (sync.lua) recomputes this balancer's grant at every sync,
// atomically, from everyone's demand. A grant only grows once Redis has
// recorded it and only shrinks (pool.Backend.ShrinkGrant) before Redis is
// told, so at every instant local in-flight <= local grant <= recorded grant.
type Store struct {
	rdb  redis.UniversalClient
	keys state.Keys
	conn Conn // zero for NewClient; names the server in Ping's error
	// borrowed: rdb belongs to the Store ForPool was called on, which
	// closes it; Close leaves it open.
	borrowed bool

	mu      sync.Mutex
	views   map[string]*view  // balancer id -> what it has told and read
	reports map[string]string // balancer id -> its last report's backends, as written

	sent struct{ items, counts atomic.Uint64 } // backends sent by syncs, for Sent
}

// Sent reports how many backends this store's syncs have sent to Redis:
// items with the grant arithmetic (grants, floors, wants, last-seen times,
// backends gone) and counts alone. With the number of syncs it checks the
// cost model (see sync.go) against what Redis measures.
func (s *Store) Sent() (items, counts uint64) { return s.sent.items.Load(), s.sent.counts.Load() }

var (
	//go:embed sync.lua
	syncSrc    string
	syncScript = redis.NewScript(scriptPrelude() + syncSrc)
	//go:embed lease.lua
	leaseSrc    string
	leaseScript = redis.NewScript(leaseSrc)
	// releaseScript deletes the lease only if holder still has it.
	releaseScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)
)

// New connects to url (no TLS files) for pool; NewConn with
// Conn{URL: url}.
func New(url, pool string) (*Store, error) {
	return NewConn(Conn{URL: url}, pool)
}

// NewConn connects to conn for pool. Timeouts are short: a sync that
// cannot reach Redis should fail fast so the balancer carries on with local
// counts. It does not dial: Ping tells whether the connection works.
func NewConn(conn Conn, pool string) (*Store, error) {
	opt, err := conn.Options()
	if err != nil {
		return nil, err
	}
	opt.SetTimeouts(500*time.Millisecond, 1)
	s := NewClient(opt.NewClient(), pool)
	s.conn = conn
	return s, nil
}

// NewClient wraps an existing client (a Sentinel or Cluster client works
// unchanged: every key of a pool shares one hash slot).
func NewClient(rdb redis.UniversalClient, pool string) *Store {
	return &Store{rdb: rdb, keys: state.NewKeys(pool), views: map[string]*view{}, reports: map[string]string{}}
}

// Ping checks that Redis answers and accepts the credentials, for a
// start-up log line. Its error says what to change when the cause is a
// misconfiguration (wrong password, certificate not trusted, TLS on one
// side only, client certificate missing); it never carries the password.
func (s *Store) Ping(ctx context.Context) error {
	err := s.rdb.Ping(ctx).Err()
	if err == nil {
		return nil
	}
	if s.conn.TLS() && isTimeout(err) && speaksPlainRESP(s.conn) {
		// A plain server reads the ClientHello as an unfinished inline
		// command and never answers: the handshake only times out.
		err = &hintError{err: err, hint: "the server answers plain RESP on this port, not TLS: use redis://, or its TLS port"}
	} else {
		err = explain(err, s.conn.TLS())
	}
	return fmt.Errorf("ping redis %s: %w", s.conn, err)
}

// Keys returns the store's key names (for tests and tooling).
func (s *Store) Keys() state.Keys { return s.keys }

// Backends implements Registry.
func (s *Store) Backends(ctx context.Context) ([]state.Backend, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.Registry()).Result()
	if err != nil {
		return nil, fmt.Errorf("read registry: %w", err)
	}
	return decodeRegistry(m), nil
}

// decodeRegistry turns the registry hash into entries sorted by id. An entry
// that does not decode (another version's format, a hand edit) becomes an
// Invalid one rather than an error: failing the whole read would make every
// balancer think Redis is down, and the scaler's reconcile repairs it.
func decodeRegistry(m map[string]string) []state.Backend {
	out := make([]state.Backend, 0, len(m))
	for id, v := range m {
		b, err := decodeBackend(id, v)
		if err != nil {
			b = state.Backend{ID: id, State: state.Invalid}
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// decodeBackend decodes registry field id with value v. Valid JSON is not
// enough: a state balancers do not know, a routable entry (ready, draining)
// whose address they could not dial, or a weight outside 0..MaxWeight is
// refused too, since the balancer would act on it.
func decodeBackend(id, v string) (state.Backend, error) {
	var b state.Backend
	if err := json.Unmarshal([]byte(v), &b); err != nil {
		return state.Backend{}, fmt.Errorf("registry entry %q: %w", id, err)
	}
	b.ID = id
	switch b.State {
	case state.Starting, state.Ready, state.Draining:
	default:
		return state.Backend{}, fmt.Errorf("registry entry %q: unknown state %q", id, b.State)
	}
	if b.State != state.Starting || b.Addr != "" {
		host, port, err := net.SplitHostPort(b.Addr)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return state.Backend{}, fmt.Errorf("registry entry %q: address %q is not host:port", id, b.Addr)
		}
	}
	if b.Weight < 0 || b.Weight > state.MaxWeight {
		return state.Backend{}, fmt.Errorf("registry entry %q: weight %d is not from 0 to %d", id, b.Weight, state.MaxWeight)
	}
	return b, nil
}

// PutBackend implements Registry.
func (s *Store) PutBackend(ctx context.Context, b state.Backend) error {
	v, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("encode backend %s: %w", b.ID, err)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.keys.Registry(), b.ID, v)
		p.Set(ctx, s.keys.RegistryOwned(), "1", 0)
		p.Incr(ctx, s.keys.RegistryVersion())
		return nil
	})
	if err != nil {
		return fmt.Errorf("register backend %s: %w", b.ID, err)
	}
	return nil
}

// RemoveBackend implements Registry. It is a script because a removed
// backend's place in the in-flight sums is given back when nothing is in
// flight or granted on it, which takes a read and a write in one step.
func (s *Store) RemoveBackend(ctx context.Context, id string) error {
	if err := syncScript.Run(ctx, s.rdb, s.scriptKeys(), "remove", s.keys.BalancerPrefix(), id).Err(); err != nil {
		return fmt.Errorf("unregister backend %s: %w", id, err)
	}
	return nil
}

func demandMessage(balancer string, queued int64) string {
	return balancer + " " + strconv.FormatInt(queued, 10)
}

// parseRate reads a published rate or time; anything unusable (a balancer
// of an older version, a hand edit) reads as 0, never as a negative, NaN or
// infinite figure that would poison the scaler's sums.
func parseRate(v string) float64 {
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
		return 0
	}
	return f
}

func errShape(raw []any, want int) error {
	if raw != nil && len(raw) != want {
		return fmt.Errorf("reply has %d parts, want %d", len(raw), want)
	}
	return nil
}

// PublishDemand implements Store.
func (s *Store) PublishDemand(ctx context.Context, balancer string, queued int64) error {
	if err := s.rdb.Publish(ctx, s.keys.DemandChannel(), demandMessage(balancer, queued)).Err(); err != nil {
		return fmt.Errorf("publish demand: %w", err)
	}
	return nil
}

// Demand implements Store. go-redis resubscribes by itself after a
// connection loss; signals sent meanwhile are lost, which the scaler's
// polling covers.
func (s *Store) Demand(ctx context.Context) <-chan int64 {
	out := make(chan int64, 16)
	sub := s.rdb.Subscribe(ctx, s.keys.DemandChannel())
	go func() {
		defer close(out)
		defer sub.Close()
		ch := sub.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case msg, ok := <-ch:
				if !ok {
					return
				}
				_, q, _ := strings.Cut(msg.Payload, " ")
				n, err := strconv.ParseInt(q, 10, 64)
				if err != nil {
					continue
				}
				select {
				case out <- n:
				default: // the scaler is busy; it polls as well
				}
			}
		}
	}()
	return out
}

// AcquireLease implements Store.
func (s *Store) AcquireLease(ctx context.Context, holder string, ttl time.Duration) (state.Lease, error) {
	v, err := leaseScript.Run(ctx, s.rdb, []string{s.keys.Leader()}, holder, ttl.Milliseconds()).Slice()
	if err != nil {
		return state.Lease{}, fmt.Errorf("acquire lease for %s: %w", holder, err)
	}
	if len(v) != 2 {
		return state.Lease{}, fmt.Errorf("acquire lease for %s: script answered %v", holder, v)
	}
	who, _ := v[0].(string)
	ms, _ := v[1].(int64)
	return state.Lease{Holder: who, Left: time.Duration(max(ms, 0)) * time.Millisecond}, nil
}

// ReleaseLease implements Store.
func (s *Store) ReleaseLease(ctx context.Context, holder string) error {
	if err := releaseScript.Run(ctx, s.rdb, []string{s.keys.Leader()}, holder).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("release lease for %s: %w", holder, err)
	}
	return nil
}

// ForPool returns a Store for another pool over the same client: a scaler
// running many pools keeps one connection pool to Redis, not one per pool.
// Closing the returned Store leaves the client open; it is closed with s.
func (s *Store) ForPool(pool string) *Store {
	p := NewClient(s.rdb, pool)
	p.conn, p.borrowed = s.conn, true
	return p
}

// Close implements Store. A Store from ForPool closes nothing.
func (s *Store) Close() error {
	if s.borrowed {
		return nil
	}
	return s.rdb.Close()
}
