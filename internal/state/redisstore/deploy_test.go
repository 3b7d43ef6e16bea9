package redisstore_test

import (
	"context"
	"testing"
	"time"

	"lbscale/internal/state"
	"lbscale/internal/state/memstore"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv/statetest"
)

// A deploy is written only over the one its writer read: a phase update
// by the leader cannot erase a newer deploy asked for meanwhile, and of
// two deploys asked for at once, one wins and the other learns it lost.
// Both stores keep the same rule.
func TestPutDeployReplacesOnlyWhatItRead(t *testing.T) {
	srv := statetest.StartRedis(t)
	rs, err := redisstore.New(srv.URL(), "web")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for name, s := range map[string]state.Deploys{"redis": rs, "memory": memstore.New(nil)} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if _, ok, err := s.Deploy(ctx); ok || err != nil {
				t.Fatalf("empty store has a deploy: %v %v", ok, err)
			}
			at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
			d1 := state.Deploy{ID: "d1", Image: "app:2", Previous: "app:1", Phase: state.DeployCanary, Floor: 3, Started: at, Updated: at}
			if ok, err := s.PutDeploy(ctx, d1, "other"); ok || err != nil {
				t.Fatalf("a write over a deploy that is not there: %v %v", ok, err)
			}
			if ok, err := s.PutDeploy(ctx, d1, ""); !ok || err != nil {
				t.Fatalf("first write: %v %v", ok, err)
			}
			d2 := state.Deploy{ID: "d2", Image: "app:3", Previous: "app:1", Phase: state.DeployCanary, Started: at}
			if ok, err := s.PutDeploy(ctx, d2, ""); ok || err != nil {
				t.Fatalf("a second deploy written over one it did not read: %v %v", ok, err)
			}
			if ok, err := s.PutDeploy(ctx, d2, "d1"); !ok || err != nil {
				t.Fatalf("a deploy over the one it read: %v %v", ok, err)
			}
			d1.Phase = state.DeployRolling
			if ok, err := s.PutDeploy(ctx, d1, "d1"); ok || err != nil {
				t.Fatalf("a stale phase update overwrote a newer deploy: %v %v", ok, err)
			}
			got, ok, err := s.Deploy(ctx)
			if !ok || err != nil || got.ID != "d2" || got.Image != "app:3" || !got.Started.Equal(at) || got.Phase != state.DeployCanary {
				t.Fatalf("stored %+v %v %v, want d2", got, ok, err)
			}
		})
	}
}
