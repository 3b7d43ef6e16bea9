package config

import (
	"os"
	"strconv"
	"strings"
)

// DefaultGCPercent is the balancer's GC target when GOGC is unset. Go's
// default of 100 runs a collection each time the heap doubles; the
// balancer's live heap is small (per-connection buffers, the pool) and its
// garbage is all per-request, so at 100 the collector took about 12% of
// the CPU per proxied request, and 400 saves most of that for a few MiB
// (docs/performance.md has the figures side by side).
const DefaultGCPercent = 400

// GC is how the balancer sets up Go's collector.
type GC struct {
	// Percent is the GC target to set; 0 leaves GOGC's (set by the user).
	Percent int
	// MemoryLimit is the soft memory limit to set, in bytes; 0 leaves
	// GOMEMLIMIT's. A 400% target lets the heap grow five times its live
	// size between collections, so inside a container with a memory limit
	// the collector is told to work harder before the limit is reached,
	// instead of the kernel killing the balancer at it.
	MemoryLimit int64
}

// GCSettings decides the collector's settings from the environment and the
// container's memory limit in bytes (0: none): a user's GOGC or GOMEMLIMIT
// always wins; otherwise DefaultGCPercent, and 90% of the container's
// limit as the soft limit.
func GCSettings(lookup func(string) (string, bool), containerLimit int64) GC {
	var g GC
	if v, ok := lookup("GOGC"); !ok || v == "" {
		g.Percent = DefaultGCPercent
		if v, ok := lookup("GOMEMLIMIT"); (!ok || v == "") && containerLimit > 0 {
			g.MemoryLimit = containerLimit / 10 * 9
		}
	}
	return g
}

// noLimit: a cgroup v1 memory limit this large means none (the kernel
// reports the largest page-aligned int64).
const noLimit = 1 << 62

// ContainerMemoryLimit reads the memory limit of the balancer's cgroup (v2,
// then v1), in bytes; 0 when there is none or it cannot be read.
func ContainerMemoryLimit() int64 {
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		return parseMemoryLimit(string(b))
	}
	return 0
}

// parseMemoryLimit reads a cgroup memory limit file's content: a number of
// bytes, or "max" (v2) or a huge number (v1) for none.
func parseMemoryLimit(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 || n >= noLimit {
		return 0
	}
	return n
}
