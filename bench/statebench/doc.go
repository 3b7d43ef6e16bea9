// Package statebench measures what the balancers' shared state costs Redis:
// CPU, sync latency, bytes per sync and the worst overshoot of a backend's
// MAX_INFLIGHT, for B backends synced by N balancers, idle and under load.
//
// The sync script's work grows with B × N (every balancer reports and is
// granted every backend, Interval after Interval), so a change to it is
// judged by these figures against a real redis-server, not by reading the
// Lua. The balancers are real cluster.Syncers on their own connections, run
// as goroutines of the benchmark so that B × N × modes fits in minutes on a
// small machine; BenchmarkStateProcesses checks once that real balancer
// processes cost Redis the same.
//
// The load model (sim.go) is open-loop and cheap: one driver goroutine per
// balancer with Poisson arrivals, exponential service times and a FIFO
// queue, acquiring and releasing the same pool slots a proxied request
// would, while a cluster-wide count per backend records the worst overshoot
// of the limit the grants are meant to hold.
//
//	go test -run '^$' -bench 'BenchmarkState$' -benchtime=1x ./bench/statebench/
//	scripts/bench-state
package statebench
