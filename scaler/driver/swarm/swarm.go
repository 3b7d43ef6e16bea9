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
	"net"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"lbscale/scaler/driver"
	"lbscale/scaler/driver/engine"
)

// healthInterval is the web tasks' health-check period (see
// serviceSpec): the bound on how long a started task waits to be running.
const healthInterval = time.Second

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

// defaultStartTimeout bounds Start's wait for the task: placement, image
// check and container start take a second or two on a healthy swarm.
const defaultStartTimeout = 30 * time.Second

// swarmDefaultStopGrace is what Swarm applies when a service sets none.
const swarmDefaultStopGrace = 10 * time.Second

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

// giveUpAfter is how long a service may have no task wanted running before
// List calls it exited. Between a task's death and the creation of its
// replacement, Swarm briefly wants no task of the service running at all;
// calling that "exited" would have the scaler remove a service Swarm is
// about to restart (seen here: a killed task's service replaced instead of
// restarted). Swarm creates the replacement within the restart delay and
// a beat of its orchestrator, so a gap longer than this is Swarm giving up.
const giveUpAfter = restartDelay + 10*time.Second

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

func (s *Swarm) labels() map[string]string {
	return map[string]string{
		driver.LabelPool:    s.cfg.Pool,
		driver.LabelRole:    driver.RoleWeb,
		driver.LabelCreator: s.cfg.Creator,
	}
}

// serviceSpec is the service of one replica.
func (s *Swarm) serviceSpec(spec driver.Spec) swarm.ServiceSpec {
	one := uint64(1)
	delay, window, attempts := restartDelay, restartWindow, uint64(restartMaxAttempts)
	cs := &swarm.ContainerSpec{
		Image: spec.Image,
		// The container labels let `docker ps --filter label=lbscale.pool=…`
		// find the task containers on each node, as with plain Docker, and
		// let Watch tell the pool's container events from others.
		Labels:   s.labels(),
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
		Annotations: swarm.Annotations{Name: spec.Name, Labels: s.labels()},
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
	inst.ID = spec.Name
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

// terminal reports whether a task in state st will never run again (Swarm
// replaces a dead task with a new one rather than restarting it).
func terminal(st swarm.TaskState) bool {
	switch st {
	case swarm.TaskStateComplete, swarm.TaskStateShutdown, swarm.TaskStateFailed,
		swarm.TaskStateRejected, swarm.TaskStateRemove, swarm.TaskStateOrphaned:
		return true
	}
	return false
}

// taskAddr is the task's ip:port on the pool's network, or "". Swarm
// reports an attachment's address with its prefix length (10.0.1.5/24).
func (s *Swarm) taskAddr(t swarm.Task) string {
	for _, na := range t.NetworksAttachments {
		if na.Network.Spec.Name != s.cfg.Network && na.Network.ID != s.cfg.Network {
			continue
		}
		for _, a := range na.Addresses {
			ip, _, _ := strings.Cut(a, "/")
			if net.ParseIP(ip) != nil {
				return net.JoinHostPort(ip, strconv.Itoa(s.cfg.Port))
			}
		}
	}
	return ""
}

// containerID is the task's container, or the task itself before it has one.
func containerID(t swarm.Task) string {
	if t.Status.ContainerStatus != nil && t.Status.ContainerStatus.ContainerID != "" {
		return t.Status.ContainerStatus.ContainerID
	}
	return t.ID
}

func (s *Swarm) poolArgs() filters.Args {
	return filters.NewArgs(filters.Arg("label", driver.PoolFilter(s.cfg.Pool)))
}

// List returns one Instance per service of the pool (see instance for the
// state each reports).
func (s *Swarm) List(ctx context.Context) ([]driver.Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*callTimeout)
	defer cancel()
	// The engine resolves each service filter of a task list and fails the
	// whole call when one is gone, so a service removed between the two
	// calls (a Stop racing this List) costs one more round.
	var err error
	for range 3 {
		var svcs []swarm.Service
		var tasks []swarm.Task
		svcs, tasks, err = s.snapshot(ctx)
		if err == nil {
			return s.instances(svcs, tasks), nil
		}
		if !cerrdefs.IsNotFound(err) {
			break
		}
	}
	return nil, fmt.Errorf("list services of pool %s: %w", s.cfg.Pool, err)
}

func (s *Swarm) snapshot(ctx context.Context) ([]swarm.Service, []swarm.Task, error) {
	all, err := s.api(ctx).ServiceList(ctx, swarm.ServiceListOptions{Filters: s.poolArgs()})
	if err != nil {
		return nil, nil, err
	}
	svcs := all[:0]
	args := filters.NewArgs()
	for _, svc := range all {
		if svc.Spec.Labels[driver.LabelPool] != s.cfg.Pool { // the engine filtered; belt and braces
			continue
		}
		svcs = append(svcs, svc)
		args.Add("service", svc.ID)
	}
	if len(svcs) == 0 {
		return nil, nil, nil
	}
	tasks, err := s.api(ctx).TaskList(ctx, swarm.TaskListOptions{Filters: args})
	if err != nil {
		return nil, nil, err
	}
	return svcs, tasks, nil
}

func (s *Swarm) instances(svcs []swarm.Service, tasks []swarm.Task) []driver.Instance {
	bySvc := make(map[string][]swarm.Task, len(svcs))
	for _, t := range tasks {
		bySvc[t.ServiceID] = append(bySvc[t.ServiceID], t)
	}
	out := make([]driver.Instance, 0, len(svcs))
	now := s.now()
	for _, svc := range svcs {
		out = append(out, s.instance(svc, bySvc[svc.ID], now))
	}
	return out
}

// instance maps a service and its tasks to the scaler's container states.
// The newest task Swarm wants running decides:
//
//   - running with an address: running, at that address;
//   - still booting (new … starting): created, Created = the task's
//     creation, so that a task Swarm is restarting gets the scaler's whole
//     start timeout rather than the age of the service;
//   - dead while Swarm still wants it running (the moment before Swarm
//     replaces it): created, Created = when it died, so the scaler waits a
//     start timeout for the replacement before giving up on the service.
//
// No task wanted running while tasks exist, for longer than giveUpAfter
// since the last one ended, means Swarm gave up (restart attempts spent):
// exited, which the scaler removes and replaces; a shorter gap is Swarm
// between a task's death and its replacement: created, Created = that
// death. No task at all (not yet scheduled): created, Created = the
// service's creation.
func (s *Swarm) instance(svc swarm.Service, tasks []swarm.Task, now time.Time) driver.Instance {
	inst := driver.Instance{ID: svc.Spec.Name, ContainerID: svc.ID, State: driver.StateCreated, Created: svc.CreatedAt}
	var cur *swarm.Task
	for i := range tasks {
		t := &tasks[i]
		if terminal(t.DesiredState) {
			continue
		}
		if cur == nil || t.CreatedAt.After(cur.CreatedAt) {
			cur = t
		}
	}
	switch {
	case cur == nil && len(tasks) > 0:
		var ended time.Time
		for _, t := range tasks {
			if t.Status.Timestamp.After(ended) {
				ended = t.Status.Timestamp
			}
		}
		if now.Sub(ended) > giveUpAfter {
			inst.State = driver.StateExited
		} else {
			inst.Created = ended
		}
	case cur == nil:
	case cur.Status.State == swarm.TaskStateRunning:
		inst.State = driver.StateRunning
		inst.ContainerID = containerID(*cur)
		inst.Addr = s.taskAddr(*cur)
		inst.Created = cur.CreatedAt
	case terminal(cur.Status.State):
		inst.ContainerID = containerID(*cur)
		inst.Created = cur.Status.Timestamp
	default:
		inst.ContainerID = containerID(*cur)
		inst.Created = cur.CreatedAt
	}
	return inst
}

// Stop removes a service of the pool and waits until its task containers
// are gone.
//
// The stop grace is the service's, fixed at creation from Config.StopGrace:
// changing it now would be a service update, and Swarm applies an update by
// replacing the task, i.e. it would kill the drained replica and start a
// fresh one just before removing the service. grace therefore only bounds
// how long Stop waits.
func (s *Swarm) Stop(ctx context.Context, id string, grace time.Duration) error {
	applied := s.cfg.StopGrace
	if applied == 0 {
		applied = swarmDefaultStopGrace
	}
	ctx, cancel := context.WithTimeout(ctx, max(grace, applied)+2*callTimeout)
	defer cancel()
	svc, _, err := s.api(ctx).ServiceInspectWithRaw(ctx, id, swarm.ServiceInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect service %s: %w", id, err)
	}
	if svc.Spec.Labels[driver.LabelPool] != s.cfg.Pool {
		return fmt.Errorf("stop service %s: %w (%s=%q)", id, driver.ErrNotInPool, driver.LabelPool, s.cfg.Pool)
	}
	// Once the service is gone the engine no longer resolves it in a task
	// filter, so Stop follows its tasks by their own ids.
	tasks, err := s.api(ctx).TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", svc.ID))})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("list tasks of service %s: %w", id, err)
	}
	if err := s.api(ctx).ServiceRemove(ctx, svc.ID); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove service %s: %w", id, err)
	}
	if len(tasks) == 0 {
		return nil
	}
	if err := s.awaitTasksGone(ctx, tasks); err != nil {
		return fmt.Errorf("service %s removed: %w", id, err)
	}
	return nil
}

// awaitTasksGone waits until Swarm has deleted tasks (it does once they
// stopped) and then until those of their containers that are on this node
// are removed too: the task goes from the manager's list a moment before
// the agent removes its container. Containers on other nodes cannot be
// seen from here; their tasks' end is all there is to wait for.
func (s *Swarm) awaitTasksGone(ctx context.Context, tasks []swarm.Task) error {
	args := filters.NewArgs()
	for _, t := range tasks {
		args.Add("id", t.ID)
	}
	for {
		left, err := s.api(ctx).TaskList(ctx, swarm.TaskListOptions{Filters: args})
		if err == nil && len(left) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			if err == nil && !anyAlive(left) {
				// Stopped; only Swarm's bookkeeping lags (a node that is
				// down keeps its tasks until it returns).
				return nil
			}
			return fmt.Errorf("task still running: %w", ctx.Err())
		case <-time.After(s.poll):
		}
	}
	for _, t := range tasks {
		if t.Status.ContainerStatus == nil || t.Status.ContainerStatus.ContainerID == "" {
			continue
		}
		for {
			_, err := s.api(ctx).ContainerInspect(ctx, t.Status.ContainerStatus.ContainerID)
			if cerrdefs.IsNotFound(err) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("container %s of task %s not removed: %w", t.Status.ContainerStatus.ContainerID, t.ID, ctx.Err())
			case <-time.After(s.poll):
			}
		}
	}
	return nil
}

func anyAlive(tasks []swarm.Task) bool {
	for _, t := range tasks {
		if !terminal(t.Status.State) {
			return true
		}
	}
	return false
}

// watchedActions are the events after which the pool may differ from the
// registry: service create/update/remove, and the life of task containers.
var watchedActions = map[events.Action]bool{
	events.ActionCreate:  true,
	events.ActionUpdate:  true,
	events.ActionRemove:  true,
	events.ActionStart:   true,
	events.ActionDie:     true,
	events.ActionDestroy: true,
	events.ActionOOM:     true,
}

// Watch follows the engine's event stream. Service events (create, update,
// remove) come from the whole swarm but carry no labels, so any service
// event nudges. A task dying raises no service event at all: only the
// container events of the node it ran on tell, and the manager's stream
// holds only its own node's, filtered here on the pool label (the daemon's
// label filter would also drop the label-less service events). Deaths on
// other nodes wait for the scaler's periodic reconcile.
//
// The stream is re-opened after an error with capped exponential back-off,
// and a nudge follows every re-open, since events may have been missed.
func (s *Swarm) Watch(ctx context.Context) <-chan struct{} {
	args := filters.NewArgs(
		filters.Arg("type", string(events.ServiceEventType)),
		filters.Arg("type", string(events.ContainerEventType)),
	)
	for a := range watchedActions {
		args.Add("event", string(a))
	}
	return engine.Watch(ctx, s.eng, args, s.relevant, s.log)
}

func (s *Swarm) relevant(m events.Message) bool {
	if !watchedActions[m.Action] {
		return false
	}
	switch m.Type {
	case events.ServiceEventType:
		return true
	case events.ContainerEventType:
		return m.Actor.Attributes[driver.LabelPool] == s.cfg.Pool
	}
	return false
}
