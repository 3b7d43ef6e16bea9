package control

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"lbscale/internal/state"
	"lbscale/scaler/dashboard"
)

// summaryEvery is how often the leader publishes its Summary. It is kept
// for summaryTTL so that the next leader, however late it takes over,
// carries the event log on; dashboards show a Summary only while its
// author leads.
const (
	summaryEvery = time.Second
	summaryTTL   = 10 * time.Minute
)

// Summary is what the leading scaler tells every scaler's dashboard
// through the store: its decision and its event log, which only the leader
// holds. A follower's page shows the leader's word, not a blank.
type Summary struct {
	Leader  string    `json:"leader"`
	Since   time.Time `json:"since"`
	Desired int       `json:"desired"`
	// Ideal is the demand (the cluster's concurrency by Little's law) over
	// TARGET_INFLIGHT: the replicas the load needs, before rounding,
	// bounds and windows.
	Ideal  float64 `json:"ideal"`
	Events []Event `json:"events"`
	// Replicas, Starting and Draining are the members as the leader
	// tracks them; Inflight, Queued and Demand its latest load reading: a
	// follower's /status reports them as the leader's own does.
	Replicas int    `json:"replicas"`
	Starting int    `json:"starting"`
	Draining int    `json:"draining"`
	Inflight int64  `json:"inflight"`
	Queued   int64  `json:"queued"`
	Demand   Demand `json:"demand"`
	// Deploy is the pool's latest deploy as the leader read it (nil:
	// none); Images the members' ids by the image they run. Only the
	// leader tracks either, and a follower's page shows them.
	Deploy *state.Deploy       `json:"deploy,omitempty"`
	Images map[string][]string `json:"images,omitempty"`
	// Floor is the pool's minimum at the leader's latest poll.
	Floor Floor `json:"floor"`
}

// summary is this scaler's Summary, as leader.
func (c *Controller) summary() Summary {
	r := c.up.latest()
	ready, starting, draining := c.members.counts()
	s := Summary{Leader: c.instance, Since: c.lease.leaderSince(), Desired: r.desired,
		Ideal: r.demand.Steady / float64(max(c.cfg.TargetInflight, 1)), Events: c.rep.events.list(),
		Replicas: ready, Starting: starting, Draining: draining, Inflight: r.inflight, Queued: r.queued, Demand: r.demand,
		Images: map[string][]string{}, Floor: c.floor.latest()}
	if d, ok := c.dep.current(); ok {
		s.Deploy = &d
	}
	for _, m := range c.members.list() {
		if m.image != "" {
			s.Images[m.image] = append(s.Images[m.image], m.id)
		}
	}
	return s
}

// publishSummaries writes the Summary every summaryEvery for the term.
func (c *Controller) publishSummaries(ctx context.Context) {
	t := time.NewTicker(summaryEvery)
	defer t.Stop()
	for {
		doc, _ := json.Marshal(c.summary()) // plain data: cannot fail
		pctx, cancel := context.WithTimeout(ctx, summaryEvery)
		if err := c.store.PutSummary(pctx, doc, summaryTTL); err != nil && ctx.Err() == nil {
			c.rep.fail("redis summary", err)
		} else if err == nil {
			c.rep.recover("redis summary")
		}
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// readSummary returns the leader's latest Summary (ok false: none).
func (c *Controller) readSummary(ctx context.Context) (Summary, bool, error) {
	doc, err := c.store.Summary(ctx)
	if err != nil || doc == nil {
		return Summary{}, false, err
	}
	var s Summary
	if err := json.Unmarshal(doc, &s); err != nil {
		return Summary{}, false, fmt.Errorf("decode summary: %w", err)
	}
	return s, true, nil
}

// seedEvents carries the previous leader's event log into this term's, so
// that the dashboard's list of scale events goes on across a failover.
func (c *Controller) seedEvents(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if s, ok, err := c.readSummary(rctx); err == nil && ok && s.Leader != c.instance {
		c.rep.events.seed(s.Events)
	}
}

// Snapshot implements dashboard.Source: the registry, the cluster load and
// the balancers' reports from the store, with the leader's Summary (its own
// when this scaler leads). Every scaler serves it, leader or not. The open
// connections are summed from the reports read here, as the leader sums
// them (sumReports), so a follower needs no word of the leader's for them;
// the deploy and the members' images are the leader's.
func (c *Controller) Snapshot(ctx context.Context) (dashboard.Snapshot, error) {
	now := c.now()
	s := dashboard.Snapshot{Time: now, Pool: c.cfg.Pool, Pools: c.pools(), Scaler: c.instance, Problems: c.rep.failing(),
		Backends: []dashboard.Backend{}, Balancers: []dashboard.Balancer{}, Events: []dashboard.Event{}}
	s.Replicas.Min, s.Replicas.Max = c.cfg.MinReplicas, c.cfg.MaxReplicas
	reg, err := c.store.Backends(ctx)
	if err != nil {
		return s, err
	}
	load, err := c.store.ClusterLoad(ctx)
	if err != nil {
		return s, err
	}
	reports, err := c.store.Reports(ctx)
	if err != nil {
		return s, err
	}
	var sum Summary
	ok := false
	if c.leader.Load() {
		sum, ok = c.summary(), true
	} else if sum, ok, err = c.readSummary(ctx); err != nil {
		return s, err
	}
	s.Leader = dashboard.Leader{ID: c.lease.leaderID(), Self: c.leader.Load(), Since: c.lease.leaderSince()}
	images := map[string]string{}
	if ok && sum.Leader == s.Leader.ID {
		s.Leader.Since = sum.Since
		s.Deploy = pageDeploy(sum.Deploy)
		for img, ids := range sum.Images {
			for _, id := range ids {
				images[id] = img
			}
		}
		s.Replicas.Desired, s.Replicas.Ideal = sum.Desired, sum.Ideal
		for _, e := range sum.Events {
			s.Events = append(s.Events, dashboard.Event{Time: e.Time, Direction: e.Direction, Reason: string(e.Reason),
				From: e.From, To: e.To, IDs: e.IDs, TookMs: e.TookMs})
		}
	}
	if s.Leader.ID == "" {
		s.Leader.Since = time.Time{}
	}
	s.Backends, s.Replicas.Ready, s.Replicas.Starting, s.Replicas.Draining = backendViews(reg, load, reports)
	stats := sumReports(reports, now)
	for i := range s.Backends {
		b := &s.Backends[i]
		b.Image, b.Conns = images[b.ID], stats[b.ID].Conns
		s.Conns += b.Conns
		s.Requests.Inflight += b.Inflight
		if b.State == string(state.Ready) {
			s.Requests.Limit += b.Limit
		}
	}
	s.Requests.Queued, s.Requests.Rate = load.Queued, load.Arrivals
	s.Balancers = balancerViews(reports, now)
	return s, nil
}

// pageDeploy is the page's view of d (nil: none).
func pageDeploy(d *state.Deploy) *dashboard.Deploy {
	if d == nil {
		return nil
	}
	return &dashboard.Deploy{Phase: string(d.Phase), Image: d.Image, Previous: d.Previous, Reason: d.Reason,
		Started: d.Started, Finished: d.Finished}
}

// backendViews joins the registry with the load and the reports: in flight
// and last seen from the cluster load, the limit as the balancers apply it
// (the highest, since one that just saw a backend turn ready ramps it up
// from 1), served and failures summed over balancers.
func backendViews(reg []state.Backend, load state.ClusterLoad, reports []state.Report) (out []dashboard.Backend, ready, starting, draining int) {
	type counters struct {
		limit            int64
		served, failures uint64
	}
	byID := map[string]*counters{}
	for _, r := range reports {
		for _, b := range r.Backends {
			c := byID[b.ID]
			if c == nil {
				c = &counters{}
				byID[b.ID] = c
			}
			c.limit = max(c.limit, b.Limit)
			c.served += b.Served
			c.failures += b.Failures
		}
	}
	out = make([]dashboard.Backend, 0, len(reg))
	for _, e := range reg {
		v := dashboard.Backend{ID: e.ID, State: string(e.State), Inflight: load.Inflight[e.ID], LastSeen: load.LastSeen[e.ID]}
		if c := byID[e.ID]; c != nil {
			v.Limit, v.Served, v.Failures = c.limit, c.served, c.failures
		}
		switch e.State {
		case state.Ready:
			ready++
		case state.Starting:
			starting++
		case state.Draining:
			draining++
		}
		out = append(out, v)
	}
	return out, ready, starting, draining
}

// balancerViews turns the reports into the balancers' rows. A balancer
// reaches Redis when its report is fresh and its own latest sync worked; a
// silent one stays listed, with its last sync, until its report expires.
func balancerViews(reports []state.Report, now time.Time) []dashboard.Balancer {
	out := make([]dashboard.Balancer, 0, len(reports))
	for _, r := range reports {
		v := dashboard.Balancer{ID: r.Balancer, LastSync: r.LastSync, Reported: r.At, Queued: r.Queued, Rate: r.Arrivals,
			Redis: r.StoreUp && now.Sub(r.At) < state.ReportFresh}
		for _, b := range r.Backends {
			v.Inflight += b.Local
		}
		out = append(out, v)
	}
	return out
}
