//go:build !linux

package server

import (
	"context"
	"time"
)

// burn spins for d of wall time (no per-thread CPU clock on this system):
// close to d of CPU on an idle host, less on a busy one.
func burn(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	return burnWall(ctx, d)
}
