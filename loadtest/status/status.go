// Package status samples balancers' admin /status documents during a run, so
// the replica count and each backend's in-flight requests can be drawn next
// to the load. A sample that fails (connection refused, non-200, bad JSON) is
// recorded as a gap with its reason, never as a crash or a zero: a balancer
// restarting mid-run should show as a hole in the plot, not as "0 replicas".
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Backend is one entry of /status "backends".
type Backend struct {
	ID              string     `json:"id"`
	Addr            string     `json:"addr"`
	State           string     `json:"state"`
	InflightLocal   int64      `json:"inflight_local"`
	InflightCluster int64      `json:"inflight_cluster"`
	LastSeen        *time.Time `json:"last_seen"`
}

// Doc is the part of a balancer's /status document loadtest reads.
type Doc struct {
	Replicas int       `json:"replicas"`
	Backends []Backend `json:"backends"`
	// Dashboard is the live dashboard's URL, resolved against the status
	// URL ("" when the document names none): a scaler's /status says "/",
	// a balancer's the DASHBOARD_URL it was given.
	Dashboard string `json:"dashboard"`
}

// Sample is one poll of one source. Err is empty for a good sample; otherwise
// the sample is a gap and Doc is empty.
type Sample struct {
	At     time.Time
	Source int // index into Sampler.URLs
	Err    string
	Doc
}

// OK reports whether the sample holds data.
func (s Sample) OK() bool { return s.Err == "" }

// Sampler polls every URL once per Interval until its context ends.
type Sampler struct {
	URLs     []string
	Interval time.Duration // default 1 s
	// Client is used for every poll; its Timeout should be below Interval
	// so a hung balancer costs one gap, not a pile of goroutines. Default: a
	// client with a timeout of min(Interval, 2 s).
	Client *http.Client
	// Token, when set, is sent as "Authorization: Bearer <Token>" (the
	// balancer's ADMIN_TOKEN).
	Token string
	Now   func() time.Time

	mu      sync.Mutex
	samples []Sample
	latest  []Sample
}

func (s *Sampler) defaults() {
	if s.Interval <= 0 {
		s.Interval = time.Second
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Client == nil {
		s.Client = &http.Client{Timeout: min(s.Interval, 2*time.Second)}
	}
}

// Run polls until ctx is done, one goroutine per source, the first poll at
// once. It returns when every poller has stopped.
func (s *Sampler) Run(ctx context.Context) {
	s.defaults()
	s.mu.Lock()
	s.latest = make([]Sample, len(s.URLs))
	s.mu.Unlock()
	var wg sync.WaitGroup
	for i, u := range s.URLs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(s.Interval)
			defer tick.Stop()
			for {
				smp := s.poll(ctx, i, u)
				if !smp.OK() && ctx.Err() != nil {
					return // cut short by the end of the run: not a gap
				}
				s.add(smp)
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		}()
	}
	wg.Wait()
}

func (s *Sampler) add(smp Sample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples = append(s.samples, smp)
	if smp.Source < len(s.latest) {
		s.latest[smp.Source] = smp
	}
}

// poll takes one sample of source i.
func (s *Sampler) poll(ctx context.Context, i int, u string) Sample {
	smp := Sample{At: s.Now(), Source: i}
	doc, err := s.Fetch(ctx, u)
	if err != nil {
		smp.Err = err.Error()
		return smp
	}
	smp.Doc = doc
	return smp
}

// Fetch reads and checks one /status document.
func (s *Sampler) Fetch(ctx context.Context, u string) (Doc, error) {
	s.defaults()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Doc{}, fmt.Errorf("status %s: %w", u, err)
	}
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		return Doc{}, fmt.Errorf("status %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return Doc{}, fmt.Errorf("status %s: read: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Doc{}, fmt.Errorf("status %s: HTTP %d", u, resp.StatusCode)
	}
	var raw struct {
		Replicas  *int      `json:"replicas"`
		Backends  []Backend `json:"backends"`
		Dashboard string    `json:"dashboard"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return Doc{}, fmt.Errorf("status %s: decode: %w", u, err)
	}
	if raw.Replicas == nil {
		return Doc{}, fmt.Errorf("status %s: %w", u, errNoReplicas)
	}
	return Doc{Replicas: *raw.Replicas, Backends: raw.Backends, Dashboard: resolve(u, raw.Dashboard)}, nil
}

// resolve makes ref absolute against base ("" when ref is empty or
// unusable).
func resolve(base, ref string) string {
	if ref == "" {
		return ""
	}
	b, err := url.Parse(base)
	if err != nil {
		return ""
	}
	r, err := url.Parse(ref)
	if err != nil {
		return ""
	}
	return b.ResolveReference(r).String()
}

// Dashboard returns the first dashboard URL that one of urls' /status
// documents names, "" when none does (or none answers within the
// context).
func (s *Sampler) Dashboard(ctx context.Context) string {
	for _, u := range s.URLs {
		if d, err := s.Fetch(ctx, u); err == nil && d.Dashboard != "" {
			return d.Dashboard
		}
	}
	return ""
}

var errNoReplicas = errors.New(`no "replicas" field`)

// Samples returns every sample so far, in the order taken.
func (s *Sampler) Samples() []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sample(nil), s.samples...)
}

// Latest returns the most recent sample of each source (zero Sample for a
// source not polled yet).
func (s *Sampler) Latest() []Sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Sample(nil), s.latest...)
}

// Point is the cluster as seen in one second of the run.
type Point struct {
	OK bool // false: no good sample from any source in this second (a gap)
	// Replicas is the largest count any source reported: balancers learn of
	// a new replica at slightly different moments, and the larger count is
	// the one that has already happened.
	Replicas int
	// Inflight is the cluster's requests in flight: for each backend the
	// largest inflight_cluster any source reported, summed.
	Inflight int64
}

// PerSecond folds samples into n one-second points from start, using each
// source's last good sample within a second.
func PerSecond(samples []Sample, start time.Time, n int) []Point {
	type key struct{ sec, src int }
	last := map[key]Sample{}
	for _, s := range samples {
		d := s.At.Sub(start)
		if !s.OK() || d < 0 {
			continue
		}
		k := key{int(d / time.Second), s.Source}
		if k.sec >= n {
			continue
		}
		if prev, ok := last[k]; !ok || !s.At.Before(prev.At) {
			last[k] = s
		}
	}
	pts := make([]Point, n)
	perBackend := map[int]map[string]int64{}
	for k, s := range last {
		p := &pts[k.sec]
		p.OK = true
		p.Replicas = max(p.Replicas, s.Replicas)
		m := perBackend[k.sec]
		if m == nil {
			m = map[string]int64{}
			perBackend[k.sec] = m
		}
		for _, b := range s.Backends {
			id := b.ID
			if id == "" {
				id = b.Addr
			}
			m[id] = max(m[id], b.InflightCluster)
		}
	}
	for sec, m := range perBackend {
		for _, v := range m {
			pts[sec].Inflight += v
		}
	}
	return pts
}
