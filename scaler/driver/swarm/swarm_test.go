package swarm

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/swarm"

	"lbscale/scaler/driver"
)

const pool = "p1"

func poolLabels(p string) map[string]string {
	return map[string]string{driver.LabelPool: p, driver.LabelRole: driver.RoleWeb}
}

var (
	t0      = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	minutes = func(n int) time.Time { return t0.Add(time.Duration(n) * time.Minute) }
)

func TestList(t *testing.T) {
	const (
		running   = swarm.TaskStateRunning
		shutdown  = swarm.TaskStateShutdown
		failed    = swarm.TaskStateFailed
		preparing = swarm.TaskStatePreparing
	)
	type task struct {
		desired, state swarm.TaskState
		created        time.Time
		network, addr  string
	}
	type service struct {
		name   string
		labels map[string]string
		tasks  []task
	}
	tests := []struct {
		name         string
		services     []service
		ignoreLabels bool
		vanish       string            // a service removed between the service and task lists
		now          time.Time         // List's clock; zero: an hour after t0
		want         []driver.Instance // ContainerID is not compared
	}{
		{
			name:     "running with an address",
			services: []service{{"a", poolLabels(pool), []task{{running, running, minutes(1), fakeNetwork, "10.0.1.5/24"}}}},
			want:     []driver.Instance{{ID: "a", State: "running", Addr: "10.0.1.5:8080", Created: minutes(1)}},
		},
		{
			name:     "running only on another network has no address",
			services: []service{{"a", poolLabels(pool), []task{{running, running, minutes(1), "ingress", "10.0.0.5/24"}}}},
			want:     []driver.Instance{{ID: "a", State: "running", Created: minutes(1)}},
		},
		{
			name:     "booting task is created, as old as the task",
			services: []service{{"a", poolLabels(pool), []task{{running, preparing, minutes(1), "", ""}}}},
			want:     []driver.Instance{{ID: "a", State: "created", Created: minutes(1)}},
		},
		{
			name: "restarting: the new task decides, not the old service or its dead task",
			services: []service{{"a", poolLabels(pool), []task{
				{shutdown, failed, minutes(50), fakeNetwork, "10.0.1.5/24"},
				{running, preparing, minutes(51), "", ""},
			}}},
			want: []driver.Instance{{ID: "a", State: "created", Created: minutes(51)}},
		},
		{
			name: "restarted and running again at a new address",
			services: []service{{"a", poolLabels(pool), []task{
				{shutdown, failed, minutes(50), fakeNetwork, "10.0.1.5/24"},
				{running, running, minutes(51), fakeNetwork, "10.0.1.7/24"},
			}}},
			want: []driver.Instance{{ID: "a", State: "running", Addr: "10.0.1.7:8080", Created: minutes(51)}},
		},
		{
			name:     "dead but still wanted: created since its death, awaiting Swarm's replacement",
			services: []service{{"a", poolLabels(pool), []task{{running, failed, minutes(7), fakeNetwork, "10.0.1.5/24"}}}},
			want:     []driver.Instance{{ID: "a", State: "created", Created: minutes(7).Add(diedAfter)}},
		},
		{
			name: "every task failed and none wanted: Swarm gave up, exited",
			services: []service{{"a", poolLabels(pool), []task{
				{shutdown, failed, minutes(1), "", ""},
				{shutdown, failed, minutes(2), "", ""},
				{shutdown, swarm.TaskStateRejected, minutes(3), "", ""},
			}}},
			want: []driver.Instance{{ID: "a", State: "exited", Created: t0}},
		},
		{
			name: "none wanted for a moment: Swarm between a death and the replacement, created since the death",
			now:  minutes(3).Add(diedAfter + giveUpAfter),
			services: []service{{"a", poolLabels(pool), []task{
				{shutdown, failed, minutes(1), "", ""},
				{shutdown, failed, minutes(3), "", ""},
			}}},
			want: []driver.Instance{{ID: "a", State: "created", Created: minutes(3).Add(diedAfter)}},
		},
		{
			name: "none wanted for longer than giveUpAfter: exited",
			now:  minutes(3).Add(diedAfter + giveUpAfter + time.Second),
			services: []service{{"a", poolLabels(pool), []task{
				{shutdown, failed, minutes(1), "", ""},
				{shutdown, failed, minutes(3), "", ""},
			}}},
			want: []driver.Instance{{ID: "a", State: "exited", Created: t0}},
		},
		{
			name:     "no task yet: created, as old as the service",
			services: []service{{"a", poolLabels(pool), nil}},
			want:     []driver.Instance{{ID: "a", State: "created", Created: t0}},
		},
		{
			name: "foreign and other-pool services are not listed",
			services: []service{
				{"mine", poolLabels(pool), []task{{running, running, minutes(1), fakeNetwork, "10.0.1.5/24"}}},
				{"unlabelled", nil, []task{{running, running, minutes(1), fakeNetwork, "10.0.1.6/24"}}},
				{"other", poolLabels("p2"), []task{{running, running, minutes(1), fakeNetwork, "10.0.1.7/24"}}},
			},
			want: []driver.Instance{{ID: "mine", State: "running", Addr: "10.0.1.5:8080", Created: minutes(1)}},
		},
		{
			name:         "belt and braces when the engine ignores the label filter",
			ignoreLabels: true,
			services: []service{
				{"mine", poolLabels(pool), []task{{running, running, minutes(1), fakeNetwork, "10.0.1.5/24"}}},
				{"other", poolLabels("p2"), []task{{running, running, minutes(1), fakeNetwork, "10.0.1.7/24"}}},
			},
			want: []driver.Instance{{ID: "mine", State: "running", Addr: "10.0.1.5:8080", Created: minutes(1)}},
		},
		{
			name:   "a service removed between the two lists costs a retry, not an error",
			vanish: "gone",
			services: []service{
				{"mine", poolLabels(pool), []task{{running, running, minutes(1), fakeNetwork, "10.0.1.5/24"}}},
				{"gone", poolLabels(pool), []task{{running, running, minutes(1), fakeNetwork, "10.0.1.6/24"}}},
			},
			want: []driver.Instance{{ID: "mine", State: "running", Addr: "10.0.1.5:8080", Created: minutes(1)}},
		},
		{name: "empty pool", want: []driver.Instance{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newFakeEngine(t)
			e.ignoreLabels, e.vanish = tc.ignoreLabels, tc.vanish
			e.boot = -1
			for _, svc := range tc.services {
				id := e.addService(svc.name, svc.labels, t0)
				for _, tk := range svc.tasks {
					e.addTask(id, tk.desired, tk.state, tk.created, tk.network, tk.addr)
				}
			}
			d := e.driver(t, Config{Pool: pool})
			now := tc.now
			if now.IsZero() {
				now = t0.Add(time.Hour)
			}
			d.now = func() time.Time { return now }
			got, err := d.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if got[i].ContainerID == "" {
					t.Errorf("%s: empty ContainerID", got[i].ID)
				}
				got[i].ContainerID = ""
				got[i].Created = got[i].Created.UTC()
			}
			slices.SortFunc(got, func(a, b driver.Instance) int { return strings.Compare(a.ID, b.ID) })
			if !slices.Equal(got, tc.want) {
				t.Errorf("List =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}

// TestListImage: the image comes from LabelImage, exactly as Start was
// given it; a service created before the label existed falls back to its
// task template's image, without the digest Swarm may have pinned.
func TestListImage(t *testing.T) {
	tests := []struct {
		name, label, template, want string
	}{
		{"label", "lbscale/webserver:v2", "lbscale/webserver:v2@sha256:" + strings.Repeat("ab", 32), "lbscale/webserver:v2"},
		{"label wins over a template the tag has moved from", "lbscale/webserver:v2", "lbscale/webserver:v1", "lbscale/webserver:v2"},
		{"no label: the template's image", "", "lbscale/webserver:v1", "lbscale/webserver:v1"},
		{"no label: the template's image, digest cut", "", "registry.local:5000/web:v1@sha256:" + strings.Repeat("cd", 32), "registry.local:5000/web:v1"},
		{"no label, no container spec", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newFakeEngine(t)
			labels := poolLabels(pool)
			if tc.label != "" {
				labels[driver.LabelImage] = tc.label
			}
			id := e.addService("a", labels, t0)
			if tc.template != "" {
				e.mu.Lock()
				e.services[id].Spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: tc.template}
				e.mu.Unlock()
			}
			e.addTask(id, swarm.TaskStateRunning, swarm.TaskStateRunning, minutes(1), fakeNetwork, "10.0.1.5/24")
			got, err := e.driver(t, Config{Pool: pool}).List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Image != tc.want {
				t.Fatalf("List = %+v, want image %q", got, tc.want)
			}
		})
	}
}

func TestStartSpec(t *testing.T) {
	e := newFakeEngine(t)
	e.boot = 3
	d := e.driver(t, Config{Pool: pool, Creator: "scaler-1", Constraints: []string{"node.role==worker"}, StopGrace: 5 * time.Second})
	spec := driver.Spec{Name: "lbscale-p1-web-0001", Image: "lbscale/webserver:t", Env: []string{"A=1"}, NanoCPUs: 250_000_000, MemoryBytes: 32 << 20}
	inst, err := d.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if inst.ID != spec.Name || inst.Addr != "10.0.1.9:8080" || inst.State != driver.StateRunning || !strings.HasPrefix(inst.ContainerID, "c-") || inst.Image != spec.Image {
		t.Fatalf("Start = %+v", inst)
	}
	if list, err := d.List(context.Background()); err != nil || len(list) != 1 || list[0].Image != spec.Image {
		t.Fatalf("List = %+v, %v; want %s with image %s", list, err, spec.Name, spec.Image)
	}

	e.mu.Lock()
	got, unexpected := e.lastSpec, e.unexpected
	e.mu.Unlock()
	if len(unexpected) > 0 {
		t.Errorf("calls outside the fake (a registry lookup?): %v", unexpected)
	}
	want := map[string]string{driver.LabelPool: pool, driver.LabelRole: driver.RoleWeb, driver.LabelCreator: "scaler-1", driver.LabelNetwork: fakeNetwork, driver.LabelImage: spec.Image}
	cs := got.TaskTemplate.ContainerSpec
	checks := []struct {
		what string
		ok   bool
	}{
		{"service name", got.Name == spec.Name},
		{"service labels", mapsEqual(got.Labels, want)},
		{"container labels", cs != nil && mapsEqual(cs.Labels, want)},
		{"image", cs != nil && cs.Image == spec.Image},
		{"hostname", cs != nil && cs.Hostname == spec.Name},
		{"env", cs != nil && slices.Equal(cs.Env, spec.Env)},
		{"capabilities dropped", cs != nil && slices.Equal(cs.CapabilityDrop, []string{"ALL"})},
		{"stop grace", cs != nil && cs.StopGracePeriod != nil && *cs.StopGracePeriod == 5*time.Second},
		{"limits", got.TaskTemplate.Resources != nil && got.TaskTemplate.Resources.Limits != nil &&
			got.TaskTemplate.Resources.Limits.NanoCPUs == spec.NanoCPUs && got.TaskTemplate.Resources.Limits.MemoryBytes == spec.MemoryBytes},
		{"constraints", got.TaskTemplate.Placement != nil && slices.Equal(got.TaskTemplate.Placement.Constraints, []string{"node.role==worker"})},
		{"network", len(got.TaskTemplate.Networks) == 1 && got.TaskTemplate.Networks[0].Target == fakeNetwork},
		{"dnsrr endpoint", got.EndpointSpec != nil && got.EndpointSpec.Mode == swarm.ResolutionModeDNSRR && len(got.EndpointSpec.Ports) == 0},
		{"one replica", got.Mode.Replicated != nil && got.Mode.Replicated.Replicas != nil && *got.Mode.Replicated.Replicas == 1},
		{"restart on any exit", got.TaskTemplate.RestartPolicy != nil && got.TaskTemplate.RestartPolicy.Condition == swarm.RestartPolicyConditionAny &&
			got.TaskTemplate.RestartPolicy.Delay != nil && *got.TaskTemplate.RestartPolicy.Delay == time.Second},
		{"restarts given up on in a crash loop", got.TaskTemplate.RestartPolicy != nil &&
			got.TaskTemplate.RestartPolicy.MaxAttempts != nil && *got.TaskTemplate.RestartPolicy.MaxAttempts > 0 &&
			got.TaskTemplate.RestartPolicy.Window != nil && *got.TaskTemplate.RestartPolicy.Window > 0},
		{"a health check every second, the image's own", cs != nil && cs.Healthcheck != nil && len(cs.Healthcheck.Test) == 0 &&
			cs.Healthcheck.Interval == time.Second && cs.Healthcheck.Retries > 0},
		{"no new privileges (for engines that honour it)", cs != nil && cs.Privileges != nil && cs.Privileges.NoNewPrivileges},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("service spec: wrong %s: %+v", c.what, got)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestStartFailures(t *testing.T) {
	tests := []struct {
		name    string
		boot    int
		reject  string
		taken   bool // a service of that name exists already
		wantErr string
	}{
		{name: "task rejected", boot: -1, reject: "No such image: x:y", wantErr: "No such image"},
		{name: "task never runs", boot: -1, wantErr: "not running after"},
		{name: "name taken", boot: 0, taken: true, wantErr: "create service"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newFakeEngine(t)
			e.boot, e.reject = tc.boot, tc.reject
			var existing string
			if tc.taken {
				existing = e.addService("web-1", poolLabels(pool), t0)
			}
			d := e.driver(t, Config{Pool: pool})
			d.startTimeout = 100 * time.Millisecond
			_, err := d.Start(context.Background(), driver.Spec{Name: "web-1", Image: "x:y"})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Start error = %v, want one containing %q", err, tc.wantErr)
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			if tc.taken {
				if len(e.removed) != 0 || e.services[existing] == nil {
					t.Fatalf("a failed Start touched the existing service: removed %v", e.removed)
				}
				return
			}
			if len(e.services) != 0 || len(e.removed) != 1 {
				t.Fatalf("services left after a failed Start: %d (removed %v)", len(e.services), e.removed)
			}
		})
	}
}

func TestStop(t *testing.T) {
	tests := []struct {
		name        string
		labels      map[string]string
		id          string // what Stop is asked for; "" is the service's name
		linger      int    // task-list calls the task survives its service
		localLinger int    // inspections its container survives the task
		wantErr     error
		wantRemoved bool
	}{
		{name: "own service is removed", labels: poolLabels(pool), wantRemoved: true},
		{name: "own service, its task lingering a while", labels: poolLabels(pool), linger: 4, wantRemoved: true},
		{name: "own service, its container lingering after its task", labels: poolLabels(pool), localLinger: 3, wantRemoved: true},
		{name: "other pool refused", labels: poolLabels("p2"), wantErr: driver.ErrNotInPool},
		{name: "unlabelled refused", labels: map[string]string{"x": "y"}, wantErr: driver.ErrNotInPool},
		{name: "not found is not an error", labels: poolLabels(pool), id: "no-such-service"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newFakeEngine(t)
			e.linger, e.localLinger = tc.linger, tc.localLinger
			svc := e.addService("web-1", tc.labels, t0)
			e.addTask(svc, swarm.TaskStateRunning, swarm.TaskStateRunning, t0, fakeNetwork, "10.0.1.5/24")
			id := tc.id
			if id == "" {
				id = "web-1"
			}
			err := e.driver(t, Config{Pool: pool}).Stop(context.Background(), id, time.Second)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Stop = %v, want %v", err, tc.wantErr)
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			if removed := len(e.removed) == 1; removed != tc.wantRemoved {
				t.Fatalf("service removed: %v, want %v", removed, tc.wantRemoved)
			}
			if tc.wantRemoved && (len(e.tasks) != 0 || e.localLinger != 0) {
				t.Fatalf("Stop returned with %d task(s) of the service left, its container visible %d more times", len(e.tasks), e.localLinger)
			}
		})
	}
}

func TestPing(t *testing.T) {
	for _, notManager := range []bool{false, true} {
		e := newFakeEngine(t)
		e.notManager = notManager
		err := e.driver(t, Config{Pool: pool}).Ping(context.Background())
		if got := err != nil && strings.Contains(err.Error(), "not a swarm manager"); got != notManager {
			t.Errorf("notManager=%v: Ping = %v", notManager, err)
		}
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{
		{Network: "n", Port: 80},
		{Pool: "p", Port: 80},
		{Pool: "p", Network: "n"},
		{Pool: "p", Network: "n", Port: 70000},
		{Pool: "p", Network: "n", Port: 80, StopGrace: -time.Second},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestWatch(t *testing.T) {
	e := newFakeEngine(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nudges := e.driver(t, Config{Pool: pool}).Watch(ctx)
	await := func(what string) {
		t.Helper()
		select {
		case <-nudges:
		case <-time.After(5 * time.Second):
			t.Fatalf("no nudge %s", what)
		}
	}
	opened := func() {
		t.Helper()
		select {
		case <-e.opened:
		case <-time.After(5 * time.Second):
			t.Fatal("event stream not (re)opened")
		}
	}
	opened()
	await("after the stream opened")

	e.send(events.Message{Type: events.ContainerEventType, Action: events.ActionDie,
		Actor: events.Actor{ID: "c1", Attributes: map[string]string{driver.LabelPool: pool}}})
	await("after a task container died")
	e.send(events.Message{Type: events.ServiceEventType, Action: events.ActionRemove, Actor: events.Actor{ID: "s1"}})
	await("after a service was removed")

	e.breakStreams()
	opened()
	await("after the stream was reopened")
}

// TestRelevant: which events nudge. The engine filters by type and action;
// the pool is checked here, since a daemon label filter would drop the
// label-less service events too.
func TestRelevant(t *testing.T) {
	mine := map[string]string{driver.LabelPool: pool}
	tests := []struct {
		m    events.Message
		want bool
	}{
		{events.Message{Type: events.ContainerEventType, Action: events.ActionDie, Actor: events.Actor{Attributes: mine}}, true},
		{events.Message{Type: events.ContainerEventType, Action: events.ActionStart, Actor: events.Actor{Attributes: mine}}, true},
		{events.Message{Type: events.ContainerEventType, Action: events.ActionDie, Actor: events.Actor{Attributes: map[string]string{driver.LabelPool: "p2"}}}, false},
		{events.Message{Type: events.ContainerEventType, Action: events.ActionDie}, false},
		{events.Message{Type: events.ContainerEventType, Action: events.ActionExecStart, Actor: events.Actor{Attributes: mine}}, false},
		{events.Message{Type: events.ServiceEventType, Action: events.ActionCreate}, true},
		{events.Message{Type: events.ServiceEventType, Action: events.ActionUpdate}, true},
		{events.Message{Type: events.NetworkEventType, Action: events.ActionCreate}, false},
	}
	d := &Swarm{cfg: Config{Pool: pool}}
	for _, tc := range tests {
		if got := d.relevant(tc.m); got != tc.want {
			t.Errorf("relevant(%s %s %v) = %v, want %v", tc.m.Type, tc.m.Action, tc.m.Actor.Attributes, got, tc.want)
		}
	}
}
