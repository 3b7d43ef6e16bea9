package dashboard

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"time"
)

// Defaults of Options.
const (
	// DefaultEvery is the tick: the issue of a live page is seeing the
	// system move, and a second is what eyes follow.
	DefaultEvery = time.Second
	// DefaultWindow is the history kept: 30 minutes, 1,800 points of about
	// 80 bytes of JSON each.
	DefaultWindow = 30 * time.Minute
	// subBuffer is how many ticks a viewer may lag before it is cut off;
	// its page reconnects and starts again from the whole history.
	subBuffer = 8
)

//go:embed web/index.html
var web embed.FS

// Options configure a Hub.
type Options struct {
	Source Source
	// Every is the tick (0: DefaultEvery); Window the history kept (0:
	// DefaultWindow).
	Every, Window time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	Log *slog.Logger
}

// Hub samples its Source every tick, keeps the history and pushes each
// tick to every connected page.
type Hub struct {
	o    Options
	done chan struct{} // closed when Run returns: streams end with it

	mu   sync.Mutex // protects the fields below
	hist *ring
	last *Snapshot // the latest snapshot the source gave (nil: none yet)
	subs map[chan []byte]struct{}
}

// New returns a Hub; call Run to start sampling.
func New(o Options) *Hub {
	if o.Every <= 0 {
		o.Every = DefaultEvery
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Hub{o: o, done: make(chan struct{}), hist: newRing(int(o.Window / o.Every)), subs: map[chan []byte]struct{}{}}
}

// Run samples every tick until ctx ends, then ends every stream. It is
// called once per Hub.
func (h *Hub) Run(ctx context.Context) {
	defer close(h.done)
	t := time.NewTicker(h.o.Every)
	defer t.Stop()
	for {
		h.Sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample takes one snapshot, adds it to the history and pushes it. When
// the source fails, the page still gets a tick: the last snapshot, with
// the failure among its problems, and no history point (a gap, not a
// made-up value).
func (h *Hub) Sample(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, h.o.Every)
	s, err := h.o.Source.Snapshot(sctx)
	cancel()
	h.mu.Lock()
	defer h.mu.Unlock()
	msg := tick{}
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		if h.last != nil {
			s = *h.last
		}
		s.Time = h.o.Now()
		// The last snapshot's problems are still the latest known; the
		// source's failure joins them.
		s.Problems = maps.Clone(s.Problems)
		if s.Problems == nil {
			s.Problems = map[string]string{}
		}
		s.Problems["dashboard source"] = err.Error()
		msg.Snapshot = &s
	} else {
		p := PointOf(s)
		h.hist.add(p)
		h.last = &s
		msg.Point, msg.Snapshot = &p, &s
	}
	if len(h.subs) == 0 {
		return // nobody watches: no need to encode
	}
	b := event("tick", msg)
	for ch := range h.subs {
		select {
		case ch <- b:
		default: // too far behind: cut it off; its page reconnects
			delete(h.subs, ch)
			close(ch)
		}
	}
}

// tick is the stream's message each second; init is its first.
type tick struct {
	Point    *Point    `json:"point,omitempty"`
	Snapshot *Snapshot `json:"snapshot"`
}

type initMsg struct {
	History  []Point   `json:"history"`
	Snapshot *Snapshot `json:"snapshot"`
	Every    int64     `json:"every_ms"`
	Window   int64     `json:"window_ms"`
}

// event encodes one server-sent event. JSON has no raw newline, so the
// data fits one "data:" line.
func event(name string, v any) []byte {
	var b bytes.Buffer
	b.WriteString("event: ")
	b.WriteString(name)
	b.WriteString("\ndata: ")
	_ = json.NewEncoder(&b).Encode(v) // ends the line
	b.WriteString("\n")
	return b.Bytes()
}

// History returns the kept points, oldest first.
func (h *Hub) History() []Point {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hist.points()
}

// Stream serves the server-sent events: "init" with the whole history and
// the latest snapshot, then a "tick" every second. It ends when the client
// leaves or the Hub stops.
func (h *Hub) Stream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	ch := make(chan []byte, subBuffer)
	h.mu.Lock()
	hist := h.hist.points()
	if hist == nil {
		hist = []Point{} // [], not null, before the first sample
	}
	first := event("init", initMsg{History: hist, Snapshot: h.last, Every: h.o.Every.Milliseconds(), Window: h.o.Window.Milliseconds()})
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		if _, ok := h.subs[ch]; ok {
			delete(h.subs, ch)
			close(ch)
		}
		h.mu.Unlock()
	}()
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no") // no proxy buffering, should one sit in front
	// retry: how soon a browser's EventSource reconnects.
	if _, err := w.Write(append([]byte("retry: 1000\n\n"), first...)); err != nil {
		return
	}
	_ = rc.Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.done:
			return
		case b, ok := <-ch:
			if !ok {
				return
			}
			if _, err := w.Write(b); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

// Page serves the dashboard's HTML. It holds no data (that comes through
// the stream, behind the token), so it needs no token itself.
func (h *Hub) Page(w http.ResponseWriter, r *http.Request) {
	b, err := web.ReadFile("web/index.html")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-cache")
	// Everything is inline; nothing may come from elsewhere.
	hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(b)
}

// StreamPath is where Stream is mounted; the page reads it from there.
const StreamPath = "/dashboard/stream"
