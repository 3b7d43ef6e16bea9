package control

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"lbscale/internal/adminauth"
	"lbscale/internal/state"
	"lbscale/scaler/dashboard"
)

// Status is the scaler's /status document.
type Status struct {
	ID   string `json:"id"`
	Pool string `json:"pool"`
	// Pools are the pools this scaler runs, in the pool file's order
	// (/status?pool=NAME shows another); Retiring those it is draining
	// and removing since they left the pool file.
	Pools    []string `json:"pools"`
	Retiring []string `json:"retiring,omitempty"`
	Leader   bool     `json:"leader"`
	// Instance is this process's name in the lease: SCALER_ID, a slash,
	// and a suffix of its own, so that a restarted scaler is told apart.
	Instance string `json:"instance"`
	// LeaderID is the Instance of the scaler that leads, as this one last
	// heard from Redis: its own when Leader, another's on a follower, ""
	// when nobody leads or before Redis answered.
	LeaderID string `json:"leader_id"`
	// Desired is the replica count the latest load reading asked for;
	// Replicas the ready containers; Starting and Draining the others.
	// These are the leader's view: a follower reports them, and Inflight,
	// Queued and Demand, from the leader's latest Summary (at most a
	// second old), zero while it has none from the scaler that leads.
	Desired  int `json:"desired"`
	Replicas int `json:"replicas"`
	Starting int `json:"starting"`
	Draining int `json:"draining"`
	// Inflight and Queued are the latest cluster-wide load reading.
	Inflight int64 `json:"inflight"`
	Queued   int64 `json:"queued"`
	// Demand is the latest demand reading and what the windows make of it.
	Demand Demand `json:"demand"`
	// Floor is the pool's minimum now and its source: MIN_REPLICAS, an
	// active MIN_SCHEDULE entry, or the learned floor (FORECAST), never
	// above MAX_REPLICAS. The leader's view, as Desired.
	Floor Floor `json:"floor"`
	// Flaps counts scale-ups within STABLE_WINDOW of a scale-down, this
	// process's lifetime.
	Flaps int `json:"flaps"`
	// Members are the containers as the leader tracks them.
	Members []MemberStatus `json:"members"`
	// Registry is what balancers see (read from the store now).
	Registry      []state.Backend `json:"registry"`
	RegistryError string          `json:"registry_error,omitempty"`
	// Events are the latest scale events, oldest first.
	Events []Event `json:"events"`
	// Deploy is the pool's latest deploy (none: never deployed).
	Deploy *state.Deploy `json:"deploy,omitempty"`
	// Conns are the open long-lived connections on the pool's containers.
	Conns int64 `json:"conns"`
	// Problems are operations failing right now, with their latest error.
	Problems map[string]string `json:"problems,omitempty"`
	Config   StatusConfig      `json:"config"`
	// Dashboard is where the live page is: "/" of this admin port.
	Dashboard string `json:"dashboard"`
}

// MemberStatus is one container in Status.
type MemberStatus struct {
	ID    string    `json:"id"`
	Addr  string    `json:"addr"`
	State string    `json:"state"`
	Since time.Time `json:"since,omitzero"`
	// Image is the image the container runs.
	Image string `json:"image,omitempty"`
	// Conns are its open long-lived connections, cluster-wide.
	Conns int64 `json:"conns"`
}

// StatusConfig echoes the thresholds in force.
type StatusConfig struct {
	MinReplicas     int     `json:"min_replicas"`
	MaxReplicas     int     `json:"max_replicas"`
	TargetInflight  int     `json:"target_inflight"`
	ScaleUpCooldown string  `json:"scale_up_cooldown"`
	IdleTimeout     string  `json:"idle_timeout"`
	ScaleDown       string  `json:"scale_down_interval"`
	ScaleDownRule   string  `json:"scale_down"`
	StableWindow    string  `json:"stable_window"`
	PanicWindow     string  `json:"panic_window"`
	MaxScaleDown    float64 `json:"max_scale_down_rate"`
	BacklogDrain    string  `json:"backlog_drain"`
	DrainTimeout    string  `json:"drain_timeout"`
	Image           string  `json:"web_image"`
	Network         string  `json:"network"`
	Driver          string  `json:"driver"`
}

// Pool is the name of the controller's pool.
func (c *Controller) Pool() string { return c.cfg.Pool }

// Leader reports whether this scaler leads now.
func (c *Controller) Leader() bool { return c.leader.Load() }

// Healthy reports an error when the lease loop has not run for three lease
// periods (it is stuck); Docker or Redis trouble is not ill health — the
// scaler waits it out — and shows in /status problems instead.
func (c *Controller) Healthy() error {
	last := c.lease.lastRound()
	if d := c.now().Sub(last); d > 3*c.cfg.LeaseTTL+time.Second {
		return fmt.Errorf("lease loop silent for %s", d.Round(time.Millisecond))
	}
	return nil
}

// Gatherer is the controller's Prometheus registry: its pool's series
// only (the process's are ProcessGatherer's).
func (c *Controller) Gatherer() prometheus.Gatherer { return c.m.reg }

// Dashboard is the controller's live page and its data stream.
func (c *Controller) Dashboard() *dashboard.Hub { return c.dash }

// Status returns the current picture; it reads the registry from the store.
func (c *Controller) Status(ctx context.Context) Status {
	s := Status{
		ID:       c.cfg.ID,
		Instance: c.instance,
		Pool:     c.cfg.Pool,
		Pools:    c.pools(),
		Config: StatusConfig{
			MinReplicas:     c.cfg.MinReplicas,
			MaxReplicas:     c.cfg.MaxReplicas,
			TargetInflight:  c.cfg.TargetInflight,
			ScaleUpCooldown: c.cfg.ScaleUpCooldown.String(),
			IdleTimeout:     c.cfg.IdleTimeout.String(),
			ScaleDown:       c.cfg.ScaleDownSpec,
			ScaleDownRule:   c.cfg.ScaleDown,
			StableWindow:    c.cfg.StableWindow.String(),
			PanicWindow:     c.cfg.PanicWindow.String(),
			MaxScaleDown:    c.cfg.MaxScaleDownRate,
			BacklogDrain:    c.cfg.BacklogDrain.String(),
			DrainTimeout:    c.cfg.DrainTimeout.String(),
			Image:           c.cfg.WebImage,
			Network:         c.cfg.Network,
			Driver:          c.cfg.Driver,
		},
		Members:   []MemberStatus{},
		Registry:  []state.Backend{},
		Dashboard: "/",
	}
	s.Flaps = c.flaps.count()
	s.LeaderID = c.lease.leaderID()
	if c.leader.Load() {
		r := c.up.latest()
		ready, starting, draining := c.members.counts()
		// A term ends by clearing the flag, then forgetting its pool: if
		// the flag is still set, the figures were read before that, so
		// they are the leader's view and not a half-forgotten one.
		if c.leader.Load() {
			s.Leader = true
			s.Desired, s.Inflight, s.Queued, s.Demand = r.desired, r.inflight, r.queued, r.demand
			s.Replicas, s.Starting, s.Draining = ready, starting, draining
			s.Floor = c.floor.latest()
		}
	}
	s.Members = c.members.status()
	s.Problems = c.rep.failing()
	sort.Slice(s.Members, func(i, j int) bool { return s.Members[i].ID < s.Members[j].ID })
	s.Events = c.rep.events.list()
	if s.Events == nil {
		s.Events = []Event{}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if !s.Leader && s.LeaderID != "" {
		// Every scaler's /status describes the pool, not its own role in
		// it: loadtest --status may poll any of them. An error leaves the
		// zeros; the dashboard's stream reports the same read failing.
		if sum, ok, err := c.readSummary(ctx); err == nil && ok && sum.Leader == s.LeaderID {
			s.Desired, s.Replicas, s.Starting, s.Draining = sum.Desired, sum.Replicas, sum.Starting, sum.Draining
			s.Inflight, s.Queued, s.Demand = sum.Inflight, sum.Queued, sum.Demand
			s.Floor = sum.Floor
		}
	}
	if d, ok, err := c.store.Deploy(ctx); err == nil && ok {
		s.Deploy = &d
	}
	if reg, err := c.store.Backends(ctx); err != nil {
		s.RegistryError = err.Error()
	} else if reg != nil {
		s.Registry = reg
	}
	// Connections come from the balancers' reports, read here: a
	// follower has no load readings of its own, and /status describes the
	// pool whichever scaler answers.
	if rs, err := c.store.Reports(ctx); err == nil {
		st := sumReports(rs, c.now())
		for i := range s.Members {
			s.Members[i].Conns = st[s.Members[i].ID].Conns
		}
		for _, b := range s.Registry {
			s.Conns += st[b.ID].Conns
		}
	}
	return s
}

// Handler serves the admin endpoints: the live dashboard at / (its data
// stream at dashboard.StreamPath), /healthz, /status (JSON) and /metrics
// (Prometheus). With ADMIN_TOKEN set, everything but /healthz and the page
// itself (which holds no data, and asks for the token) wants it as a
// bearer token.
func (c *Controller) Handler() http.Handler {
	r := chi.NewRouter()
	r.Get("/", c.dash.Page)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := c.Healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	r.Group(func(r chi.Router) {
		r.Use(adminauth.Bearer(c.cfg.AdminToken))
		r.Get("/status", func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(c.Status(req.Context()))
		})
		r.Handle("/metrics", promhttp.HandlerFor(prometheus.Gatherers{ProcessGatherer(), c.m.reg}, promhttp.HandlerOpts{}))
		r.Get(dashboard.StreamPath, c.dash.Stream)
	})
	return r
}
