package server

import (
	"context"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// burn spins until the calling goroutine has used d of CPU time, or ctx
// ends (then it returns ctx's error). It counts the thread's CPU time, not
// wall time, with the goroutine locked to its thread: on a host where
// requests compete for cores each one still costs d of real CPU and so
// takes longer, which is what makes the CPU the bottleneck to scale out.
func burn(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start, ok := threadCPU()
	if !ok {
		return burnWall(ctx, d)
	}
	x := uint64(time.Now().UnixNano())
	for i := 0; ; i++ {
		// About 40 µs of arithmetic between clock reads, so the clock
		// (a system call) costs a few percent at most.
		for j := 0; j < 32768; j++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
		if now, _ := threadCPU(); now-start >= d {
			break
		}
		if i%16 == 0 && ctx.Err() != nil {
			sink.Store(x)
			return ctx.Err()
		}
	}
	sink.Store(x)
	return nil
}

func threadCPU() (time.Duration, bool) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}
