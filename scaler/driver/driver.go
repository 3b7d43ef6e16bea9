// Package driver is the scaler's view of an orchestrator: list the pool's
// containers, start one, stop one, and hear when something changed.
//
// The scaler's logic talks only to Driver, so that the Docker-engine driver
// (docker.go) can be joined by a Swarm-mode driver without touching the
// controller, and so that the controller is unit-tested against a fake
// (package drivertest).
package driver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"
)

// Driver manages the containers of one pool. Implementations only ever see,
// start and stop containers carrying the pool's label.
type Driver interface {
	// List returns every container of the pool, running or not.
	List(ctx context.Context) ([]Instance, error)
	// Start creates and starts a container and returns it with its address.
	// It does not wait for the server inside to be healthy. On error no
	// container is left behind (best effort).
	Start(ctx context.Context, spec Spec) (Instance, error)
	// Stop stops the container (SIGTERM, SIGKILL after grace) and removes
	// it. A container that is already gone is not an error; a container
	// without the pool's label is refused with ErrNotInPool.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// Watch delivers a nudge whenever a container of the pool may have
	// changed state (and after any gap in watching), until ctx ends. Nudges
	// coalesce: one pending nudge stands for any number of events.
	Watch(ctx context.Context) <-chan struct{}
}

// ErrNotInPool is returned by Stop for a container that is not the pool's.
var ErrNotInPool = errors.New("container is not in this pool")

// Instance is one container of the pool.
type Instance struct {
	// ID is the container's name, unique on the engine and accepted by the
	// engine wherever a container id is. The scaler uses it as the backend
	// id in the registry, and sets it as the hostname so that the web
	// server's X-Server-Id matches.
	ID string
	// ContainerID is the engine's id, for logs.
	ContainerID string
	// Addr is host:port on the pool's network; empty unless running.
	Addr string
	// State is the engine's state word: created, running, exited, dead …
	State string
	// Created is when the container was created.
	Created time.Time
	// Image is the image reference the container was started from, exactly
	// as Spec.Image gave it (read back from LabelImage), so that a deploy
	// tells the old image's containers from the new one's even after a tag
	// moved. For a container started before the label existed it is the
	// engine's own image field, which may then be an id or a digest.
	Image string
}

// Engine state words the scaler acts on.
const (
	StateCreated = "created"
	StateRunning = "running"
	StateExited  = "exited"
	StateDead    = "dead"
)

// Running reports whether the container runs (it may still be booting).
func (i Instance) Running() bool { return i.State == StateRunning }

// Gone reports whether the container stopped for good: the scaler removes
// such containers, since it never restarts one.
func (i Instance) Gone() bool { return i.State == StateExited || i.State == StateDead }

// Spec is what to start. The pool, network and port belong to the driver.
type Spec struct {
	// Name of the container (becomes Instance.ID).
	Name string
	// Image, Env (KEY=VALUE) and the resource limits (0: none).
	Image       string
	Env         []string
	NanoCPUs    int64
	MemoryBytes int64
}

// NewName returns a container name that says what it is and whose it is:
// lbscale-<pool>-web-<8 hex>.
func NewName(pool string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "lbscale-" + pool + "-" + RoleWeb + "-" + hex.EncodeToString(b[:])
}

// Hostname is a container's name cut to the 63 characters a hostname may
// have: the web server reports its hostname as X-Server-Id, so the name
// becomes the hostname wherever the orchestrator lets it.
func Hostname(name string) string {
	if len(name) > 63 {
		return name[:63]
	}
	return name
}
