package poolfile

import (
	"bytes"
	"context"
	"os"
	"time"
)

// DefaultWatchEvery is how often Watch reads the pool file: four times
// within the two seconds a change may take to reach every balancer and
// scaler.
const DefaultWatchEvery = 500 * time.Millisecond

// Watcher reloads the pool file when its contents change. It reads the
// file by polling, not through inotify: a file bind-mounted into a
// container, a Swarm config, or one replaced by an editor's rename all
// show their new contents to a read, while inotify misses some of them.
type Watcher struct {
	Path  string
	Every time.Duration // 0: DefaultWatchEvery
	// Apply is called with each new valid configuration, from Run's
	// goroutine; Invalid with the error of a file that does not parse (the
	// running configuration stays). Each change is reported once.
	Apply   func(Config)
	Invalid func(error)
	// last is the contents last reported.
	last []byte
}

// Prime records data as the contents already in force (read at start-up),
// so that Run reports only later changes.
func (w *Watcher) Prime(data []byte) { w.last = bytes.Clone(data) }

// Run polls until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	every := w.Every
	if every <= 0 {
		every = DefaultWatchEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Check()
		}
	}
}

// Check reads the file once and reports a change. A file that cannot be
// read (it is being replaced) is tried again at the next tick.
func (w *Watcher) Check() {
	data, err := os.ReadFile(w.Path)
	if err != nil || bytes.Equal(data, w.last) {
		return
	}
	w.last = data
	c, err := Parse(w.Path, data)
	if err != nil {
		if w.Invalid != nil {
			w.Invalid(err)
		}
		return
	}
	if w.Apply != nil {
		w.Apply(c)
	}
}
