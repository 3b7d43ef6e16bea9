package swarm

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"lbscale/scaler/driver"
)

// giveUpAfter is how long a service may have no task wanted running before
// List calls it exited. Between a task's death and the creation of its
// replacement, Swarm briefly wants no task of the service running at all;
// calling that "exited" would have the scaler remove a service Swarm is
// about to restart (seen here: a killed task's service replaced instead of
// restarted). Swarm creates the replacement within the restart delay and
// a beat of its orchestrator, so a gap longer than this is Swarm giving up.
const giveUpAfter = restartDelay + 10*time.Second

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

// image is the reference the service was created with: its LabelImage,
// or, for a service created before the driver set that label, the task
// template's image without the "@sha256:…" pin Swarm appends when it
// resolved a digest (the reference given is what a deploy compares).
func image(spec swarm.ServiceSpec) string {
	if ref := spec.Labels[driver.LabelImage]; ref != "" {
		return ref
	}
	if spec.TaskTemplate.ContainerSpec == nil {
		return ""
	}
	ref, _, _ := strings.Cut(spec.TaskTemplate.ContainerSpec.Image, "@sha256:")
	return ref
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
	inst := driver.Instance{ID: svc.Spec.Name, ContainerID: svc.ID, State: driver.StateCreated, Created: svc.CreatedAt, Image: image(svc.Spec)}
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
