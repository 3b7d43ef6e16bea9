// Command lard measures what content-aware dispatch gains on backends that
// cache: the cache hit rate, latency and throughput of least-connections
// against consistent-hash keyed by URL path (HASH_KEY=path, locality-aware
// request distribution), through the real balancer.
//
// It starts N cache-like backends as HTTP servers on 127.0.0.1. Each keeps
// an LRU set of the paths it has served (-cache objects): a path in the set
// is a hit and answers after -hit (memory), any other is a miss and answers
// after -miss (a disk read), then joins the set. Each answer says which in
// its X-Cache header. It builds the balancer binary once (or runs the one
// -balancer names) and, for every configuration, starts it in front of
// fresh backends (empty caches) with BACKENDS, LB_POLICY, HASH_KEY and
// HASH_LOAD_FACTOR set, and drives the
// same closed-loop load through it: -clients concurrent clients send
// -requests GETs for /obj/<k>, k drawn from a Zipf distribution over
// -objects paths with a fixed seed, so every configuration sees the same
// sequence. MAX_INFLIGHT is set above -clients so that nothing queues and
// only the policy differs.
//
// Why the hit rate differs: least-connections sends every object to every
// backend, so each of N caches holds the same most popular objects and the
// pool caches about -cache distinct objects in all; by path, each object
// has one backend while it is under the bound, and the pool caches about
// N × -cache. The bound (HASH_LOAD_FACTOR) gives that back in part: a hot
// object whose backend is over it spills to the next backends on the ring.
//
// Run from the module:
//
//	go run ./bench/lard
//	go run ./bench/lard -runs least-connections,consistent-hash/path/1,consistent-hash/path/1.25,consistent-hash/path/2
//
// It prints one row per configuration: the hit rate (over all requests and
// over the second half, once the caches are warm), client-side mean, p50
// and p99 latency, requests per second, and the busiest backend's share of
// the requests (100/N % is an even spread). With -repeat, configurations
// alternate and each figure is the median over the rounds. Timings depend
// on the machine and what else runs on it; the hit rates are set by the
// policy, the key sequence and the concurrency, and vary little between
// runs.
package main
