package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"lbscale/balancer/state"
)

// PutReport implements state.Reports: the report replaces the balancer's
// previous one in one transaction, so a reader never sees half of it.
func (s *Store) PutReport(ctx context.Context, r state.Report) error {
	fields := make([]any, 0, 10+8*len(r.Backends))
	up := "0"
	if r.StoreUp {
		up = "1"
	}
	var sync int64
	if !r.LastSync.IsZero() {
		sync = r.LastSync.UnixMilli()
	}
	fields = append(fields, "at", r.At.UnixMilli(), "sync", sync, "up", up, "q", r.Queued,
		"a", strconv.FormatFloat(r.Arrivals, 'f', 3, 64))
	for _, b := range r.Backends {
		fields = append(fields, "n:"+b.ID, b.Served, "f:"+b.ID, b.Failures, "l:"+b.ID, b.Limit, "i:"+b.ID, b.Local)
	}
	key := s.keys.Report(r.Balancer)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, key)
		p.HSet(ctx, key, fields...)
		p.PExpire(ctx, key, state.ReportKeep)
		p.ZAdd(ctx, s.keys.Reports(), redis.Z{Score: float64(r.At.UnixMilli()), Member: r.Balancer})
		return nil
	})
	if err != nil {
		return fmt.Errorf("put report of %s: %w", r.Balancer, err)
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
	var list *redis.StringSliceCmd
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRemRangeByScore(ctx, s.keys.Reports(), "-inf", "("+old)
		list = p.ZRange(ctx, s.keys.Reports(), 0, -1)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read reports: %w", err)
	}
	ids := list.Val()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, s.keys.Report(id))
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read reports: %w", err)
	}
	out := make([]state.Report, 0, len(ids))
	for i, id := range ids {
		h := cmds[i].Val()
		if len(h) == 0 {
			continue // expired between the two reads
		}
		out = append(out, decodeReport(id, h))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Balancer < out[j].Balancer })
	return out, nil
}

// decodeReport reads a report hash; a field it cannot read (a hand edit,
// another version) reads as zero rather than failing the whole dashboard.
func decodeReport(id string, h map[string]string) state.Report {
	r := state.Report{Balancer: id, StoreUp: h["up"] == "1"}
	ms := func(k string) time.Time {
		n, err := strconv.ParseInt(h[k], 10, 64)
		if err != nil || n <= 0 {
			return time.Time{}
		}
		return time.UnixMilli(n)
	}
	r.At, r.LastSync = ms("at"), ms("sync")
	r.Queued, _ = strconv.ParseInt(h["q"], 10, 64)
	r.Arrivals = parseRate(h["a"])
	byID := map[string]*state.BackendReport{}
	get := func(bid string) *state.BackendReport {
		b := byID[bid]
		if b == nil {
			b = &state.BackendReport{ID: bid}
			byID[bid] = b
		}
		return b
	}
	for k, v := range h {
		if len(k) < 3 || k[1] != ':' {
			continue
		}
		b := get(k[2:])
		switch k[0] {
		case 'n':
			b.Served, _ = strconv.ParseUint(v, 10, 64)
		case 'f':
			b.Failures, _ = strconv.ParseUint(v, 10, 64)
		case 'l':
			b.Limit, _ = strconv.ParseInt(v, 10, 64)
		case 'i':
			b.Local, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	for _, b := range byID {
		r.Backends = append(r.Backends, *b)
	}
	sort.Slice(r.Backends, func(i, j int) bool { return r.Backends[i].ID < r.Backends[j].ID })
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
