package swarm

import (
	"context"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"

	"lbscale/scaler/driver"
	"lbscale/scaler/driver/engine"
)

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
