package redisstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"lbscale/internal/state"
)

// trimForecast drops the fields of the forecast hash (KEYS[1]) whose bucket
// start (unix s) is before ARGV[1], in one step with the write, so that the
// hash never grows past FORECAST_DAYS periods however many leaders wrote
// it. A day of 5-minute buckets is 288 fields; a week of them 2016, which
// HKEYS reads once per bucket, not per poll.
var trimForecast = redis.NewScript(`
local oldest = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
local gone = {}
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  local at = tonumber(f)
  if at == nil or at < oldest then gone[#gone + 1] = f end
end
for i = 1, #gone, 500 do
  redis.call('HDEL', KEYS[1], unpack(gone, i, math.min(i + 499, #gone)))
end
return #gone
`)

// PutBucketRate implements state.Forecasts.
func (s *Store) PutBucketRate(ctx context.Context, r state.BucketRate, oldest time.Time) error {
	rate := strconv.FormatFloat(r.Rate, 'g', -1, 64)
	err := trimForecast.Run(ctx, s.rdb, []string{s.keys.Forecast()}, oldest.Unix(), r.Start.Unix(), rate).Err()
	if err != nil {
		return fmt.Errorf("put forecast bucket: %w", err)
	}
	return nil
}

// BucketRates implements state.Forecasts. A field that does not parse
// (written by hand, say) is skipped: one bad bucket must not cost the
// floor its whole history.
func (s *Store) BucketRates(ctx context.Context) ([]state.BucketRate, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.Forecast()).Result()
	if err != nil {
		return nil, fmt.Errorf("read forecast: %w", err)
	}
	out := make([]state.BucketRate, 0, len(m))
	for f, v := range m {
		at, err1 := strconv.ParseInt(f, 10, 64)
		rate, err2 := strconv.ParseFloat(v, 64)
		if err1 != nil || err2 != nil || rate < 0 {
			continue
		}
		out = append(out, state.BucketRate{Start: time.Unix(at, 0).UTC(), Rate: rate})
	}
	slices.SortFunc(out, func(a, b state.BucketRate) int { return a.Start.Compare(b.Start) })
	return out, nil
}
