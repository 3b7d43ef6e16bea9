// Package accesslog writes the balancer's access log: one JSON object per
// request, one line each, to stdout or to a file.
//
// # Off the request path
//
// Log copies the Entry by value into a buffered channel and returns; a
// single writer goroutine encodes and writes. A request therefore never
// waits on a disk, a pipe or a terminal, never takes a lock that is held
// across I/O, and allocates nothing for its log line: the encoder appends
// to one reused []byte by hand (no reflection), and the Entry's strings are
// shared, not copied, since Go strings are immutable.
//
// # Drop, do not block
//
// When the writer falls behind by more than Options.Buffer entries (a slow
// disk, a stdout pipe nobody drains), Log drops the entry and counts it
// (Dropped). Blocking instead would turn a logging problem into an outage:
// every request would queue behind the log, and the balancer would stop
// serving because it could not say that it was serving. Dropped is meant to
// be exported as a metric and alerted on; entries lost to a failed write
// are counted there too. Written counts entries handed to the operating
// system.
//
// The writer flushes whenever its channel is empty, so a quiet log is on
// disk within milliseconds of the request, and under load it writes in
// large batches (64 KiB) rather than one system call per line.
//
// # Rotation
//
// With logrotate, either way works:
//
//   - create (the default): logrotate renames the file and sends SIGHUP
//     (postrotate); the balancer calls Reopen, which flushes what it has to
//     the old file and opens a new one at Options.Dest. Until then lines keep
//     going to the renamed file, so none are lost.
//   - copytruncate: nothing to signal. The file is opened with O_APPEND, so
//     after the truncation writes land at the new end rather than leaving a
//     hole of zeros.
//
// Without logrotate, Options.MaxSize makes the logger rotate by itself: a
// line that would take the file past MaxSize first renames it to Dest+".1"
// (replacing an older one) and starts a new file, so at most two files of
// about MaxSize each are kept.
//
// # The query string
//
// A query often carries secrets (tokens, signed-URL signatures, e-mail
// addresses), and an access log is kept longer and read by more people than
// the requests themselves. So unless Options.KeepQuery is set, the "query"
// field of a request that had one is the string "REDACTED": a reader still
// sees that there was a query, never what it was. A request without a query
// has no "query" field either way.
//
// # Format
//
// One object per line, fields in this order: time (RFC 3339, UTC, ms),
// request_id, client, method, host, path, query (see above), proto, status,
// bytes_in, bytes_out, duration_ms, queue_ms, cold_start_ms, upstream_ms
// (milliseconds with 3 decimals), pool, backend, attempts, retry_reason,
// tls, user_agent, trace_id. retry_reason, tls and trace_id are left out
// when empty. Strings are escaped per RFC 8259; control characters become
// \uXXXX (or \n, \t, ...) and invalid UTF-8 becomes \ufffd, so every line
// decodes, whatever a client put in its path or User-Agent.
package accesslog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Entry is one request's record (filled by the proxy; the logger copies it).
type Entry struct {
	Time                      time.Time     // when the request arrived
	ID                        string        // X-Request-Id
	Client                    string        // client address (host:port)
	Method, Host, Path, Query string        // Query: the raw query, without '?'
	Proto                     string        // HTTP/1.1, HTTP/2.0
	Status                    int           // status code sent to the client
	BytesIn                   int64         // request body bytes read
	BytesOut                  int64         // response body bytes written
	Duration                  time.Duration // arrival to last byte
	Queue                     time.Duration // time waiting for a backend slot (0: none)
	ColdStart                 time.Duration // part of Queue spent waiting for a container to start (0: none)
	Upstream                  time.Duration // time spent in upstream attempts
	Pool                      string        // the pool the request was routed to
	Backend                   string        // the backend that answered ("" : none)
	Attempts                  int           // upstream attempts (0: never placed)
	RetryReason               string        // why the last retry happened ("" : none)
	TLS                       string        // "TLS 1.3", "" for plain
	UserAgent                 string        // the User-Agent header
	TraceID                   string        // W3C trace id, "" when none
}

// Options configures Open.
type Options struct {
	// Dest is "stdout" or a file path (opened for append, created 0640).
	Dest string
	// Buffer is the number of entries the writer may lag behind (default
	// 4096); a full buffer drops entries and counts them. Each buffered
	// entry takes about 300 bytes.
	Buffer int
	// KeepQuery writes the query string; otherwise a request that had one
	// is logged with "query":"REDACTED" (and one without has no "query").
	KeepQuery bool
	// MaxSize: a file log larger than this is renamed to Dest+".1"
	// (replacing an older one) and a new file opened (0: never). The check
	// is made before each line, so a file exceeds MaxSize only by a single
	// line longer than MaxSize itself. Ignored for stdout.
	MaxSize int64
	// Stdout is where "stdout" writes (nil: os.Stdout), for tests.
	Stdout io.Writer
}

// DefaultBuffer is Options.Buffer when it is left 0.
const DefaultBuffer = 4096

// destStdout is the Dest that means standard output.
const destStdout = "stdout"

// bufSize is the bufio.Writer's size: big enough that a busy log makes few
// system calls, small enough that a burst reaches the disk promptly.
const bufSize = 64 << 10

var errClosed = errors.New("accesslog: logger closed")

// Logger writes entries from its own goroutine. Its zero value is not
// usable; a nil *Logger is, and logs nothing.
type Logger struct {
	ch chan Entry

	// closed is set first thing by Close; inflight counts Log calls that
	// may still send. Close waits for inflight to reach 0 after setting
	// closed, so no Log sends on the channel after it is closed, and Log
	// takes no lock.
	closed   atomic.Bool
	inflight atomic.Int64

	dropped atomic.Uint64
	written atomic.Uint64

	done chan struct{} // closed when the writer goroutine has returned

	keepQuery bool
	maxSize   int64
	dest      string

	// mu guards everything below: the writer goroutine holds it while it
	// writes a line, Reopen and Close while they swap or close the file.
	// Log never takes it.
	mu      sync.Mutex
	file    *os.File // nil for stdout, and after Close
	out     io.Writer
	bw      *bufio.Writer
	size    int64 // bytes written or buffered to file since it was opened (rotation)
	pending int   // entries in bw not yet flushed
	broken  bool  // a write failed, possibly mid-line: start the next with '\n'
	failing bool  // the last write failed; report the next failure only after a success
	line    []byte
	closing bool // Close has run; Reopen refuses
}

// Open starts a Logger writing to o.Dest.
func Open(o Options) (*Logger, error) {
	if o.Dest == "" {
		return nil, errors.New("accesslog: Dest is empty (want \"stdout\" or a file path)")
	}
	if o.Buffer < 0 {
		return nil, fmt.Errorf("accesslog: Buffer %d is negative", o.Buffer)
	}
	if o.MaxSize < 0 {
		return nil, fmt.Errorf("accesslog: MaxSize %d is negative", o.MaxSize)
	}
	if o.Buffer == 0 {
		o.Buffer = DefaultBuffer
	}
	l := &Logger{
		ch:        make(chan Entry, o.Buffer),
		done:      make(chan struct{}),
		keepQuery: o.KeepQuery,
		dest:      o.Dest,
		line:      make([]byte, 0, 1024),
	}
	if o.Dest == destStdout {
		l.out = o.Stdout
		if l.out == nil {
			l.out = os.Stdout
		}
	} else {
		f, size, err := openFile(o.Dest)
		if err != nil {
			return nil, err
		}
		l.file, l.out, l.size, l.maxSize = f, f, size, o.MaxSize
	}
	l.bw = bufio.NewWriterSize(l.out, bufSize)
	go l.run()
	return l, nil
}

func openFile(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, 0, fmt.Errorf("open access log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("stat access log: %w", err)
	}
	return f, st.Size(), nil
}

// Log queues a copy of *e for writing. It never blocks and does not
// allocate: when the writer is Buffer entries behind, or the Logger is
// closed, the entry is dropped and counted. Safe for concurrent use; a nil
// Logger or a nil e is a no-op. The caller may reuse *e as soon as Log
// returns.
func (l *Logger) Log(e *Entry) {
	if l == nil || e == nil {
		return
	}
	l.inflight.Add(1)
	if l.closed.Load() {
		l.inflight.Add(-1)
		l.dropped.Add(1)
		return
	}
	select {
	case l.ch <- *e:
	default:
		l.dropped.Add(1)
	}
	l.inflight.Add(-1)
}

// Dropped is the number of entries lost: to a full buffer, to Log after
// Close, or to a failed write.
func (l *Logger) Dropped() uint64 {
	if l == nil {
		return 0
	}
	return l.dropped.Load()
}

// Written is the number of entries handed to the operating system (or to
// Options.Stdout).
func (l *Logger) Written() uint64 {
	if l == nil {
		return 0
	}
	return l.written.Load()
}

// Reopen flushes what is buffered to the current file, closes it and opens
// Dest again: call it on SIGHUP, after logrotate has renamed the file. If
// Dest cannot be opened, the logger keeps writing to the old file and
// Reopen returns the error. For stdout it does nothing.
func (l *Logger) Reopen() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing {
		return errClosed
	}
	if l.file == nil {
		return nil
	}
	f, size, err := openFile(l.dest)
	if err != nil {
		return err
	}
	l.swap(f, size)
	return nil
}

// swap flushes to the current file, closes it and continues with f.
// l.mu must be held.
func (l *Logger) swap(f *os.File, size int64) {
	l.flush()
	if err := l.file.Close(); err != nil {
		l.report(fmt.Errorf("close access log: %w", err))
	}
	l.file, l.out, l.size = f, f, size
	l.bw.Reset(f)
}

// Close stops accepting entries, writes everything already queued, and
// closes the file (not stdout). Log after Close drops. Close returns the
// error of the last flush or of closing the file; calling it again returns
// nil.
func (l *Logger) Close() error {
	if l == nil || !l.closed.CompareAndSwap(false, true) {
		return nil
	}
	// A Log that saw closed == false may be about to send; each is
	// non-blocking, so this wait is a few instructions long.
	for l.inflight.Load() != 0 {
		runtime.Gosched()
	}
	close(l.ch)
	<-l.done

	l.mu.Lock()
	defer l.mu.Unlock()
	l.closing = true
	err := l.flush()
	if l.file != nil {
		if cerr := l.file.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close access log: %w", cerr)
		}
		l.file = nil
	}
	return err
}

// run is the writer goroutine; it returns when Close closes the channel.
func (l *Logger) run() {
	defer close(l.done)
	for e := range l.ch {
		l.mu.Lock()
		l.write(&e)
		// An empty channel means the log is quiet for now: put what we
		// have on disk instead of waiting for the buffer to fill.
		if len(l.ch) == 0 {
			l.flush()
		}
		l.mu.Unlock()
	}
}

// write encodes e and buffers it, flushing or rotating first when needed.
// l.mu must be held.
func (l *Logger) write(e *Entry) {
	l.line = l.line[:0]
	if l.broken {
		// The last failed write may have left half a line; end it, so
		// that one line is lost rather than two.
		l.line = append(l.line, '\n')
	}
	l.line = appendEntry(l.line, e, l.keepQuery)
	n := int64(len(l.line))
	if l.maxSize > 0 && l.size > 0 && l.size+n > l.maxSize {
		l.rotate(n)
	}
	// Flush ourselves rather than letting bufio do it mid-line, so that
	// written and dropped count whole entries.
	if len(l.line) > l.bw.Available() && l.bw.Buffered() > 0 {
		l.flush()
	}
	if _, err := l.bw.Write(l.line); err != nil {
		// Only a line longer than the buffer is written straight through
		// and can fail here; what was buffered before was flushed above.
		l.fail(1, err)
		return
	}
	l.pending++
	l.size += n
}

// rotate renames the file to Dest+".1" and opens a new one, if the file
// on disk really is too big to take n more bytes (after copytruncate, our
// count is too high). l.mu must be held.
func (l *Logger) rotate(n int64) {
	l.flush()
	if st, err := l.file.Stat(); err == nil {
		l.size = st.Size()
		if l.size == 0 || l.size+n <= l.maxSize {
			return
		}
	}
	if err := os.Rename(l.dest, l.dest+".1"); err != nil {
		// Keep writing to the current file; try again after another
		// MaxSize bytes rather than on every line.
		l.size = 0
		l.report(fmt.Errorf("rotate access log: %w", err))
		return
	}
	f, size, err := openFile(l.dest)
	if err != nil {
		l.size = 0
		l.report(err)
		return
	}
	l.swap(f, size)
}

// flush writes the buffered entries and counts them. l.mu must be held.
func (l *Logger) flush() error {
	if err := l.bw.Flush(); err != nil {
		l.fail(l.pending, err)
		return fmt.Errorf("write access log: %w", err)
	}
	if l.pending > 0 {
		l.written.Add(uint64(l.pending))
		l.pending = 0
		l.broken, l.failing = false, false
	}
	return nil
}

// fail counts n entries as dropped after a write error and clears the
// bufio.Writer's sticky error, so that writing resumes when the disk
// recovers. l.mu must be held.
func (l *Logger) fail(n int, err error) {
	l.dropped.Add(uint64(n))
	l.pending = 0
	l.broken = true
	l.bw.Reset(l.out)
	if !l.failing {
		l.failing = true
		l.report(fmt.Errorf("write access log: %w", err))
	}
}

// report logs a problem of the log itself; a failing disk is reported once
// per run of failures, not once per entry.
func (l *Logger) report(err error) {
	slog.Warn("access log", "dest", l.dest, "err", err)
}
