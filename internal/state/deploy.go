package state

import (
	"context"
	"time"
)

// DeployPhase is where a pool's deploy stands.
type DeployPhase string

// Deploy phases. A deploy goes canary → rolling → done, or, when its image
// misbehaves, on to rolling-back → rolled-back.
const (
	// DeployCanary: one container on the new image is started and
	// watched against the old ones; every other start uses the old image.
	DeployCanary DeployPhase = "canary"
	// DeployRolling: the canary passed; new containers replace the old
	// ones, a surge at a time.
	DeployRolling DeployPhase = "rolling"
	// DeployDone: every container runs the new image.
	DeployDone DeployPhase = "done"
	// DeployRollingBack: the new image failed; containers on it are
	// replaced by the previous image.
	DeployRollingBack DeployPhase = "rolling-back"
	// DeployRolledBack: every container runs the previous image again.
	DeployRolledBack DeployPhase = "rolled-back"
)

// Active reports whether the phase still has work to do.
func (p DeployPhase) Active() bool {
	return p == DeployCanary || p == DeployRolling || p == DeployRollingBack
}

// Deploy is a pool's latest deploy, kept in the store so that it outlives
// the scaler that began it: a new leader finishes it or rolls it back, and
// a restarted scaler keeps the image a deploy chose over WEB_IMAGE until
// WEB_IMAGE (or the pool file's image) itself changes.
type Deploy struct {
	// ID identifies this deploy; a write names the ID it replaces, so that
	// two writers never lose each other's deploy.
	ID string `json:"id"`
	// Image is the image deployed; Previous the one it replaces (what a
	// rollback returns to).
	Image    string `json:"image"`
	Previous string `json:"previous"`
	// ConfigImage is WEB_IMAGE (or the pool file's image) as it read when
	// the deploy was recorded: when the configured image changes, that
	// change is a new deploy.
	ConfigImage string      `json:"config_image"`
	Phase       DeployPhase `json:"phase"`
	// Reason says why the phase is what it is (the canary's verdict, the
	// failure that started a rollback).
	Reason string `json:"reason,omitempty"`
	// Floor is the ready count when the deploy began: the deploy itself
	// never takes the pool below it.
	Floor int `json:"floor"`
	// Canary is the canary container's id, once started.
	Canary string `json:"canary,omitempty"`
	// Started is when the deploy was asked for; Updated its latest change;
	// Finished when it reached done or rolled-back.
	Started  time.Time `json:"started"`
	Updated  time.Time `json:"updated"`
	Finished time.Time `json:"finished,omitzero"`
}

// Running is the image the pool runs once the deploy has settled: Image
// unless the deploy is rolling back or rolled back.
func (d Deploy) Running() string {
	if d.Phase == DeployRollingBack || d.Phase == DeployRolledBack {
		return d.Previous
	}
	return d.Image
}

// Deploys is where a pool's latest deploy is kept.
type Deploys interface {
	// Deploy returns the pool's latest deploy (false: none recorded).
	Deploy(ctx context.Context) (Deploy, bool, error)
	// PutDeploy stores d if the stored deploy's ID is prev ("" : none is
	// stored), and reports whether it did.
	PutDeploy(ctx context.Context, d Deploy, prev string) (bool, error)
}
