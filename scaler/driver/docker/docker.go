package docker

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"lbscale/scaler/driver"
	"lbscale/scaler/driver/engine"
)

// Config is what a Docker driver needs to know about its pool.
type Config struct {
	// Pool is the value of driver.LabelPool this driver owns.
	Pool string
	// Network is the Docker network containers join; driver.Instance.Addr is the
	// container's IP there (reachable from the host and from containers on
	// the same network, so balancers may run either way).
	Network string
	// Port is the web server's port inside the container.
	Port int
	// Creator is recorded in driver.LabelCreator.
	Creator string
	// Logger receives event-stream problems; nil means slog.Default().
	Logger *slog.Logger
}

// Docker drives containers on one Docker engine through its API (the
// DOCKER_HOST socket, with API version negotiation so that a newer client
// talks to an older engine).
type Docker struct {
	eng *engine.Client
	cfg Config
	log *slog.Logger
}

// api is the engine client, its API version negotiated.
func (d *Docker) api(ctx context.Context) *client.Client { return d.eng.API(ctx) }

// New connects to the engine named by the DOCKER_* environment.
// It does not contact the engine; call Ping to check it is there.
func New(cfg Config) (*Docker, error) {
	eng, err := engine.New()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Docker{eng: eng, cfg: cfg, log: log.With("driver", "docker", "pool", cfg.Pool)}, nil
}

// callTimeout bounds one Engine API call. Every decision of the leading
// scaler runs on one goroutine, so a wedged dockerd must turn into an error
// (logged, backed off, retried) rather than a scaler that silently stops
// deciding while it keeps renewing its lease.
const callTimeout = 15 * time.Second

// Ping checks that the engine answers.
func (d *Docker) Ping(ctx context.Context) error {
	if _, err := d.api(ctx).Ping(ctx); err != nil {
		return fmt.Errorf("ping docker engine: %w", err)
	}
	return nil
}

// Close releases the client's connections.
func (d *Docker) Close() error { return d.eng.Close() }

// CreateGrace is how long a container may stay created, not started, with
// no scaler's start on it, before it is debris: Start starts what it
// creates within milliseconds, so one still created after this was left by
// a scaler that died between the two (Swarm, which restarts tasks itself,
// needs the longer default).
func (d *Docker) CreateGrace() time.Duration { return createGrace }

// createGrace is Docker.CreateGrace's value.
const createGrace = 10 * time.Second

func (d *Docker) poolArgs() filters.Args {
	return filters.NewArgs(filters.Arg("label", driver.PoolFilter(d.cfg.Pool)))
}

// List returns the pool's containers, running or not.
func (d *Docker) List(ctx context.Context) ([]driver.Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	cs, err := d.api(ctx).ContainerList(ctx, container.ListOptions{All: true, Filters: d.poolArgs()})
	if err != nil {
		return nil, fmt.Errorf("list containers of pool %s: %w", d.cfg.Pool, err)
	}
	out := make([]driver.Instance, 0, len(cs))
	for _, c := range cs {
		if c.Labels[driver.LabelPool] != d.cfg.Pool { // the engine filtered; belt and braces
			continue
		}
		inst := driver.Instance{
			ContainerID: c.ID,
			State:       string(c.State),
			Created:     time.Unix(c.Created, 0),
			Image:       image(c.Labels, c.Image),
		}
		if len(c.Names) > 0 {
			inst.ID = strings.TrimPrefix(c.Names[0], "/")
		} else {
			inst.ID = c.ID
		}
		if inst.Running() && c.NetworkSettings != nil {
			if ep := c.NetworkSettings.Networks[d.cfg.Network]; ep != nil && ep.IPAddress != "" {
				inst.Addr = d.addr(ep.IPAddress)
			}
		}
		out = append(out, inst)
	}
	return out, nil
}

// image is the reference a container was started from: its LabelImage,
// or, for a container created before the driver set that label, the
// engine's image field (the reference given at create time while the tag
// still names that image, the image's id once it has moved).
func image(labels map[string]string, engineImage string) string {
	if ref := labels[driver.LabelImage]; ref != "" {
		return ref
	}
	return engineImage
}

func (d *Docker) addr(ip string) string {
	return net.JoinHostPort(ip, strconv.Itoa(d.cfg.Port))
}

// Start creates the container on the pool's network with the pool's labels
// and the spec's limits, starts it, and returns its address.
func (d *Docker) Start(ctx context.Context, spec driver.Spec) (driver.Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*callTimeout)
	defer cancel()
	cfg := &container.Config{
		Image:    spec.Image,
		Env:      spec.Env,
		Hostname: driver.Hostname(spec.Name),
		Labels: map[string]string{
			driver.LabelPool:    d.cfg.Pool,
			driver.LabelRole:    driver.RoleWeb,
			driver.LabelCreator: d.cfg.Creator,
			driver.LabelNetwork: d.cfg.Network,
			driver.LabelImage:   spec.Image,
		},
	}
	hc := &container.HostConfig{
		NetworkMode: container.NetworkMode(d.cfg.Network),
		Resources: container.Resources{
			NanoCPUs: spec.NanoCPUs,
			Memory:   spec.MemoryBytes,
		},
		// The web server needs no privilege: drop them all, so that a
		// container started on demand is as boxed in as one can be.
		CapDrop:     []string{"ALL"},
		SecurityOpt: []string{"no-new-privileges"},
	}
	nc := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{d.cfg.Network: {}}}
	created, err := d.api(ctx).ContainerCreate(ctx, cfg, hc, nc, nil, spec.Name)
	if err != nil {
		return driver.Instance{}, fmt.Errorf("create container %s: %w", spec.Name, err)
	}
	inst := driver.Instance{ID: spec.Name, ContainerID: created.ID, State: driver.StateCreated, Created: time.Now(), Image: spec.Image}
	if err := d.api(ctx).ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		d.discard(created.ID)
		return driver.Instance{}, fmt.Errorf("start container %s: %w", spec.Name, err)
	}
	info, err := d.api(ctx).ContainerInspect(ctx, created.ID)
	if err != nil {
		d.discard(created.ID)
		return driver.Instance{}, fmt.Errorf("inspect container %s: %w", spec.Name, err)
	}
	if t, err := time.Parse(time.RFC3339Nano, info.Created); err == nil {
		inst.Created = t
	}
	if info.State != nil {
		inst.State = string(info.State.Status)
	}
	var ep *network.EndpointSettings
	if info.NetworkSettings != nil {
		ep = info.NetworkSettings.Networks[d.cfg.Network]
	}
	if ep == nil || ep.IPAddress == "" {
		d.discard(created.ID)
		return driver.Instance{}, fmt.Errorf("container %s has no address on network %s", spec.Name, d.cfg.Network)
	}
	inst.Addr = d.addr(ep.IPAddress)
	return inst, nil
}

// discard removes a container that failed half-way through Start. It uses
// its own context: the caller's may be the reason Start failed.
func (d *Docker) discard(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := d.api(ctx).ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		d.log.Warn("remove failed container", "container", id, "err", err)
	}
}

// Stop stops (grace rounded up to whole seconds, the engine's unit) and
// removes a container of the pool.
func (d *Docker) Stop(ctx context.Context, id string, grace time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, grace+2*callTimeout)
	defer cancel()
	info, err := d.api(ctx).ContainerInspect(ctx, id)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect container %s: %w", id, err)
	}
	if info.Config == nil || info.Config.Labels[driver.LabelPool] != d.cfg.Pool {
		return fmt.Errorf("stop container %s: %w (%s=%q)", id, driver.ErrNotInPool, driver.LabelPool, d.cfg.Pool)
	}
	secs := int(math.Ceil(grace.Seconds()))
	if err := d.api(ctx).ContainerStop(ctx, info.ID, container.StopOptions{Timeout: &secs}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	err = d.api(ctx).ContainerRemove(ctx, info.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) && !removalInProgress(err) {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	return nil
}

// removalInProgress: another remove of the same container (a reconcile
// racing a drain) already runs; the container goes either way.
func removalInProgress(err error) bool {
	return cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "in progress")
}

// watchedActions are the container events after which the pool may differ
// from the registry.
var watchedActions = map[events.Action]bool{
	events.ActionStart:   true,
	events.ActionDie:     true,
	events.ActionDestroy: true,
	events.ActionOOM:     true,
	events.ActionPause:   true,
	events.ActionUnPause: true,
}

// Watch follows the engine's event stream for the pool's containers. The
// stream is re-opened after an error with capped exponential back-off, and
// a nudge follows every re-open, since events may have been missed.
func (d *Docker) Watch(ctx context.Context) <-chan struct{} {
	args := d.poolArgs()
	args.Add("type", string(events.ContainerEventType))
	return engine.Watch(ctx, d.eng, args, func(m events.Message) bool { return watchedActions[m.Action] }, d.log)
}
