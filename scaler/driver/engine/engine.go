// Package engine is what the Docker-engine and the Swarm drivers share of
// the Engine API: a client whose API version is negotiated once, before any
// other call, and an event watch that survives a broken stream and turns
// events into coalesced nudges.
package engine

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// Client is an Engine API client (the DOCKER_* environment, then opts)
// that negotiates the API version, so that a newer client talks to an older
// engine.
type Client struct {
	cli *client.Client

	// mu guards negotiated. The SDK negotiates lazily inside its first
	// request and writes its version field without a lock, so the first
	// calls of several goroutines (the event watch and a reconcile, say)
	// would race on it; API negotiates once, before any other call.
	mu         sync.Mutex
	negotiated bool
}

// New builds a client; it does not contact the engine.
func New(opts ...client.Opt) (*Client, error) {
	all := append([]client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}, opts...)
	cli, err := client.NewClientWithOpts(all...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Client{cli: cli}, nil
}

// API returns the SDK client once its API version is negotiated. A failed
// ping leaves negotiation to the client's own request (which will most
// likely fail the same way) and tries again at the next call.
func (c *Client) API(ctx context.Context) *client.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.negotiated {
		if ping, err := c.cli.Ping(ctx); err == nil {
			c.cli.NegotiateAPIVersionPing(ping)
			c.negotiated = true
		}
	}
	return c.cli
}

// Close releases the client's connections.
func (c *Client) Close() error { return c.cli.Close() }

// Watch follows the engine's event stream selected by args and nudges the
// returned channel for every event relevant accepts, until ctx ends. Nudges
// coalesce: one pending nudge stands for any number of events. The stream
// is re-opened after an error with capped exponential back-off (reset after
// a minute of health), and a nudge follows every (re-)open, since events
// may have been missed.
func Watch(ctx context.Context, c *Client, args filters.Args, relevant func(events.Message) bool, log *slog.Logger) <-chan struct{} {
	out := make(chan struct{}, 1)
	nudge := func() {
		select {
		case out <- struct{}{}:
		default:
		}
	}
	go func() {
		delay := 100 * time.Millisecond
		for ctx.Err() == nil {
			msgs, errs := c.API(ctx).Events(ctx, events.ListOptions{Filters: args})
			opened := time.Now()
			nudge()
		read:
			for {
				select {
				case m := <-msgs:
					if relevant(m) {
						nudge()
					}
				case err := <-errs:
					if ctx.Err() != nil {
						return
					}
					log.Warn("docker event stream broke; reopening", "err", err, "after", delay.String())
					break read
				}
			}
			if time.Since(opened) > time.Minute {
				delay = 100 * time.Millisecond
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, 10*time.Second)
		}
	}()
	return out
}
