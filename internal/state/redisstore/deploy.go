package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"lbscale/internal/state"
)

// putDeploy replaces the deploy hash only if its id is ARGV[1] (none
// stored reads as ""), so that a scaler updating a deploy's phase never
// overwrites a newer deploy another scaler recorded meanwhile.
var putDeploy = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'id') or ''
if cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[2], 'doc', ARGV[3])
return 1
`)

// Deploy implements state.Deploys.
func (s *Store) Deploy(ctx context.Context) (state.Deploy, bool, error) {
	doc, err := s.rdb.HGet(ctx, s.keys.Deploy(), "doc").Bytes()
	if errors.Is(err, redis.Nil) {
		return state.Deploy{}, false, nil
	}
	if err != nil {
		return state.Deploy{}, false, fmt.Errorf("read deploy: %w", err)
	}
	var d state.Deploy
	if err := json.Unmarshal(doc, &d); err != nil {
		return state.Deploy{}, false, fmt.Errorf("read deploy: %w", err)
	}
	return d, true, nil
}

// PutDeploy implements state.Deploys.
func (s *Store) PutDeploy(ctx context.Context, d state.Deploy, prev string) (bool, error) {
	doc, err := json.Marshal(d)
	if err != nil {
		return false, fmt.Errorf("put deploy: %w", err)
	}
	n, err := putDeploy.Run(ctx, s.rdb, []string{s.keys.Deploy()}, prev, d.ID, doc).Int()
	if err != nil {
		return false, fmt.Errorf("put deploy: %w", err)
	}
	return n == 1, nil
}
