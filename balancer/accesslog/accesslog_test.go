package accesslog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"lbscale/internal/testenv"
)

func open(t *testing.T, o Options) *Logger {
	t.Helper()
	l, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func closeLog(t *testing.T, l *Logger) {
	t.Helper()
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// lines reads path and returns its lines, each checked to decode.
func lines(t *testing.T, path string) []record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []record
	for l := range bytes.Lines(b) {
		out = append(out, decodeLine(t, l))
	}
	return out
}

func ids(rs []record) string {
	var s []string
	for _, r := range rs {
		s = append(s, r.RequestID)
	}
	return strings.Join(s, ",")
}

func entry(id string) *Entry {
	e := fullEntry()
	e.ID = id
	return &e
}

// waitWritten waits until the writer has handed n entries to the OS,
// without Close: a quiet log must reach the file by itself.
func waitWritten(t *testing.T, l *Logger, n uint64) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, fmt.Sprintf("%d entries written", n), func() bool { return l.Written() >= n })
}

func TestFileRoundTrip(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprintf("KeepQuery=%v", keep), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "access.log")
			l := open(t, Options{Dest: path, KeepQuery: keep})
			e := fullEntry()
			l.Log(&e)
			zero := Entry{}
			l.Log(&zero)
			closeLog(t, l)

			rs := lines(t, path)
			if len(rs) != 2 {
				t.Fatalf("%d lines, want 2", len(rs))
			}
			checkRoundTrip(t, e, rs[0], keep)
			checkRoundTrip(t, zero, rs[1], keep)
			if l.Written() != 2 || l.Dropped() != 0 {
				t.Errorf("written %d dropped %d, want 2 0", l.Written(), l.Dropped())
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if perm := st.Mode().Perm(); perm&^0o640 != 0 {
				t.Errorf("file mode %v, want at most 0640", perm)
			}
		})
	}
}

func TestOpenAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	for _, id := range []string{"first", "second"} {
		l := open(t, Options{Dest: path})
		l.Log(entry(id))
		closeLog(t, l)
	}
	if got := ids(lines(t, path)); got != "first,second" {
		t.Errorf("ids %s, want first,second", got)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	for _, o := range []Options{
		{},
		{Dest: filepath.Join(dir, "missing", "access.log")},
		{Dest: dir}, // a directory
		{Dest: "stdout", Buffer: -1},
		{Dest: "stdout", MaxSize: -1},
	} {
		if l, err := Open(o); err == nil {
			l.Close()
			t.Errorf("Open(%+v) succeeded, want an error", o)
		}
	}
}

func TestQuietLogReachesDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	l := open(t, Options{Dest: path})
	l.Log(entry("alone"))
	took := testenv.Eventually(t, 5*time.Second, "line in file", func() bool {
		b, _ := os.ReadFile(path)
		return bytes.HasSuffix(b, []byte("}\n"))
	})
	t.Logf("on disk after %v", took)
	if got := ids(lines(t, path)); got != "alone" {
		t.Errorf("ids %s, want alone", got)
	}
}

// gateWriter blocks every Write until release is closed, and says when
// the first Write has started.
type gateWriter struct {
	entered     chan struct{}
	enteredOnce sync.Once
	release     chan struct{}
	mu          sync.Mutex
	buf         bytes.Buffer
}

func newGate() *gateWriter {
	return &gateWriter{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateWriter) Write(p []byte) (int, error) {
	g.enteredOnce.Do(func() { close(g.entered) })
	<-g.release
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

func TestFullBufferDrops(t *testing.T) {
	const buffer, extra = 4, 1000
	g := newGate()
	l := open(t, Options{Dest: "stdout", Stdout: g, Buffer: buffer})

	// The writer takes the first entry, finds the channel empty, flushes,
	// and is stuck in Write.
	l.Log(entry("stuck"))
	select {
	case <-g.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("writer never wrote")
	}

	// buffer entries fit in the channel; the rest must be dropped at once.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range buffer + extra {
			l.Log(entry(fmt.Sprint(i)))
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Log blocked on a stuck writer")
	}
	if got := l.Dropped(); got != extra {
		t.Errorf("dropped %d, want %d", got, extra)
	}
	if got := l.Written(); got != 0 {
		t.Errorf("written %d while the writer is stuck, want 0", got)
	}

	close(g.release)
	closeLog(t, l)
	if l.Written() != buffer+1 || l.Dropped() != extra {
		t.Errorf("written %d dropped %d, want %d %d", l.Written(), l.Dropped(), buffer+1, extra)
	}
	if n := bytes.Count(g.buf.Bytes(), []byte("\n")); n != buffer+1 {
		t.Errorf("%d lines out, want %d", n, buffer+1)
	}
}

// TestStuckPipeDrops is TestFullBufferDrops with a real pipe that nobody
// reads, as stdout is when the process reading it hangs.
func TestStuckPipeDrops(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	l := open(t, Options{Dest: "stdout", Stdout: w, Buffer: 16})
	const n = 20000 // ~ 8 MB of lines: far more than a pipe and the buffers hold
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			l.Log(entry(fmt.Sprint(i)))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Log blocked on a full pipe")
	}
	if l.Dropped() == 0 {
		t.Errorf("nothing dropped with the pipe full")
	}
	// Unblock the writer so that Close can finish.
	go io.Copy(io.Discard, r)
	closeLog(t, l)
	w.Close()
	if got := l.Written() + l.Dropped(); got != n {
		t.Errorf("written %d + dropped %d = %d, want %d", l.Written(), l.Dropped(), got, n)
	}
}

func TestReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	moved := path + ".2025-03-04"
	l := open(t, Options{Dest: path})

	l.Log(entry("a"))
	waitWritten(t, l, 1)
	if err := os.Rename(path, moved); err != nil { // what logrotate does
		t.Fatal(err)
	}
	l.Log(entry("b")) // still to the open file, now under its new name
	waitWritten(t, l, 2)
	if err := l.Reopen(); err != nil { // SIGHUP
		t.Fatal(err)
	}
	l.Log(entry("c"))
	closeLog(t, l)

	if got := ids(lines(t, moved)); got != "a,b" {
		t.Errorf("rotated file has %s, want a,b", got)
	}
	if got := ids(lines(t, path)); got != "c" {
		t.Errorf("new file has %s, want c", got)
	}
	if err := l.Reopen(); err == nil {
		t.Error("Reopen after Close succeeded")
	}
}

func TestReopenFailureKeepsWriting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	l := open(t, Options{Dest: path})
	l.Log(entry("a"))
	waitWritten(t, l, 1)
	// Dest cannot be opened again: a directory now stands at its name.
	moved := path + ".1"
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err == nil {
		t.Fatal("Reopen onto a directory succeeded")
	}
	l.Log(entry("b"))
	closeLog(t, l)
	if got := ids(lines(t, moved)); got != "a,b" {
		t.Errorf("old file has %s, want a,b", got)
	}
}

func TestReopenStdout(t *testing.T) {
	var buf bytes.Buffer
	l := open(t, Options{Dest: "stdout", Stdout: &buf})
	if err := l.Reopen(); err != nil {
		t.Errorf("Reopen on stdout: %v", err)
	}
	l.Log(entry("x"))
	closeLog(t, l)
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 1 {
		t.Errorf("%d lines, want 1", n)
	}
}

// TestCopyTruncate: with logrotate's copytruncate the file shrinks under
// the logger; O_APPEND puts the next line at the new start, with no hole.
func TestCopyTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	l := open(t, Options{Dest: path, MaxSize: 1 << 20})
	for i := range 10 {
		l.Log(entry(fmt.Sprint(i)))
	}
	waitWritten(t, l, 10)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	l.Log(entry("after"))
	closeLog(t, l)
	if got := ids(lines(t, path)); got != "after" {
		t.Errorf("file has %s, want after", got)
	}
}

func TestMaxSizeRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	lineLen := int64(len(appendEntry(nil, entry("0"), false)))
	maxSize := 3*lineLen + lineLen/2 // three lines per file
	l := open(t, Options{Dest: path, MaxSize: maxSize, Buffer: 100})
	for i := range 10 {
		l.Log(entry(fmt.Sprint(i)))
	}
	closeLog(t, l)

	// 0-2 | 3-5 | 6-8 | 9: each rotation replaces the older .1.
	if got := ids(lines(t, path+".1")); got != "6,7,8" {
		t.Errorf("%s.1 has %s, want 6,7,8", path, got)
	}
	if got := ids(lines(t, path)); got != "9" {
		t.Errorf("%s has %s, want 9", path, got)
	}
	for _, p := range []string{path, path + ".1"} {
		if st, err := os.Stat(p); err != nil || st.Size() > maxSize {
			t.Errorf("%s: %v, size > %d", p, err, maxSize)
		}
	}
	if l.Written() != 10 || l.Dropped() != 0 {
		t.Errorf("written %d dropped %d, want 10 0", l.Written(), l.Dropped())
	}
}

// TestMaxSizeCountsExisting: a file that is already near MaxSize when the
// balancer starts is rotated at the first line that would overflow it.
func TestMaxSizeCountsExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	old := bytes.Repeat([]byte("x"), 900)
	old = append(old, '\n')
	if err := os.WriteFile(path, old, 0o640); err != nil {
		t.Fatal(err)
	}
	l := open(t, Options{Dest: path, MaxSize: 1000})
	l.Log(entry("new"))
	closeLog(t, l)
	if b, _ := os.ReadFile(path + ".1"); !bytes.Equal(b, old) {
		t.Errorf(".1 holds %d bytes, want the old file", len(b))
	}
	if got := ids(lines(t, path)); got != "new" {
		t.Errorf("file has %s, want new", got)
	}
}

func TestConcurrentLog(t *testing.T) {
	const goroutines, each = 32, 500
	path := filepath.Join(t.TempDir(), "access.log")
	l := open(t, Options{Dest: path, Buffer: 1024})
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			e := fullEntry()
			for i := range each {
				e.ID = fmt.Sprintf("%d-%d", g, i)
				l.Log(&e) // the same Entry reused at once: Log must have copied it
				_ = l.Dropped()
				_ = l.Written()
			}
		})
	}
	wg.Wait()
	closeLog(t, l)

	rs := lines(t, path)
	if uint64(len(rs)) != l.Written() {
		t.Errorf("%d lines, written %d", len(rs), l.Written())
	}
	if got := l.Written() + l.Dropped(); got != goroutines*each {
		t.Errorf("written %d + dropped %d = %d, want %d", l.Written(), l.Dropped(), got, goroutines*each)
	}
	seen := map[string]bool{}
	for _, r := range rs {
		if seen[r.RequestID] {
			t.Fatalf("id %s written twice", r.RequestID)
		}
		seen[r.RequestID] = true
	}
	t.Logf("written %d, dropped %d", l.Written(), l.Dropped())
}

// TestConcurrentLogClose: Log racing with Close never panics (no send on
// a closed channel) and every entry is either written or dropped.
func TestConcurrentLogClose(t *testing.T) {
	l, err := Open(Options{Dest: "stdout", Stdout: io.Discard, Buffer: 64})
	if err != nil {
		t.Fatal(err)
	}
	const goroutines, each = 8, 2000
	var wg, started sync.WaitGroup
	started.Add(goroutines)
	for range goroutines {
		wg.Go(func() {
			for i := range each {
				if i == each/4 {
					started.Done()
				}
				l.Log(entry("x"))
			}
		})
	}
	started.Wait() // Close while the goroutines are mid-way
	closeLog(t, l)
	wg.Wait()
	if got := l.Written() + l.Dropped(); got != goroutines*each {
		t.Errorf("written %d + dropped %d = %d, want %d", l.Written(), l.Dropped(), got, goroutines*each)
	}
}

func TestCloseFlushesEverything(t *testing.T) {
	const n = 2000
	path := filepath.Join(t.TempDir(), "access.log")
	l := open(t, Options{Dest: path, Buffer: n})
	for i := range n {
		l.Log(entry(fmt.Sprint(i)))
	}
	closeLog(t, l)
	rs := lines(t, path)
	if len(rs) != n || l.Written() != n || l.Dropped() != 0 {
		t.Fatalf("%d lines, written %d, dropped %d; want %d %d 0", len(rs), l.Written(), l.Dropped(), n, n)
	}
	for i, r := range rs {
		if r.RequestID != fmt.Sprint(i) {
			t.Fatalf("line %d has id %s: out of order", i, r.RequestID)
		}
	}

	l.Log(entry("late"))
	if l.Dropped() != 1 {
		t.Errorf("Log after Close: dropped %d, want 1", l.Dropped())
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := len(lines(t, path)); got != n {
		t.Errorf("%d lines after a late Log, want %d", got, n)
	}
}

func TestNilLogger(t *testing.T) {
	var l *Logger
	l.Log(entry("x"))
	if l.Dropped() != 0 || l.Written() != 0 || l.Reopen() != nil || l.Close() != nil {
		t.Error("nil Logger is not a no-op")
	}
	real := open(t, Options{Dest: "stdout", Stdout: io.Discard})
	real.Log(nil)
	closeLog(t, real)
	if real.Written() != 0 || real.Dropped() != 0 {
		t.Error("Log(nil) counted")
	}
}

// failOnceWriter fails its first Write halfway through, as a full disk
// does, then works.
type failOnceWriter struct {
	failed bool
	buf    bytes.Buffer
}

func (w *failOnceWriter) Write(p []byte) (int, error) {
	if !w.failed {
		w.failed = true
		n, _ := w.buf.Write(p[:len(p)/2])
		return n, errors.New("no space left on device")
	}
	return w.buf.Write(p)
}

func TestWriteFailureRecovers(t *testing.T) {
	w := &failOnceWriter{}
	l := open(t, Options{Dest: "stdout", Stdout: w})
	l.Log(entry("lost"))
	testenv.Eventually(t, 5*time.Second, "failed entry dropped", func() bool { return l.Dropped() == 1 })
	l.Log(entry("kept"))
	closeLog(t, l)
	if l.Written() != 1 || l.Dropped() != 1 {
		t.Errorf("written %d dropped %d, want 1 1", l.Written(), l.Dropped())
	}
	// The half line stands alone; the next line is whole.
	parts := bytes.Split(bytes.TrimSuffix(w.buf.Bytes(), []byte("\n")), []byte("\n"))
	if len(parts) != 2 {
		t.Fatalf("%d lines, want a half and a whole: %q", len(parts), w.buf.Bytes())
	}
	if r := decodeLine(t, parts[1]); r.RequestID != "kept" {
		t.Errorf("id %s, want kept", r.RequestID)
	}
}

func TestLogAllocs(t *testing.T) {
	l := open(t, Options{Dest: "stdout", Stdout: io.Discard, Buffer: 1 << 14})
	e := fullEntry()
	if n := testing.AllocsPerRun(1000, func() { l.Log(&e) }); n != 0 {
		t.Errorf("Log allocates %v per call, want 0", n)
	}
	closeLog(t, l)
	if n := testing.AllocsPerRun(100, func() { l.Log(&e) }); n != 0 {
		t.Errorf("Log after Close allocates %v per call, want 0", n)
	}
}

func TestAppendEntryAllocs(t *testing.T) {
	e := fullEntry()
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(1000, func() { buf = appendEntry(buf[:0], &e, true) }); n != 0 {
		t.Errorf("appendEntry allocates %v per call, want 0", n)
	}
}

// BenchmarkLog is the cost of Log to the request: ns per entry on the
// caller's side, with the writer encoding to io.Discard behind it.
func BenchmarkLog(b *testing.B) {
	run := func(b *testing.B, dest string, parallel bool) {
		o := Options{Dest: dest, Stdout: io.Discard}
		l, err := Open(o)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		b.ReportAllocs()
		if parallel {
			b.RunParallel(func(pb *testing.PB) {
				e := fullEntry()
				for pb.Next() {
					l.Log(&e)
				}
			})
		} else {
			e := fullEntry()
			for b.Loop() {
				l.Log(&e)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
	}
	b.Run("stdout", func(b *testing.B) { run(b, "stdout", false) })
	b.Run("stdout-parallel", func(b *testing.B) { run(b, "stdout", true) })
	b.Run("file", func(b *testing.B) { run(b, filepath.Join(b.TempDir(), "access.log"), false) })

	// The sub-benchmarks above run faster than any writer, so they mostly
	// measure the drop path (see dropped/op). This one times only sends
	// that find room: batches of 1024, with the writer drained between
	// them off the clock.
	b.Run("queued", func(b *testing.B) {
		const batch = 1024
		l, err := Open(Options{Dest: "stdout", Stdout: io.Discard, Buffer: batch})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		e := fullEntry()
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if i%batch == 0 {
				b.StopTimer()
				for len(l.ch) > 0 {
					runtime.Gosched()
				}
				b.StartTimer()
			}
			l.Log(&e)
		}
		b.StopTimer()
		b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
	})
}

// BenchmarkEncode is the writer's cost per line.
func BenchmarkEncode(b *testing.B) {
	e := fullEntry()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendEntry(buf[:0], &e, false)
	}
	b.SetBytes(int64(len(buf)))
}
