package swarm

import (
	"context"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"lbscale/scaler/driver"
)

// healthInterval is the web tasks' health-check period (see
// serviceSpec): the bound on how long a started task waits to be running.
const healthInterval = time.Second

// defaultStartTimeout bounds Start's wait for the task: placement, image
// check and container start take a second or two on a healthy swarm.
const defaultStartTimeout = 30 * time.Second

// Restart policy. A killed task is back in about a second (Delay). A task
// that dies MaxAttempts times inside Window (a crash loop: bad env, an image
// that exits at once) is left down: List then reports the service exited
// and the scaler replaces it, with the failure in its log, instead of
// counting a replica that never serves as "starting" forever. Worked
// numbers: killed once an hour, restarted every time; exits 3 times within a
// minute, given up on after the third restart attempt.
const (
	restartDelay       = time.Second
	restartMaxAttempts = 3
	restartWindow      = time.Minute
)

// serviceSpec is the service of one replica.
func (s *Swarm) serviceSpec(spec driver.Spec) swarm.ServiceSpec {
	one := uint64(1)
	delay, window, attempts := restartDelay, restartWindow, uint64(restartMaxAttempts)
	cs := &swarm.ContainerSpec{
		Image: spec.Image,
		// The container labels let `docker ps --filter label=lbscale.pool=…`
		// find the task containers on each node, as with plain Docker, and
		// let Watch tell the pool's container events from others.
		Labels:   s.labels(spec.Image),
		Hostname: driver.Hostname(spec.Name),
		Env:      spec.Env,
		// The web server needs no privilege. Engine 20.10 (API 1.41) honours
		// CapabilityDrop in a service but silently ignores NoNewPrivileges
		// (services gained it later); newer engines apply both.
		CapabilityDrop: []string{"ALL"},
		Privileges:     &swarm.Privileges{NoNewPrivileges: true},
		// Swarm calls a task running only once the image's health check
		// passes, and the web image probes every 10 s: a scale-up or a
		// restart would wait up to 10 s for its first probe. The image's
		// own check (Test left empty, so the engine keeps it; an image
		// without one is unaffected) then runs every second instead, and
		// three misses in a row still have Swarm replace a hung task.
		Healthcheck: &container.HealthConfig{Interval: healthInterval, Timeout: 3 * time.Second, Retries: 3},
	}
	if s.cfg.StopGrace > 0 {
		grace := s.cfg.StopGrace
		cs.StopGracePeriod = &grace
	}
	var placement *swarm.Placement
	if len(s.cfg.Constraints) > 0 {
		placement = &swarm.Placement{Constraints: s.cfg.Constraints}
	}
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: spec.Name, Labels: s.labels(spec.Image)},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: cs,
			Resources: &swarm.ResourceRequirements{
				Limits: &swarm.Limit{NanoCPUs: spec.NanoCPUs, MemoryBytes: spec.MemoryBytes},
			},
			RestartPolicy: &swarm.RestartPolicy{
				Condition:   swarm.RestartPolicyConditionAny,
				Delay:       &delay,
				MaxAttempts: &attempts,
				Window:      &window,
			},
			Placement: placement,
			Networks:  []swarm.NetworkAttachmentConfig{{Target: s.cfg.Network}},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		// Balancers dial task addresses; a virtual IP and the ingress mesh
		// would only add a hop (and the mesh carries no traffic here).
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	}
}

// Start creates the replica's service and waits until its task runs with
// an address on the overlay network. On failure the service is removed.
func (s *Swarm) Start(ctx context.Context, spec driver.Spec) (driver.Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, s.startTimeout+callTimeout)
	defer cancel()
	// QueryRegistry false: images are local to the nodes, there is no
	// registry to resolve a digest from (and asking one only warns).
	created, err := s.api(ctx).ServiceCreate(ctx, s.serviceSpec(spec), swarm.ServiceCreateOptions{QueryRegistry: false})
	if err != nil {
		return driver.Instance{}, fmt.Errorf("create service %s: %w", spec.Name, err)
	}
	inst, err := s.awaitRunning(ctx, created.ID)
	if err != nil {
		s.discard(created.ID)
		return driver.Instance{}, fmt.Errorf("start service %s: %w", spec.Name, err)
	}
	inst.ID, inst.Image = spec.Name, spec.Image
	return inst, nil
}

// awaitRunning polls the service's tasks until one runs with an address,
// one fails (an image missing on the node, a crash at boot: Start reports
// it rather than leaving Swarm to retry), or startTimeout passes.
func (s *Swarm) awaitRunning(ctx context.Context, serviceID string) (driver.Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, s.startTimeout)
	defer cancel()
	args := filters.NewArgs(filters.Arg("service", serviceID))
	last := "no task yet"
	for {
		tasks, err := s.api(ctx).TaskList(ctx, swarm.TaskListOptions{Filters: args})
		if err != nil && ctx.Err() == nil {
			return driver.Instance{}, fmt.Errorf("list tasks: %w", err)
		}
		for _, t := range tasks {
			if terminal(t.Status.State) {
				return driver.Instance{}, fmt.Errorf("task %s %s: %s", t.ID, t.Status.State, taskError(t))
			}
			if t.Status.State == swarm.TaskStateRunning {
				if addr := s.taskAddr(t); addr != "" {
					return driver.Instance{
						ContainerID: containerID(t),
						Addr:        addr,
						State:       driver.StateRunning,
						Created:     t.CreatedAt,
					}, nil
				}
				last = "task running without an address on network " + s.cfg.Network
			} else {
				last = "task " + string(t.Status.State)
			}
		}
		select {
		case <-ctx.Done():
			return driver.Instance{}, fmt.Errorf("task not running after %s (%s): %w", s.startTimeout, last, ctx.Err())
		case <-time.After(s.poll):
		}
	}
}

func taskError(t swarm.Task) string {
	if t.Status.Err != "" {
		return t.Status.Err
	}
	return t.Status.Message
}

// discard removes a service that failed half-way through Start. It uses
// its own context: the caller's may be the reason Start failed.
func (s *Swarm) discard(serviceID string) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if err := s.api(ctx).ServiceRemove(ctx, serviceID); err != nil && !cerrdefs.IsNotFound(err) {
		s.log.Warn("remove failed service", "service", serviceID, "err", err)
	}
}
