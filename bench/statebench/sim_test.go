package statebench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"lbscale/balancer/pool"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 1)) }

func TestSplit(t *testing.T) {
	for _, c := range []struct {
		rate float64
		n    int
		want []float64
	}{
		{10000, 0, nil},
		{10000, 1, []float64{10000}},
		{10000, 2, []float64{5000, 5000}},
		{10000, 4, []float64{5000, 5000.0 / 3, 5000.0 / 3, 5000.0 / 3}},
		{9000, 10, []float64{4500, 500, 500, 500, 500, 500, 500, 500, 500, 500}},
		{0, 3, []float64{0, 0, 0}},
	} {
		got := Split(c.rate, c.n)
		if len(got) != len(c.want) {
			t.Fatalf("Split(%v, %d) = %v, want %v", c.rate, c.n, got, c.want)
		}
		var sum float64
		for i := range got {
			sum += got[i]
			if math.Abs(got[i]-c.want[i]) > 1e-9 {
				t.Errorf("Split(%v, %d) = %v, want %v", c.rate, c.n, got, c.want)
				break
			}
		}
		if c.n > 0 && math.Abs(sum-c.rate) > 1e-6 {
			t.Errorf("Split(%v, %d) sums to %v", c.rate, c.n, sum)
		}
	}
}

func TestMeanService(t *testing.T) {
	for _, c := range []struct {
		backends int
		limit    int64
		rate     float64
		want     time.Duration
	}{
		{400, 8, 10000, 288 * time.Millisecond},
		{16, 8, 10000, 11520 * time.Microsecond},
		{1000, 8, 10000, 720 * time.Millisecond},
		{100, 4, 1000, 360 * time.Millisecond},
		{100, 8, 0, 0},
	} {
		got := MeanService(c.backends, c.limit, c.rate, 0.9)
		if d := got - c.want; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("MeanService(%d, %d, %v, 0.9) = %v, want %v", c.backends, c.limit, c.rate, got, c.want)
		}
	}
}

func TestPoisson(t *testing.T) {
	p := NewPoisson(1000, t0, seeded(1))
	n, last := 0, t0
	for s := 1; s <= 100; s++ {
		now := t0.Add(time.Duration(s) * time.Second)
		for at, ok := p.Take(now); ok; at, ok = p.Take(now) {
			if at.Before(last) || at.After(now) {
				t.Fatalf("arrival at %v after %v, with now %v", at, last, now)
			}
			last = at
			n++
		}
	}
	// 100,000 expected; a Poisson count's standard deviation is ~316.
	if n < 98500 || n > 101500 {
		t.Errorf("%d arrivals in 100 s at 1000/s", n)
	}
	idle := NewPoisson(0, t0, seeded(1))
	if _, ok := idle.Take(t0.Add(time.Hour)); ok {
		t.Error("rate 0 arrived")
	}
}

func TestFinishingOrder(t *testing.T) {
	rng := seeded(2)
	var h finishing
	for range 500 {
		h.push(running{done: t0.Add(time.Duration(rng.IntN(1000)) * time.Millisecond)})
		if rng.IntN(3) == 0 {
			h.pop()
		}
	}
	prev := time.Time{}
	for len(h) > 0 {
		r := h.pop()
		if r.done.Before(prev) {
			t.Fatalf("popped %v after %v", r.done, prev)
		}
		prev = r.done
	}
}

func TestQueueExpire(t *testing.T) {
	q := Queue{Wait: time.Second}
	for _, ms := range []int{0, 500, 999, 1000} {
		q.Push(t0.Add(time.Duration(ms) * time.Millisecond))
	}
	for _, c := range []struct {
		at      time.Duration
		dropped int
		left    int
	}{
		{999 * time.Millisecond, 0, 4},
		{time.Second, 1, 3}, // waited exactly Wait: dropped
		{1999 * time.Millisecond, 2, 1},
		{2 * time.Second, 1, 0},
		{time.Hour, 0, 0},
	} {
		if got := q.Expire(t0.Add(c.at)); got != c.dropped || q.Len() != c.left {
			t.Errorf("Expire at +%v dropped %d leaving %d, want %d leaving %d", c.at, got, q.Len(), c.dropped, c.left)
		}
	}
}

func TestQueueFIFOAcrossCompaction(t *testing.T) {
	q := Queue{Wait: time.Hour}
	next, want := 0, 0
	for range 50 {
		for range 100 {
			q.Push(t0.Add(time.Duration(next)))
			next++
		}
		for range 70 {
			if got := int(q.at[q.head].Sub(t0)); got != want {
				t.Fatalf("front is %d, want %d", got, want)
			}
			q.Pop()
			want++
		}
	}
	if q.Len() != next-want {
		t.Fatalf("Len %d, want %d", q.Len(), next-want)
	}
}

// backends returns n pool backends holding grant slots each.
func backends(n int, grant int64) []*pool.Backend {
	bs := make([]*pool.Backend, n)
	for i := range bs {
		id := fmt.Sprintf("127.0.0.1:%d", 10000+i)
		bs[i] = pool.New(id, id, 1, 8)
		bs[i].SetGrant(grant, grant)
	}
	return bs
}

func ids(bs []*pool.Backend) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.ID
	}
	return out
}

func TestPick(t *testing.T) {
	t.Run("none free", func(t *testing.T) {
		if got := Pick(backends(5, 0), seeded(3)); got != -1 {
			t.Errorf("Pick = %d, want -1", got)
		}
		if got := Pick(nil, seeded(3)); got != -1 {
			t.Errorf("Pick of none = %d, want -1", got)
		}
	})
	t.Run("finds the only free slot", func(t *testing.T) {
		for seed := range uint64(50) {
			bs := backends(7, 0)
			free := int(seed % 7)
			bs[free].SetGrant(1, 1)
			if got := Pick(bs, seeded(seed)); got != free || bs[free].Local() != 1 {
				t.Fatalf("seed %d: Pick = %d, want %d", seed, got, free)
			}
		}
	})
	t.Run("prefers the less loaded of two", func(t *testing.T) {
		for seed := range uint64(20) {
			bs := backends(2, 8)
			for range 3 {
				bs[1].TryAcquire()
			}
			if got := Pick(bs, seeded(seed)); got != 0 {
				t.Fatalf("seed %d: Pick = %d, want 0 (1 has 3 in flight)", seed, got)
			}
		}
	})
	t.Run("fills every slot once", func(t *testing.T) {
		bs := backends(10, 3)
		rng := seeded(4)
		for i := range 30 {
			if Pick(bs, rng) < 0 {
				t.Fatalf("pick %d found no slot", i)
			}
		}
		if got := Pick(bs, rng); got != -1 {
			t.Fatalf("31st pick = %d, want -1", got)
		}
		for _, b := range bs {
			if b.Local() != 3 {
				t.Fatalf("%s has %d in flight, want 3", b.ID, b.Local())
			}
		}
	})
}

// fakeSource is a balancer whose set does not change.
type fakeSource struct {
	set   *pool.Set
	kicks int
}

func (f *fakeSource) Set() *pool.Set { return f.set }
func (f *fakeSource) Kick()          { f.kicks++ }

// scripted arrives at fixed times.
type scripted []time.Time

func (s *scripted) Take(now time.Time) (time.Time, bool) {
	if len(*s) == 0 || (*s)[0].After(now) {
		return time.Time{}, false
	}
	at := (*s)[0]
	*s = (*s)[1:]
	return at, true
}

func TestDriverQueuesAndStarts(t *testing.T) {
	bs := backends(2, 1)
	src := &fakeSource{set: &pool.Set{Backends: bs, Version: 1}}
	arr := scripted{t0, t0, t0}
	d := NewDriver(DriverOptions{Source: src, Arrivals: &arr, Service: time.Millisecond, Wait: time.Second,
		Rand: seeded(5), Overshoot: NewOvershoot(ids(bs), 1)})

	d.Step(t0)
	if d.Queued() != 1 || src.kicks != 1 || bs[0].Local()+bs[1].Local() != 2 {
		t.Fatalf("after 3 arrivals on 2 slots: queued %d, kicks %d, in flight %d+%d; want 1, 1, 2", d.Queued(), src.kicks, bs[0].Local(), bs[1].Local())
	}
	// Service times have a 1 ms mean: by +500 ms both are done (the chance
	// of one lasting that long is e^-500), and the queued one runs.
	d.Step(t0.Add(500 * time.Millisecond))
	if d.Queued() != 0 || d.Served() != 2 || bs[0].Local()+bs[1].Local() != 1 || d.Dropped() != 0 {
		t.Fatalf("at +500ms: queued %d, served %d, in flight %d, dropped %d; want 0, 2, 1, 0", d.Queued(), d.Served(), bs[0].Local()+bs[1].Local(), d.Dropped())
	}
	d.Step(t0.Add(time.Second))
	if d.Served() != 3 || d.o.Overshoot.Worst() != 0 {
		t.Fatalf("at +1s: served %d, worst overshoot %d; want 3, 0", d.Served(), d.o.Overshoot.Worst())
	}
}

func TestDriverDropsAfterWait(t *testing.T) {
	bs := backends(3, 0)
	src := &fakeSource{set: &pool.Set{Backends: bs}}
	arr := scripted{t0, t0.Add(300 * time.Millisecond)}
	d := NewDriver(DriverOptions{Source: src, Arrivals: &arr, Service: time.Millisecond, Wait: time.Second,
		Rand: seeded(6), Overshoot: NewOvershoot(ids(bs), 8)})
	for _, c := range []struct {
		at             time.Duration
		queued         int64
		dropped, kicks int
	}{
		{0, 1, 0, 1},
		{300 * time.Millisecond, 2, 0, 2},
		{999 * time.Millisecond, 2, 0, 2},
		{time.Second, 1, 1, 2},
		{1300 * time.Millisecond, 0, 2, 2},
	} {
		d.Step(t0.Add(c.at))
		if d.Queued() != c.queued || int(d.Dropped()) != c.dropped || src.kicks != c.kicks {
			t.Errorf("+%v: queued %d, dropped %d, kicks %d; want %d, %d, %d", c.at, d.Queued(), d.Dropped(), src.kicks, c.queued, c.dropped, c.kicks)
		}
	}
}

func TestOvershootAcrossBalancers(t *testing.T) {
	// Two balancers that each hold the whole limit of 2 (as without shared
	// state): together they put 4 on the backend, 2 over.
	a, b := backends(1, 2), backends(1, 2)
	over := NewOvershoot(ids(a), 2)
	var drivers []*Driver
	for i, bs := range [][]*pool.Backend{a, b} {
		arr := scripted{t0, t0}
		drivers = append(drivers, NewDriver(DriverOptions{Source: &fakeSource{set: &pool.Set{Backends: bs}}, Arrivals: &arr,
			Service: time.Millisecond, Wait: time.Second, Rand: seeded(uint64(i)), Overshoot: over}))
	}
	drivers[0].Step(t0)
	if over.Worst() != 0 {
		t.Fatalf("one balancer at its limit: worst %d, want 0", over.Worst())
	}
	drivers[1].Step(t0)
	if over.Worst() != 2 {
		t.Fatalf("two balancers at the limit each: worst %d, want 2", over.Worst())
	}
	for _, d := range drivers {
		d.Step(t0.Add(time.Second))
	}
	over.Reset()
	if over.Worst() != 0 || over.inflight[0].Load() != 0 {
		t.Fatalf("after all ended and Reset: worst %d, counted %d; want 0, 0", over.Worst(), over.inflight[0].Load())
	}
	if over.Index("elsewhere:1") != -1 {
		t.Fatal("an unknown backend has an index")
	}
}

// lockedSource is a fakeSource safe for Run's goroutine and the test's.
type lockedSource struct {
	mu sync.Mutex
	fakeSource
}

func (l *lockedSource) Kick() { l.mu.Lock(); l.kicks++; l.mu.Unlock() }

func TestRunStopsAndReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bs := backends(4, 2)
		over := NewOvershoot(ids(bs), 2)
		src := &lockedSource{fakeSource: fakeSource{set: &pool.Set{Backends: bs}}}
		// 8 slots, 2,000 req/s of 100 ms each: saturated, so requests both
		// run and wait when Run stops.
		d := NewDriver(DriverOptions{Source: src, Arrivals: NewPoisson(2000, time.Now(), seeded(7)),
			Service: 100 * time.Millisecond, Wait: time.Second, Rand: seeded(8), Overshoot: over})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); d.Run(ctx, time.Millisecond) }()
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if d.Served() == 0 || d.Queued() == 0 {
			t.Errorf("after 500 ms: served %d, queued %d; want both > 0", d.Served(), d.Queued())
		}
		cancel()
		<-done
		for _, b := range bs {
			if b.Local() != 0 {
				t.Errorf("%s still has %d in flight after Run returned", b.ID, b.Local())
			}
		}
		if d.Queued() != 0 || over.Worst() != 0 {
			t.Errorf("after Run: queued %d, worst overshoot %d; want 0, 0", d.Queued(), over.Worst())
		}
		for i := range over.inflight {
			if n := over.inflight[i].Load(); n != 0 {
				t.Errorf("backend %d still counted %d in flight", i, n)
			}
		}
	})
}
