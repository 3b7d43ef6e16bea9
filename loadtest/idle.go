package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"lbscale/loadtest/target"
)

// idleConfig is `loadtest idle`.
type idleConfig struct {
	Target   string
	Conns    int
	Hold     time.Duration
	Parallel int
	Timeout  time.Duration

	addr, host, path string // derived from Target
}

// maxIdleConns bounds --conns: one process holds one descriptor per
// connection, and a typo (1e7) should be an error, not a run that exhausts
// the machine's ports.
const maxIdleConns = 1_000_000

const idleUsage = `usage: loadtest idle --target URL --conns N [--hold D] [--parallel P] [--timeout D]

Opens --conns keep-alive connections to the target. Each one sends one GET
and reads the whole answer, then stays open and idle, so the memory a
server spends per idle client connection can be measured. --parallel
connections are set up at a time (which also bounds how many requests the
server has in flight meanwhile). Once all are open it prints
"idle: N/N connections open" and holds them until --hold has elapsed or
SIGTERM/Ctrl-C arrives, then closes them.

Exit status: 0 when all --conns were opened and none was closed by the
server during the hold, 1 otherwise, 2 on invalid input. Plain HTTP only.

Flags:
`

func loadIdle(args []string, stderr io.Writer) (*idleConfig, error) {
	c := &idleConfig{}
	fs := newFlagSet("loadtest idle", stderr, idleUsage)
	fs.StringVar(&c.Target, "target", "", "`URL` to open the connections to (http:// only)")
	fs.IntVar(&c.Conns, "conns", 0, "connections to open and hold (required)")
	fs.DurationVar(&c.Hold, "hold", time.Minute, "how long to hold them once all are open")
	fs.IntVar(&c.Parallel, "parallel", 64, "connections set up at once")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Second, "per-connection set-up timeout (connect to the answer's last byte)")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	switch {
	case c.Target == "":
		return nil, usageErr("missing --target URL")
	case c.Conns <= 0 || c.Conns > maxIdleConns:
		return nil, usageErr("--conns must be from 1 to %d, got %d", maxIdleConns, c.Conns)
	case c.Hold <= 0:
		return nil, usageErr("--hold must be > 0, got %v", c.Hold)
	case c.Parallel <= 0:
		return nil, usageErr("--parallel must be > 0, got %d", c.Parallel)
	case c.Timeout <= 0:
		return nil, usageErr("--timeout must be > 0, got %v", c.Timeout)
	}
	if err := target.CheckURL(c.Target); err != nil {
		return nil, usageErr("--target: %v", err)
	}
	u, _ := url.Parse(c.Target)
	if u.Scheme != "http" {
		return nil, usageErr("--target %q: idle speaks plain HTTP only", c.Target)
	}
	c.host, c.path, c.addr = u.Host, u.RequestURI(), u.Host
	if u.Port() == "" {
		c.addr = net.JoinHostPort(u.Hostname(), "80")
	}
	return c, nil
}

func cmdIdle(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := loadIdle(args, stderr)
	if err != nil {
		return err
	}
	start := time.Now()
	conns, failed, firstErr := c.open(ctx)
	defer func() {
		for _, conn := range conns {
			conn.Close()
		}
	}()
	if len(conns) < c.Conns {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted with %d/%d connections open", len(conns), c.Conns)
		}
		return fmt.Errorf("opened %d/%d connections to %s (%d failed; first: %v)", len(conns), c.Conns, c.Target, failed, firstErr)
	}
	fmt.Fprintf(stdout, "idle: %d/%d connections open to %s after %.2fs; holding for %v\n",
		len(conns), c.Conns, c.Target, time.Since(start).Seconds(), c.Hold)

	// One reader per connection notices the server closing it: the idle
	// memory measured would otherwise be of fewer connections than claimed.
	var closed atomic.Int64
	for _, conn := range conns {
		go func() {
			var b [1]byte
			if _, err := conn.Read(b[:]); err != nil && !errors.Is(err, net.ErrClosed) {
				closed.Add(1)
			}
		}()
	}
	held := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(c.Hold):
	}
	n := closed.Load()
	fmt.Fprintf(stdout, "idle: held %d connections for %.2fs; %d closed by the server meanwhile\n",
		len(conns), time.Since(held).Seconds(), n)
	if n > 0 {
		return fmt.Errorf("the server closed %d of %d idle connections during the hold", n, len(conns))
	}
	return nil
}

// open sets up c.Conns connections, c.Parallel at a time, each with one
// request answered. It returns the open ones, how many failed and the first
// failure.
func (c *idleConfig) open(ctx context.Context) ([]net.Conn, int, error) {
	var (
		mu       sync.Mutex
		conns    = make([]net.Conn, 0, c.Conns)
		firstErr error
		failed   int
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	req := []byte("GET " + c.path + " HTTP/1.1\r\nHost: " + c.host + "\r\nUser-Agent: lbscale-loadtest-idle\r\nConnection: keep-alive\r\n\r\n")
	for range min(c.Parallel, c.Conns) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && next.Add(1) <= int64(c.Conns) {
				conn, err := c.openOne(ctx, req)
				mu.Lock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
				} else {
					conns = append(conns, conn)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return conns, failed, firstErr
}

// openOne connects, sends req and reads the whole answer, leaving the
// connection open for reuse.
func (c *idleConfig) openOne(ctx context.Context, req []byte) (net.Conn, error) {
	d := net.Dialer{Timeout: c.Timeout}
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (net.Conn, error) {
		conn.Close()
		return nil, err
	}
	if err := conn.SetDeadline(time.Now().Add(c.Timeout)); err != nil {
		return fail(err)
	}
	if _, err := conn.Write(req); err != nil {
		return fail(err)
	}
	// The reader is dropped afterwards: an idle connection has nothing
	// buffered after a complete answer.
	br := bufio.NewReaderSize(conn, 4096)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return fail(err)
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	switch {
	case err != nil:
		return fail(err)
	case res.StatusCode >= 400:
		return fail(fmt.Errorf("status %d", res.StatusCode))
	case res.Close:
		return fail(errors.New("the server will not keep the connection alive (Connection: close)"))
	case br.Buffered() > 0:
		return fail(fmt.Errorf("%d unexpected bytes after the answer", br.Buffered()))
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return fail(err)
	}
	return conn, nil
}
