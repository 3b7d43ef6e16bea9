package swarm

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"
)

// fakeEngine is the part of a swarm manager's Engine API the driver calls,
// holding services and tasks in memory for a test to arrange and inspect.
type fakeEngine struct {
	srv *httptest.Server

	// mu guards everything below.
	mu       sync.Mutex
	seq      int
	services map[string]*swarm.Service // by id
	tasks    map[string]*swarm.Task    // by id
	// notManager makes /info report a node outside any swarm.
	notManager bool
	// ignoreLabels makes /services ignore its label filter.
	ignoreLabels bool
	// boot: how many task-list calls a created service's task takes to run
	// (-1: never); reject, if set, makes it rejected with that error.
	boot   int
	reject string
	// linger: how many task-list calls a removed service's tasks survive.
	linger int
	// localLinger: how many inspections a removed task's container
	// survives on this node (the agent removes it after the task is gone).
	localLinger int
	// vanish names a service removed just before the next task list is
	// served, as by a Stop racing a List.
	vanish string
	// removed lists the ids of services removed, in order.
	removed []string
	// unexpected lists calls to endpoints the fake does not serve.
	unexpected []string
	// lastSpec is the spec of the latest service created.
	lastSpec swarm.ServiceSpec
	// streams ends the open event streams; opens counts opened ones.
	streams []chan events.Message
	opens   int
	opened  chan struct{}
}

const fakeNetwork = "lbscale-web"

// diedAfter is how long a task added in a terminal state had run.
const diedAfter = 30 * time.Second

func newFakeEngine(t *testing.T) *fakeEngine {
	e := &fakeEngine{
		services: map[string]*swarm.Service{},
		tasks:    map[string]*swarm.Task{},
		opened:   make(chan struct{}, 16),
	}
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.srv.Close)
	return e
}

// driver returns a Swarm driver talking to the fake.
func (e *fakeEngine) driver(t *testing.T, cfg Config) *Swarm {
	t.Helper()
	if cfg.Network == "" {
		cfg.Network = fakeNetwork
	}
	if cfg.Port == 0 {
		cfg.Port = 8080
	}
	s, err := New(cfg, client.WithHost("tcp://"+strings.TrimPrefix(e.srv.URL, "http://")), client.WithHTTPClient(e.srv.Client()))
	if err != nil {
		t.Fatal(err)
	}
	s.poll = 5 * time.Millisecond
	t.Cleanup(func() { s.Close() })
	return s
}

func (e *fakeEngine) id() string {
	e.seq++
	return fmt.Sprintf("id%04d", e.seq)
}

// addService adds a service named name with labels, created at created.
func (e *fakeEngine) addService(name string, labels map[string]string, created time.Time) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	svc := &swarm.Service{ID: e.id(), Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: name, Labels: labels}}}
	svc.CreatedAt = created
	e.services[svc.ID] = svc
	return svc.ID
}

// addTask adds a task of service svcID; addr (CIDR, "" for none) is on
// network.
func (e *fakeEngine) addTask(svcID string, desired, state swarm.TaskState, created time.Time, network, addr string) *swarm.Task {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.addTaskLocked(svcID, desired, state, created, network, addr)
}

func (e *fakeEngine) addTaskLocked(svcID string, desired, state swarm.TaskState, created time.Time, network, addr string) *swarm.Task {
	t := &swarm.Task{ID: e.id(), ServiceID: svcID, DesiredState: desired}
	t.CreatedAt = created
	t.Status = swarm.TaskStatus{State: state, Timestamp: created}
	if terminal(state) {
		t.Status.Timestamp = created.Add(diedAfter) // it ran a while
	}
	if state == swarm.TaskStateRunning {
		t.Status.ContainerStatus = &swarm.ContainerStatus{ContainerID: "c-" + t.ID}
	}
	if addr != "" {
		var na swarm.NetworkAttachment
		na.Network.ID = "net-" + network
		na.Network.Spec.Name = network
		na.Addresses = []string{addr}
		t.NetworksAttachments = []swarm.NetworkAttachment{na}
	}
	e.tasks[t.ID] = t
	return t
}

// send delivers m on every open event stream.
func (e *fakeEngine) send(m events.Message) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.streams {
		c <- m
	}
}

// breakStreams ends every open event stream, as a restarting engine would.
func (e *fakeEngine) breakStreams() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.streams {
		close(c)
	}
	e.streams = nil
}

func (e *fakeEngine) serviceByRef(ref string) *swarm.Service {
	if svc := e.services[ref]; svc != nil {
		return svc
	}
	for _, svc := range e.services {
		if svc.Spec.Name == ref {
			return svc
		}
	}
	return nil
}

var versioned = regexp.MustCompile(`^/v1\.\d+`)

func (e *fakeEngine) serve(w http.ResponseWriter, r *http.Request) {
	path := versioned.ReplaceAllString(r.URL.Path, "")
	if path == "/_ping" {
		w.Header().Set("Api-Version", "1.41")
		w.Write([]byte("OK"))
		return
	}
	if path == "/events" && r.Method == http.MethodGet {
		e.serveEvents(w, r)
		return
	}
	args, err := filters.FromJSON(r.URL.Query().Get("filters"))
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case path == "/info" && r.Method == http.MethodGet:
		info := system.Info{Swarm: swarm.Info{LocalNodeState: swarm.LocalNodeStateActive, ControlAvailable: true}}
		if e.notManager {
			info.Swarm = swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive}
		}
		writeJSON(w, info)
	case path == "/services" && r.Method == http.MethodGet:
		out := []swarm.Service{}
		for _, svc := range e.services {
			if e.ignoreLabels || args.MatchKVList("label", svc.Spec.Labels) {
				out = append(out, *svc)
			}
		}
		writeJSON(w, out)
	case path == "/services/create" && r.Method == http.MethodPost:
		var spec swarm.ServiceSpec
		if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		if e.serviceByRef(spec.Name) != nil {
			httpError(w, http.StatusConflict, "name conflicts with an existing object")
			return
		}
		e.lastSpec = spec
		svc := &swarm.Service{ID: e.id(), Spec: spec}
		svc.CreatedAt = time.Now()
		e.services[svc.ID] = svc
		state := swarm.TaskStatePending
		if e.reject != "" {
			state = swarm.TaskStateRejected
		}
		t := e.addTaskLocked(svc.ID, swarm.TaskStateRunning, state, time.Now(), "", "")
		t.Status.Err = e.reject
		writeJSON(w, swarm.ServiceCreateResponse{ID: svc.ID})
	case strings.HasPrefix(path, "/services/") && r.Method == http.MethodGet:
		svc := e.serviceByRef(strings.TrimPrefix(path, "/services/"))
		if svc == nil {
			httpError(w, http.StatusNotFound, "service not found")
			return
		}
		writeJSON(w, svc)
	case strings.HasPrefix(path, "/services/") && r.Method == http.MethodDelete:
		svc := e.serviceByRef(strings.TrimPrefix(path, "/services/"))
		if svc == nil {
			httpError(w, http.StatusNotFound, "service not found")
			return
		}
		delete(e.services, svc.ID)
		e.removed = append(e.removed, svc.ID)
		for id, t := range e.tasks {
			if t.ServiceID == svc.ID {
				t.DesiredState = swarm.TaskStateRemove
				if e.linger == 0 {
					delete(e.tasks, id)
				}
			}
		}
	case strings.HasPrefix(path, "/containers/") && strings.HasSuffix(path, "/json") && r.Method == http.MethodGet:
		if e.localLinger <= 0 {
			httpError(w, http.StatusNotFound, "No such container")
			return
		}
		e.localLinger--
		writeJSON(w, map[string]any{"Id": strings.TrimSuffix(strings.TrimPrefix(path, "/containers/"), "/json")})
	case path == "/tasks" && r.Method == http.MethodGet:
		e.serveTasks(w, args)
	default:
		e.unexpected = append(e.unexpected, r.Method+" "+r.URL.Path)
		httpError(w, http.StatusNotFound, "page not found")
	}
}

// serveTasks lists tasks (filters service, id); each call is also a tick
// that boots created tasks and ends removed ones.
func (e *fakeEngine) serveTasks(w http.ResponseWriter, args filters.Args) {
	if svc := e.serviceByRef(e.vanish); svc != nil {
		delete(e.services, svc.ID)
		e.vanish = ""
	}
	svcs := map[string]bool{}
	for _, ref := range args.Get("service") {
		svc := e.serviceByRef(ref)
		if svc == nil {
			httpError(w, http.StatusNotFound, "service "+ref+" not found")
			return
		}
		svcs[svc.ID] = true
	}
	out := []swarm.Task{}
	for _, t := range e.tasks {
		if (len(svcs) == 0 || svcs[t.ServiceID]) && (!args.Contains("id") || args.ExactMatch("id", t.ID)) {
			out = append(out, *t)
		}
	}
	for id, t := range e.tasks {
		switch {
		case t.DesiredState == swarm.TaskStateRemove:
			if e.linger--; e.linger <= 0 {
				delete(e.tasks, id)
			}
		case t.Status.State == swarm.TaskStatePending && e.boot >= 0:
			if e.boot--; e.boot < 0 {
				t.Status.State = swarm.TaskStateRunning
				t.Status.ContainerStatus = &swarm.ContainerStatus{ContainerID: "c-" + t.ID}
				var na swarm.NetworkAttachment
				na.Network.ID = "net-" + fakeNetwork
				na.Network.Spec.Name = fakeNetwork
				na.Addresses = []string{"10.0.1.9/24"}
				t.NetworksAttachments = []swarm.NetworkAttachment{na}
			}
		}
	}
	writeJSON(w, out)
}

func (e *fakeEngine) serveEvents(w http.ResponseWriter, r *http.Request) {
	c := make(chan events.Message, 16)
	e.mu.Lock()
	e.streams = append(e.streams, c)
	e.opens++
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		for i, o := range e.streams {
			if o == c {
				e.streams = append(e.streams[:i], e.streams[i+1:]...)
				break
			}
		}
	}()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	e.opened <- struct{}{}
	enc := json.NewEncoder(w)
	for {
		select {
		case <-r.Context().Done():
			return
		case m, ok := <-c:
			if !ok {
				return
			}
			enc.Encode(m)
			w.(http.Flusher).Flush()
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"message": msg})
}
