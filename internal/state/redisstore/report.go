package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"lbscale/internal/state"
)

// A report is stored as a hash of two JSON documents: "s", its scalars,
// rewritten every time, and "b", the per-backend counters, rewritten only
// when they changed (never at rest). A document is written and read whole,
// so a reader never sees half of one, and Redis copies a string instead of
// updating a field per backend. The report's time is its score in the
// Reports set.
type reportScalars struct {
	Sync     int64   `json:"sync,omitempty"` // unix ms of the last successful sync
	Up       bool    `json:"up,omitempty"`
	Queued   int64   `json:"q,omitempty"`
	Arrivals float64 `json:"a,omitempty"`
}

type backendReport struct {
	ID       string `json:"id"`
	Local    int64  `json:"i,omitempty"`
	Limit    int64  `json:"l,omitempty"`
	Served   uint64 `json:"n,omitempty"`
	Failures uint64 `json:"f,omitempty"`
	Busy     int64  `json:"t,omitempty"` // nanoseconds
	Conns    int64  `json:"c,omitempty"`
}

// PutReport implements state.Reports. The backends' document is written
// only when it differs from the balancer's previous one, or when that one
// is gone (it expired, or Redis lost it).
func (s *Store) PutReport(ctx context.Context, r state.Report) error {
	sc := reportScalars{Up: r.StoreUp, Queued: r.Queued, Arrivals: math.Round(r.Arrivals*1000) / 1000}
	if !r.LastSync.IsZero() {
		sc.Sync = r.LastSync.UnixMilli()
	}
	bs := make([]backendReport, 0, len(r.Backends))
	for _, b := range r.Backends {
		bs = append(bs, backendReport{ID: b.ID, Local: b.Local, Limit: b.Limit, Served: b.Served, Failures: b.Failures, Busy: int64(b.Busy), Conns: b.Conns})
	}
	scalars, err := json.Marshal(sc)
	if err != nil {
		return fmt.Errorf("put report of %s: %w", r.Balancer, err)
	}
	backends, err := json.Marshal(bs)
	if err != nil {
		return fmt.Errorf("put report of %s: %w", r.Balancer, err)
	}
	s.mu.Lock()
	same := s.reports[r.Balancer] == string(backends)
	delete(s.reports, r.Balancer) // restored only after a write that worked
	s.mu.Unlock()
	key := s.keys.Report(r.Balancer)
	var kept *redis.BoolCmd
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		// Before the write: false when the previous report is gone.
		kept = p.PExpire(ctx, key, state.ReportKeep)
		if same {
			p.HSet(ctx, key, "s", scalars)
		} else {
			p.HSet(ctx, key, "s", scalars, "b", backends)
		}
		p.PExpire(ctx, key, state.ReportKeep)
		p.ZAdd(ctx, s.keys.Reports(), redis.Z{Score: float64(r.At.UnixMilli()), Member: r.Balancer})
		return nil
	})
	if err != nil {
		return fmt.Errorf("put report of %s: %w", r.Balancer, err)
	}
	if !same || kept.Val() {
		s.mu.Lock()
		s.reports[r.Balancer] = string(backends)
		s.mu.Unlock()
	}
	return nil
}

// Reports implements state.Reports.
func (s *Store) Reports(ctx context.Context) ([]state.Report, error) {
	now, err := s.rdb.Time(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("read reports: %w", err)
	}
	old := strconv.FormatInt(now.Add(-state.ReportKeep).UnixMilli(), 10)
	var list *redis.ZSliceCmd
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRemRangeByScore(ctx, s.keys.Reports(), "-inf", "("+old)
		list = p.ZRangeWithScores(ctx, s.keys.Reports(), 0, -1)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read reports: %w", err)
	}
	zs := list.Val()
	cmds := make([]*redis.MapStringStringCmd, len(zs))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, z := range zs {
			cmds[i] = p.HGetAll(ctx, s.keys.Report(fmt.Sprint(z.Member)))
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read reports: %w", err)
	}
	out := make([]state.Report, 0, len(zs))
	for i, z := range zs {
		h := cmds[i].Val()
		if len(h) == 0 {
			continue // expired between the two reads
		}
		out = append(out, decodeReport(fmt.Sprint(z.Member), int64(z.Score), h))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Balancer < out[j].Balancer })
	return out, nil
}

// decodeReport reads a stored report written at ms; a document it cannot
// read (a hand edit, another version) reads as empty rather than failing
// the whole dashboard.
func decodeReport(id string, ms int64, h map[string]string) state.Report {
	r := state.Report{Balancer: id, At: time.UnixMilli(ms)}
	var sc reportScalars
	if json.Unmarshal([]byte(h["s"]), &sc) == nil {
		r.StoreUp, r.Queued, r.Arrivals = sc.Up, sc.Queued, max(sc.Arrivals, 0) // JSON carries no NaN or infinity
		if sc.Sync > 0 {
			r.LastSync = time.UnixMilli(sc.Sync)
		}
	}
	var bs []backendReport
	if json.Unmarshal([]byte(h["b"]), &bs) == nil {
		for _, b := range bs {
			r.Backends = append(r.Backends, state.BackendReport{ID: b.ID, Local: b.Local, Limit: b.Limit, Served: b.Served, Failures: b.Failures,
				Busy: time.Duration(b.Busy), Conns: b.Conns})
		}
	}
	return r
}

// PutSummary implements state.Summaries.
func (s *Store) PutSummary(ctx context.Context, doc []byte, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, s.keys.Summary(), doc, ttl).Err(); err != nil {
		return fmt.Errorf("put summary: %w", err)
	}
	return nil
}

// Summary implements state.Summaries.
func (s *Store) Summary(ctx context.Context) ([]byte, error) {
	b, err := s.rdb.Get(ctx, s.keys.Summary()).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read summary: %w", err)
	}
	return b, nil
}
