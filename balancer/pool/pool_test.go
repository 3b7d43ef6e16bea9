package pool

import (
	"sync"
	"testing"
)

func TestSlots(t *testing.T) {
	b := New("w", "127.0.0.1:1", 1, 3)
	for i := range 3 {
		if !b.TryAcquire() {
			t.Fatalf("acquire %d of 3 failed", i+1)
		}
	}
	if b.TryAcquire() || b.Available() {
		t.Fatal("a 4th slot beyond the grant of 3")
	}
	b.Release()
	if !b.Available() || b.Local() != 2 || b.Served() != 1 {
		t.Fatalf("after release: local %d served %d", b.Local(), b.Served())
	}
}

func TestShrinkGrantNeverBelowInflight(t *testing.T) {
	cases := []struct {
		name                 string
		grant, local, target int64
		wantGrant            int64
	}{
		{"shrinks to target", 4, 1, 2, 2},
		{"stops at in-flight", 4, 3, 1, 3},
		{"never grows", 2, 0, 4, 2},
		{"zero target, idle", 4, 0, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := New("w", "x:1", 1, 8)
			b.SetGrant(tc.grant, tc.grant)
			for range tc.local {
				b.TryAcquire()
			}
			if got := b.ShrinkGrant(tc.target); got != tc.wantGrant || b.Grant() != tc.wantGrant {
				t.Fatalf("ShrinkGrant(%d) = %d (grant %d), want %d", tc.target, got, b.Grant(), tc.wantGrant)
			}
			if b.Local() != tc.local {
				t.Fatalf("in-flight changed: %d", b.Local())
			}
		})
	}
}

// TestReleaseReturnsLentSlots: above its target, a finished request gives
// its slot back to the cluster instead of to the next queued request.
func TestReleaseReturnsLentSlots(t *testing.T) {
	b := New("w", "x:1", 1, 4)
	for range 4 {
		b.TryAcquire()
	}
	b.SetGrant(4, 1) // holds 4, fair share 1
	b.Release()
	b.Release()
	b.Release()
	if b.Grant() != 1 || b.Local() != 1 {
		t.Fatalf("grant %d local %d, want grant back at target 1", b.Grant(), b.Local())
	}
	b.Release()
	if b.Grant() != 1 || b.Local() != 0 {
		t.Fatalf("at target the slot stays: grant %d local %d", b.Grant(), b.Local())
	}
}

// TestConcurrentAcquireNeverExceedsGrant hammers one backend from many
// goroutines while the grant shrinks underneath them.
func TestConcurrentAcquireNeverExceedsGrant(t *testing.T) {
	b := New("w", "x:1", 1, 8)
	var wg sync.WaitGroup
	var over sync.Once
	failed := false
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20000 {
				if b.TryAcquire() {
					if b.Local() > 8 {
						over.Do(func() { failed = true })
					}
					b.Release()
				}
			}
		}()
	}
	for i := range 2000 {
		g := b.ShrinkGrant(int64(i % 3))
		if b.Local() > 8 || g < 0 {
			t.Fatalf("grant %d local %d", g, b.Local())
		}
		b.SetGrant(8, 8)
	}
	wg.Wait()
	if failed || b.Local() != 0 {
		t.Fatalf("in-flight went past the grant (%v) or leaked (%d)", failed, b.Local())
	}
}
