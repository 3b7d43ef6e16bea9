// Package sim is a trace-driven simulator of the scaler: it runs the same
// decide.Autoscaler the controller runs (scaler/control), with a fake clock,
// against a modelled pool of containers, so a policy can be judged on pools
// of 100–1,000 containers and hours of traffic in seconds of CPU, where the
// Docker experiments (docs/results.md) reach a dozen containers and minutes.
// A Knative KPA baseline (KPA), written from its published formula, runs
// behind the same Policy interface and in the same loop, so the two differ
// only in what they read (each what its own system would: the balancers'
// sums, or Knative's sampled scrape) and how they decide.
//
// # The model, and why
//
// Time advances in fixed steps (Model.Step, 50 ms by default): shorter
// than the service time (200 ms) and the poll (250 ms), so the order of
// events inside a step does not matter at the scale of what is measured,
// and long enough that an hour is 72,000 steps. Everything is a count per
// step, never a per-request object, so 20,000 req/s for hours stays cheap:
//
//   - Arrivals: the trace's rate r(t) req/s gives r(t)·dt requests in a
//     step, split over the balancers by Model.Split (9:1 by default, as
//     the compose experiments' load generators split it), either spaced
//     deterministically (the running sum of r·dt, as the project's
//     loadtest walks the integral of its rate) or Poisson (Model.Poisson,
//     the default; a seeded math/rand/v2 source, so a run is
//     reproducible). Offered arrivals are measured over the last second,
//     as each balancer does (balancer/flow), failed ones included, and
//     summed over the balancers, as the scaler reads them.
//   - Queues: each balancer has its own FIFO queue, held as a count per
//     arrival step. A request still queued after Model.QueueTimeout fails
//     (QUEUE_TIMEOUT, 503); with Model.QueueMax > 0 the arrivals beyond it
//     (QUEUE_MAX, per balancer) fail too. Its wait is the number of steps
//     between its arrival and its start.
//   - Slot grants: each ready container's Model.Capacity slots are divided
//     among the balancers, and a balancer starts a request on a container
//     only within its own grant there (docs/architecture.md). Every
//     Model.Sync (SYNC_INTERVAL) the division follows the balancers'
//     demands (in flight plus queued, following a rise at once and
//     decaying over a second) as read at the previous sync, by systematic
//     sampling: slots laid out layer by layer across the containers, each
//     balancer owning a stretch in proportion to its demand plus one, the
//     grid's offset moving every 10 syncs and the containers' order
//     rotating every 4 epochs, so a change moves at most one slot per
//     boundary. A grant shrinks only as its requests finish and grows only
//     into slots the others left free, so the grants never exceed the
//     capacity. So a balancer whose grants are full queues even while
//     another's slots idle, and a shift of demand is followed a sync or
//     two late: the cost of several balancers that the scaler's sums of
//     in flight and queued do not show.
//   - Containers: a start takes Model.ColdStart before the container is
//     ready (and costs container-seconds from the start decision on). A
//     ready container serves up to Model.Capacity requests at once
//     (MAX_INFLIGHT; by default the target, as the scaler's config does),
//     optionally ramped up over Model.SlowStart after it turned ready, with
//     the balancer's own ramp (internal/slowstart). A request holds its
//     slot for the service time S (Model.Service, optionally ±Model.Jitter
//     uniformly); completions are kept per container in a ring indexed by
//     completion step, so a step's completions cost one read per container.
//   - Routing: least connections, as the balancers' default policy, each
//     balancer in turn over the containers where its grant has room. The
//     requests a step starts are handed out by water-filling: the ready,
//     non-draining containers with the fewest in flight (over every
//     balancer) are raised level by level; what does not fill a level goes
//     to a rotating subset, which stands for the balancer's random
//     tie-break. So whenever traffic is
//     not zero every ready container is handed requests in turn, and a
//     container's LastSeen (what the idle rule reads) is the last step in
//     which it was handed one, as the balancers report it.
//   - Draining: a drained container takes no new request, finishes what it
//     holds, and is gone at the first poll at which both its in-flight is 0
//     and Model.DrainSettle has passed since the drain (the controller's
//     drainOne; DRAIN_SETTLE), plus Model.StopDelay for the engine to stop
//     it. Until then it can be reclaimed (made ready again).
//   - Cost: container-seconds count every container that exists, starting,
//     ready, draining or stopping, as a cloud bill would.
//
// Latency is wait + service, counted in a histogram of steps (so its
// resolution is Model.Step); failed requests are not in it. The mean service
// time the scaler reads is that of the completions of the last second, the
// last known one when there were none.
//
// Simplified: the slot division is one computation for every balancer at
// once (each real balancer divides from its own reading of the demands and
// the sync script caps what it asks, so two may briefly disagree and wait a
// sync); SYNC_INTERVAL is rounded to whole steps, so the default 25 ms
// acts as one 50 ms step; a container that turns ready gets its grants at
// the next sync; every container has the same capacity in the layout, and
// the slow-start ramp bounds a container's total in flight rather than
// each grant; least connections reads every balancer's in-flight counts as
// they are, where a real balancer sees the others' up to 200 ms old.
//
// Not modelled: request failures other than queue time-outs and refusals,
// failed starts (so the back-off never applies), DRAIN_TIMEOUT (a drain
// always ends, since a draining container gets nothing new), Redis outages
// (the outage shares), balancers coming and going, the leader's reconcile
// loop (the policies keep MIN_REPLICAS themselves, as decide.Up does),
// long-lived connections (WebSocket, SSE: Sample.Conns and Candidate.Conns
// stay 0 and TARGET_CONNECTIONS is off, so the pool is sized by requests
// alone) and deploys (every container runs the current image: none is
// stale).
//
// # Driving a policy
//
// Every Scaler.Poll the loop builds a decide.Sample {At, Arrivals, Service,
// Inflight, Queued} and calls Policy.Poll with it, the pool's counts by
// phase and the time of the last start for demand; it applies the reclaims
// (draining → ready, newest first, as the controller's reclaim) and starts
// it returns. Every Scaler.ScaleDownEvery it calls Policy.ScaleDown with the
// ready containers as decide.Candidates and drains the ids returned. A flap
// is counted as the controller counts it: at a start or reclaim, if
// decide.Flap(lastDown, now, StableWindow), one flap, and lastDown is
// forgotten; if requests are queued at that moment, one queued start. Ours, with decide.RuleDemand or decide.RuleIdle
// (SCALE_DOWN), wraps decide.Autoscaler and calls nothing else, so what is
// measured is what the controller would decide. Fixed never scales (the
// model's own tests).
//
// KPA reads what Knative's autoscaler would read, not the balancers'
// sums: once a second its scraper takes every ready pod when there are at
// most 3, else a random sample (ScrapeSample: 7 of 10, 14 of 100, 16 of
// 1,000; drawn from a seeded source injected into KPA), averages what they
// report and multiplies by the ready count. A pod reports what its
// queue-proxy measures: its mean in flight over the last second plus the
// requests waiting in it, for which the model takes an equal share of the
// balancers' mean queue (in Knative a request waits in the queue-proxy of
// the pod it was routed to). Its stable and panic averages are over these
// per-second readings, and it decides every 2 s. Not modelled of Knative:
// the activator in the request path (it buffers when the burst capacity
// is exceeded; here the balancers' queue stands for it, and with no pod
// ready KPA reads the cluster's in flight plus queued, as from the
// activator), the autoscaler starting in panic mode after a restart, and
// scale to zero.
//
// The two policies run with the same MAX_REPLICAS, ten times the trace's
// peak (MaxFor), so that the bound decides neither: KPA overshoots at a
// step up (it reads the cold start's queue as standing concurrency) and a
// tighter bound would hide both the cost and the latency of that.
//
// # Metrics
//
// See Result. Flaps are also given per hour of trace, and "queued
// starts" count the scale-up decisions taken while requests waited: a
// scale-up that came after the load rather than before it, which is what a
// forecast would avoid. The ideal container-seconds are, for every second of the
// trace, ceil(r̄·S/target) containers (r̄ the offered rate's mean over that
// second, at least MIN_REPLICAS): what a clairvoyant scaler with no cold
// start and no headroom would pay. "p99 at steady load" leaves out the
// requests that arrived within Model.Transient (10 s by default) of a
// change of load, a second whose mean rate differs from the previous
// second's by more than 10% (the run's first second counts as one): a step
// or a burst needs a cold start and a backlog drain, which no policy can
// hide; what is left measures how well the pool fits the load it has.
//
// A run is deterministic: the same Config (its Seed included), a fresh
// policy and the same trace give the same Result, on any machine, since
// the clock is the step count and the only randomness is the seeded
// source.
//
// # Running it
//
//	go test -short ./scaler/sim    # the model's tests
//	go test ./scaler/sim           # and the targets at 100 containers (TestTargets)
//	SIM_REPORT=1 SIM_REPORT_OUT=report.md go test -count=1 -v -run '^TestReport$' -timeout 30m ./scaler/sim
//
// The last prints the markdown table docs quote, and writes it to
// SIM_REPORT_OUT when set: every trace at 10, 100 and 1,000 containers and
// cold starts of 1, 5 and 10 s, ours (SCALE_DOWN=demand) against KPA,
// Poisson arrivals over two balancers, a few minutes on two cores. With
// SIM_REPORT=1, TestTargets judges the 1,000-container rows too.
package sim
