package swarm

import (
	"context"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"lbscale/scaler/driver"
)

// swarmDefaultStopGrace is what Swarm applies when a service sets none.
const swarmDefaultStopGrace = 10 * time.Second

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
