package server

import (
	"context"
	"sync/atomic"
	"time"
)

// burnWall spins for d of wall time; the fallback where the thread's CPU
// clock cannot be read.
func burnWall(ctx context.Context, d time.Duration) error {
	end := time.Now().Add(d)
	x := uint64(end.UnixNano())
	for i := 0; time.Now().Before(end); i++ {
		for j := 0; j < 32768; j++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
		if i%16 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	sink.Store(x)
	return nil
}

// sink keeps the compiler from removing the burn loops' arithmetic.
var sink atomic.Uint64
