package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lbscale/internal/testenv"
)

// Images of the deploy tests, built FROM the web server's image (nothing
// is pulled): a good release, one whose server exits at start (its
// containers never pass the health gate: WORK_MS, which WEB_ENV does not
// set, is invalid), and one that answers 500 to
// every request while /healthz passes (only the canary's comparison with
// the old containers catches it).
var (
	imageGood      = "lbscale/webserver:" + pool + "-good"
	imageBadHealth = "lbscale/webserver:" + pool + "-bad-health"
	imageBad500    = "lbscale/webserver:" + pool + "-bad-500"
)

// buildImage builds tag FROM lbscale/webserver:local with the Dockerfile
// lines extra, and removes it when the test ends.
func buildImage(t *testing.T, tag, extra string) {
	t.Helper()
	cmd := exec.Command("docker", "build", "-q", "-t", tag, "-")
	cmd.Stdin = strings.NewReader("FROM lbscale/webserver:local\n" + extra + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker build %s: %v\n%s", tag, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", tag).Run() })
}

// deployScript runs scripts/deploy and returns its exit code and output.
func deployScript(t *testing.T, image string) (int, string, time.Duration) {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join("scripts", "deploy"), pool, image)
	cmd.Dir = testenv.Root()
	cmd.Env = append(os.Environ(), "SCALER_URL="+adminScaler, "DEPLOY_WAIT=180")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("scripts/deploy: %v\n%s", err, out)
		}
		code = ee.ExitCode()
	}
	return code, string(out), took
}

// poolImages counts the pool's running containers by image.
func poolImages(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, img := range strings.Fields(docker(t, "ps", "--filter", poolFilter, "--format", "{{.Image}}")) {
		out[img]++
	}
	return out
}

// deployStatus is the scaler's /status as far as deploys go.
type deployStatus struct {
	Replicas int   `json:"replicas"`
	Conns    int64 `json:"conns"`
	Deploy   *struct {
		Phase  string `json:"phase"`
		Image  string `json:"image"`
		Reason string `json:"reason"`
	} `json:"deploy"`
	Demand struct {
		ServiceMs float64 `json:"service_ms"`
	} `json:"demand"`
	Events []scaleEvent `json:"events"`
}

// scaleEvent is one event of a scaler's /status.
type scaleEvent struct {
	Time      time.Time `json:"time"`
	Direction string    `json:"direction"`
	Reason    string    `json:"reason"`
	IDs       []string  `json:"ids"`
}

func readDeployStatus(t *testing.T) deployStatus {
	t.Helper()
	return readDeployStatusAt(t, adminScaler)
}

// leaderEvents are the scale events of whichever scaler leads (a
// follower's /status carries none of its own).
func leaderEvents(t *testing.T) []scaleEvent {
	t.Helper()
	var evs []scaleEvent
	for _, a := range []string{adminScaler, adminScalerB} {
		evs = append(evs, readDeployStatusAt(t, a).Events...)
	}
	return evs
}

func readDeployStatusAt(t *testing.T, admin string) deployStatus {
	t.Helper()
	var s deployStatus
	res, err := http.Get(admin + "/status?pool=" + pool)
	if err != nil {
		t.Fatalf("scaler /status: %v", err)
	}
	defer res.Body.Close()
	if err := json.NewDecoder(res.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// readySampler records the lowest ready count the leader reports.
type readySampler struct {
	low  atomic.Int64
	stop chan struct{}
	done chan struct{}
	// changes is the timeline of ready counts, for the log.
	mu      sync.Mutex
	changes []string
}

func sampleReady(t *testing.T) *readySampler {
	s := &readySampler{stop: make(chan struct{}), done: make(chan struct{})}
	s.low.Store(1 << 30)
	go func() {
		defer close(s.done)
		c := &http.Client{Timeout: 2 * time.Second}
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			res, err := c.Get(adminScaler + "/status?pool=" + pool)
			if err != nil {
				continue
			}
			var st deployStatus
			err = json.NewDecoder(res.Body).Decode(&st)
			res.Body.Close()
			if err != nil {
				continue
			}
			s.mu.Lock()
			line := fmt.Sprintf("%d", st.Replicas)
			if n := len(s.changes); n == 0 || !strings.HasSuffix(s.changes[n-1], " "+line) {
				s.changes = append(s.changes, time.Now().Format("15:04:05.0")+" "+line)
			}
			s.mu.Unlock()
			if int64(st.Replicas) < s.low.Load() {
				s.low.Store(int64(st.Replicas))
			}
		}
	}()
	t.Cleanup(s.end)
	return s
}

func (s *readySampler) end() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// longConn is a long-lived connection through a balancer: a WebSocket-style
// upgrade to the web server's /upgrade, or a server-sent-event stream from
// its /events. closed is set when the connection ended.
type longConn struct {
	kind    string // "upgrade" or "events"
	server  string // X-Server-Id: the container that holds it
	conn    net.Conn
	body    io.ReadCloser
	endedAt atomic.Int64 // unix nanoseconds; 0 while open
	bye     atomic.Bool  // an event stream ended with the server's bye
}

// openUpgrade opens an upgraded connection through the balancer at base.
func openUpgrade(base string) (*longConn, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /upgrade HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", u.Host)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("upgrade: %s", res.Status)
	}
	_ = c.SetDeadline(time.Time{})
	l := &longConn{kind: "upgrade", server: res.Header.Get("X-Server-Id"), conn: c}
	go func() {
		_, _ = io.Copy(io.Discard, br)
		l.endedAt.Store(time.Now().UnixNano())
	}()
	return l, nil
}

// openEvents opens an event stream through the balancer at base.
func openEvents(base string) (*longConn, error) {
	req, err := http.NewRequest(http.MethodGet, base+"/events?interval_ms=200", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	res, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		return nil, fmt.Errorf("events: %s", res.Status)
	}
	l := &longConn{kind: "events", server: res.Header.Get("X-Server-Id"), body: res.Body}
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if sc.Text() == "event: bye" {
				l.bye.Store(true)
			}
		}
		l.endedAt.Store(time.Now().UnixNano())
	}()
	return l, nil
}

func (l *longConn) close() {
	if l.conn != nil {
		l.conn.Close()
	}
	if l.body != nil {
		l.body.Close()
	}
}

func (l *longConn) ended() (time.Time, bool) {
	n := l.endedAt.Load()
	return time.Unix(0, n), n != 0
}

// TestDeploys rolls the pool, under open-loop load through both balancers
// with WebSocket-style tunnels and event streams open, onto a good image,
// then tries an image that never passes its health gate and one that
// answers 500: the first is done with every container on the new image,
// the other two roll back by themselves; no request fails, the pool never
// has fewer ready containers than before, and no long-lived connection is
// cut before its container's CONNECTION_DRAIN.
func TestDeploys(t *testing.T) {
	needDocker(t)
	buildImage(t, imageGood, "LABEL lbscale.e2e=good")
	buildImage(t, imageBadHealth, "ENV WORK_MS=none")
	buildImage(t, imageBad500, "ENV FAULT=error")
	// DEPLOY_E2E_POOL sets the pool's size (scripts/exp-deploy measures
	// 1, 4 and 10); the suite runs 3.
	floor := 3
	if v := os.Getenv("DEPLOY_E2E_POOL"); v != "" {
		if _, err := fmt.Sscan(v, &floor); err != nil || floor < 1 {
			t.Fatalf("DEPLOY_E2E_POOL=%q: want a whole number ≥ 1", v)
		}
	}
	connDrain := 4 * time.Second
	up(t, fmt.Sprintf("MIN_REPLICAS=%d", floor), fmt.Sprintf("MAX_REPLICAS=%d", 2*floor+2),
		"WEB_ENV=CAPACITY=8,SLEEP_MS=20", "MAX_INFLIGHT=8", "TARGET_INFLIGHT=8",
		// Explicit: the 500 image's answers are retried elsewhere, so an
		// idempotent request never sees them.
		"RETRY_ON=500,502,503,504",
		"DEPLOY_CANARY_REQUESTS=40", "DEPLOY_CANARY_TIME=20s", "HEALTH_TIMEOUT=5s",
		"CONNECTION_DRAIN="+connDrain.String(), "SHUTDOWN_TIMEOUT=20s",
		// Scale-down only by idleness, and not within the test: the ready
		// count is the deploy's doing alone.
		"SCALE_DOWN=idle", "IDLE_TIMEOUT=30m", "HEALTH_INTERVAL=500ms")
	waitReady(t, floor)

	// The scalers' /status agrees too (a follower's figures are the
	// leader's summary, up to a second old) before the lowest is watched.
	testenv.Eventually(t, 30*time.Second, "the scalers report the pool ready", func() bool {
		return readDeployStatusAt(t, adminScaler).Replicas == floor && readDeployStatusAt(t, adminScalerB).Replicas == floor
	})
	load := startHostLoad("", "/?sleep_ms=20", 60)
	ready := sampleReady(t)
	var conns []*longConn
	for i := range 12 {
		base := []string{proxyA, proxyB}[i%2]
		open := openUpgrade
		if i%3 == 2 {
			open = openEvents
		}
		l, err := open(base)
		if err != nil {
			t.Fatalf("open long-lived connection %d: %v", i, err)
		}
		conns = append(conns, l)
	}
	defer func() {
		for _, l := range conns {
			l.close()
		}
	}()
	oldIDs := map[string]bool{}
	for _, id := range strings.Fields(docker(t, "ps", "--filter", poolFilter, "--format", "{{.Names}}")) {
		oldIDs[id] = true
	}

	type result struct {
		image string
		code  int
		took  time.Duration
		out   string
	}
	var results []result
	for _, img := range []string{imageGood, imageBadHealth, imageBad500} {
		code, out, took := deployScript(t, img)
		results = append(results, result{img, code, took, out})
		t.Logf("scripts/deploy %s: exit %d in %v\n%s", img, code, took.Round(100*time.Millisecond), lastLines(out, 6))
		imgs := poolImages(t)
		if imgs[imageGood] < floor || len(imgs) != 1 {
			t.Errorf("after deploying %s: containers by image %v, want %d or more on %s alone", img, imgs, floor, imageGood)
		}
	}
	ready.end()
	codes, errs := load.end()
	if results[0].code != 0 {
		t.Errorf("deploy of the good image: exit %d, want 0 (done)", results[0].code)
	}
	for _, r := range results[1:] {
		if r.code != 1 || !strings.Contains(r.out, "rolled-back") {
			t.Errorf("deploy of %s: exit %d, want 1 and rolled-back:\n%s", r.image, r.code, r.out)
		}
	}
	total := 0
	for code, n := range codes {
		total += n
		if code != http.StatusOK {
			t.Errorf("%d requests answered %d during the deploys", n, code)
		}
	}
	if len(errs) > 0 {
		t.Errorf("%d requests failed: %v", len(errs), errs[:min(5, len(errs))])
	}
	if low := ready.low.Load(); low < int64(floor) {
		t.Errorf("ready containers fell to %d during the deploys, below the %d they began with; timeline: %v", low, floor, ready.changes)
	}

	// Every long-lived connection on an old container lasted until its
	// container's drain began plus CONNECTION_DRAIN (less a second of
	// reporting lag): the deploy did not cut it early.
	drained := map[string]time.Time{}
	for _, ev := range leaderEvents(t) {
		if ev.Direction == "down" {
			for _, id := range ev.IDs {
				if _, ok := drained[id]; !ok {
					drained[id] = ev.Time
				}
			}
		}
	}
	cut := 0
	for _, l := range conns {
		end, ok := l.ended()
		if !oldIDs[l.server] {
			continue
		}
		began, wasDrained := drained[l.server]
		if !wasDrained {
			t.Errorf("%s on %s: its container was never drained", l.kind, l.server)
			continue
		}
		if !ok {
			t.Errorf("%s on %s: still open after its container was replaced", l.kind, l.server)
			continue
		}
		if lived := end.Sub(began); lived < connDrain-time.Second {
			cut++
			t.Errorf("%s on %s ended %v after its drain began, before CONNECTION_DRAIN=%v", l.kind, l.server, lived.Round(10*time.Millisecond), connDrain)
		}
		if l.kind == "events" && !l.bye.Load() {
			t.Errorf("event stream on %s ended without the server's bye", l.server)
		}
	}
	t.Logf("deploys of a pool of %d: good %v, bad health %v (rolled back), 500s %v (rolled back); %d requests, all 200; lowest ready %d; %d long-lived connections, %d cut early",
		floor, results[0].took.Round(100*time.Millisecond), results[1].took.Round(100*time.Millisecond), results[2].took.Round(100*time.Millisecond),
		total, ready.low.Load(), len(conns), cut)
}

// TestLongLivedConnections: 200 WebSocket-style tunnels on a pool of one
// container (MAX_INFLIGHT 4) take no request slot: a plain GET is answered
// within a second; the pool grows for the connections (TARGET_CONNECTIONS
// 100); and the tunnels' lives are not read as service time.
func TestLongLivedConnections(t *testing.T) {
	needDocker(t)
	up(t, "MIN_REPLICAS=1", "MAX_REPLICAS=4", "MAX_INFLIGHT=4", "WEB_ENV=CAPACITY=4",
		"TARGET_CONNECTIONS=100", "SCALE_DOWN=idle", "IDLE_TIMEOUT=30m")
	waitReady(t, 1)
	var (
		mu    sync.Mutex
		conns []*longConn
	)
	defer func() {
		for _, l := range conns {
			l.close()
		}
	}()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := openUpgrade([]string{proxyA, proxyB}[i%2])
			if err != nil {
				failed.Add(1)
				return
			}
			mu.Lock()
			conns = append(conns, l)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of 200 upgrades failed", failed.Load())
	}
	start := time.Now()
	code, _ := hit(t, proxyA+"/")
	took := time.Since(start)
	if code != http.StatusOK || took > time.Second {
		t.Errorf("GET / with 200 tunnels open: %d in %v, want 200 within 1s", code, took)
	}
	var grew time.Duration
	testenv.Eventually(t, 30*time.Second, "the pool grows for 200 connections at 100 each", func() bool {
		s := readDeployStatus(t)
		grew = time.Since(start)
		return s.Replicas >= 2 && s.Conns >= 150
	})
	for _, l := range conns {
		l.close()
	}
	// A few requests, so the service time is measured after the tunnels.
	for range 10 {
		hit(t, proxyB+"/")
	}
	time.Sleep(2 * time.Second)
	s := readDeployStatus(t)
	if s.Demand.ServiceMs > 500 {
		t.Errorf("service time %.0f ms after the tunnels closed: their lives were read as service time", s.Demand.ServiceMs)
	}
	t.Logf("200 tunnels on one container: GET / in %v; pool %d ready %v after; service time %.1f ms", took.Round(time.Millisecond), s.Replicas, grew.Round(100*time.Millisecond), s.Demand.ServiceMs)
}
