// Package swarm is a driver.Driver on Docker Swarm mode: every web replica
// is a single-replica service of its own.
//
// One service per replica, not one service with N replicas, because Swarm
// cannot remove a chosen task of a replicated service (moby/moby#33392): it
// scales down by picking victims itself, while the scaler drains one chosen
// idle replica and then stops exactly that one. Removing a whole service
// removes exactly the drained replica; Swarm still places the task, restarts
// it when it dies and moves it when its node dies.
//
// A replica's ID is its service name; its address is its task's address on
// an attachable overlay network, where the balancers reach it directly (the
// services use DNS round-robin endpoints, not the routing mesh).
package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/docker/docker/client"

	"lbscale/scaler/driver"
	"lbscale/scaler/driver/engine"
)

// Config is what a Swarm driver needs to know about its pool.
type Config struct {
	// Pool is the value of driver.LabelPool this driver owns.
	Pool string
	// Network is the name (or id) of an attachable overlay network the
	// tasks join; driver.Instance.Addr is the task's address there.
	Network string
	// Port is the web server's port inside the container.
	Port int
	// Creator is recorded in driver.LabelCreator.
	Creator string
	// Constraints are Swarm placement constraints for every replica
	// (node.role==worker, node.labels.web==true …); none: any node.
	Constraints []string
	// StopGrace is how long a stopping task has between SIGTERM and SIGKILL.
	// It is fixed when the service is created (see Stop); 0 leaves Swarm's
	// default of 10 s.
	StopGrace time.Duration
	// Logger receives event-stream and clean-up problems; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Swarm drives one pool's services through a swarm manager's Engine API
// (the DOCKER_HOST socket by default, with API version negotiation so that
// a newer client talks to an older engine).
type Swarm struct {
	eng *engine.Client
	cfg Config
	log *slog.Logger

	// startTimeout bounds Start's wait for the task to run; poll is the
	// interval of that wait and of Stop's. Fields so tests can shorten them.
	startTimeout time.Duration
	poll         time.Duration
	// now is the clock of List's mapping (see giveUpAfter); a field so
	// tests can set it.
	now func() time.Time
}

var _ driver.Driver = (*Swarm)(nil)

// callTimeout bounds one Engine API call, as in the Docker driver: a wedged
// manager must turn into an error, not a scaler that stops deciding.
const callTimeout = 15 * time.Second

// New returns a driver for cfg's pool. By default it connects to the engine
// named by the DOCKER_* environment; opts are applied after those defaults
// (tests use client.WithHost and client.WithHTTPClient). It does not contact
// the engine; call Ping to check that it is a swarm manager.
func New(cfg Config, opts ...client.Opt) (*Swarm, error) {
	switch {
	case cfg.Pool == "":
		return nil, errors.New("swarm driver: empty pool")
	case cfg.Network == "":
		return nil, errors.New("swarm driver: empty network")
	case cfg.Port < 1 || cfg.Port > 65535:
		return nil, fmt.Errorf("swarm driver: port %d out of range 1-65535", cfg.Port)
	case cfg.StopGrace < 0:
		return nil, fmt.Errorf("swarm driver: negative stop grace %s", cfg.StopGrace)
	}
	eng, err := engine.New(opts...)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Swarm{
		eng:          eng,
		cfg:          cfg,
		log:          log.With("driver", "swarm", "pool", cfg.Pool),
		startTimeout: defaultStartTimeout,
		now:          time.Now,
		poll:         250 * time.Millisecond,
	}, nil
}

// api is the engine client, its API version negotiated.
func (s *Swarm) api(ctx context.Context) *client.Client { return s.eng.API(ctx) }

// Ping checks that the engine answers and is a swarm manager: a worker or a
// standalone engine answers the ping but refuses every service call.
func (s *Swarm) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if _, err := s.api(ctx).Ping(ctx); err != nil {
		return fmt.Errorf("ping docker engine: %w", err)
	}
	info, err := s.api(ctx).Info(ctx)
	if err != nil {
		return fmt.Errorf("docker engine info: %w", err)
	}
	if !info.Swarm.ControlAvailable {
		return fmt.Errorf("docker engine is not a swarm manager (swarm state %q): run `docker swarm init` there, or point DOCKER_HOST at a manager",
			info.Swarm.LocalNodeState)
	}
	return nil
}

// Close releases the client's connections.
func (s *Swarm) Close() error { return s.eng.Close() }

// labels are a replica's labels, on its service and its task containers
// alike; image is the reference it runs (driver.LabelImage).
func (s *Swarm) labels(image string) map[string]string {
	return map[string]string{
		driver.LabelPool:    s.cfg.Pool,
		driver.LabelRole:    driver.RoleWeb,
		driver.LabelCreator: s.cfg.Creator,
		driver.LabelNetwork: s.cfg.Network,
		driver.LabelImage:   image,
	}
}
