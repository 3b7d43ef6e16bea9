// Package swarmtest gives integration tests a single-node swarm on the real
// engine, the way dockertest gives them the engine itself: the engine is
// made a swarm manager only if it was in no swarm, and left again when the
// tests are done; an engine that is already in a swarm is a skip, never
// touched. Overlay networks, pools and foreign services are test-unique and
// removed, found by label or id, so that nothing else is ever touched.
package swarmtest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"lbscale/internal/testenv"
	"lbscale/internal/testenv/dockertest"
	"lbscale/scaler/driver"
)

// gwbridge is the bridge `docker swarm init` creates for task containers'
// outside traffic; leaving the swarm keeps it, so Swarm removes it again
// when it was not there before.
const gwbridge = "docker_gwbridge"

var (
	// mu guards users and created: the swarm is initialised for the first
	// test that asks and left after the last one still using it.
	mu      sync.Mutex
	users   int
	created bool
	hadGw   bool
)

// Swarm returns a client of an engine that is the manager of a swarm this
// test binary created. When it cannot have one (no engine answers, the
// engine is already in a swarm, someone else's and not ours to change, or
// `swarm init` fails) it skips, or fails when REQUIRE_DOCKER is set: a
// Swarm test that did not run must not pass for one that did. The swarm
// is left (forced) when the last test using it ends.
func Swarm(t *testing.T) *client.Client {
	t.Helper()
	cli := dockertest.Client(t)
	mu.Lock()
	defer mu.Unlock()
	if !created {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		info, err := cli.Info(ctx)
		if err != nil {
			t.Fatalf("docker info: %v", err)
		}
		if st := info.Swarm.LocalNodeState; st != swarm.LocalNodeStateInactive {
			testenv.Missing(t, testenv.Docker, fmt.Sprintf("engine is already in a swarm (state %q); not touching it", st))
		}
		_, err = cli.NetworkInspect(ctx, gwbridge, network.InspectOptions{})
		hadGw = err == nil
		if _, err := cli.SwarmInit(ctx, swarm.InitRequest{ListenAddr: "127.0.0.1:2377", AdvertiseAddr: "127.0.0.1"}); err != nil {
			testenv.Missing(t, testenv.Docker, fmt.Sprintf("engine refused `docker swarm init --advertise-addr 127.0.0.1`: %v", err))
		}
		created = true
	}
	users++
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if users--; users > 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cli.SwarmLeave(ctx, true); err != nil {
			t.Errorf("leave the test swarm: %v", err)
			return
		}
		created = false
		if !hadGw {
			if err := cli.NetworkRemove(ctx, gwbridge); err != nil && !cerrdefs.IsNotFound(err) {
				t.Logf("remove %s left by the test swarm: %v", gwbridge, err)
			}
		}
	})
	return cli
}

// Network creates an attachable overlay network with a unique name,
// removed when the test ends (after the services on it, see Pool).
func Network(t *testing.T, cli *client.Client) string {
	t.Helper()
	name := dockertest.Unique("lbscale-test-overlay")
	ctx := context.Background()
	resp, err := cli.NetworkCreate(ctx, name, network.CreateOptions{
		Driver: "overlay", Attachable: true, Labels: map[string]string{dockertest.LabelTest: name},
	})
	if err != nil {
		t.Fatalf("create overlay network %s: %v", name, err)
	}
	t.Cleanup(func() {
		// Task containers detach a moment after their service is gone.
		var err error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if err = cli.NetworkRemove(context.Background(), resp.ID); err == nil || cerrdefs.IsNotFound(err) {
				return
			}
		}
		t.Errorf("remove network %s: %v", name, err)
	})
	return name
}

// Pool returns a unique pool name and, when the test ends (before Network's
// clean-up if called after it), removes every service labelled with it and
// waits for their containers to go.
func Pool(t *testing.T, cli *client.Client) string {
	t.Helper()
	pool := dockertest.Unique("it")
	t.Cleanup(func() { RemoveServices(t, cli, driver.PoolFilter(pool)) })
	return pool
}

// Foreign creates a service that the pool under test must never touch,
// running img on net with labels (on the service and its containers) plus
// LabelTest; it is removed at the end. It returns the service's name.
func Foreign(t *testing.T, cli *client.Client, img, net string, labels map[string]string) string {
	t.Helper()
	name := dockertest.Unique("lbscale-test-foreign")
	all := map[string]string{dockertest.LabelTest: name}
	for k, v := range labels {
		all[k] = v
	}
	one := uint64(1)
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name, Labels: all},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: img, Labels: all},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: net}},
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	}
	if _, err := cli.ServiceCreate(context.Background(), spec, swarm.ServiceCreateOptions{}); err != nil {
		t.Fatalf("create foreign service: %v", err)
	}
	t.Cleanup(func() { RemoveServices(t, cli, dockertest.LabelTest+"="+name) })
	return name
}

// RemoveServices removes every service matching label (k=v) and waits up
// to a minute for the containers carrying that label to be gone, removing
// any left over.
func RemoveServices(t testing.TB, cli *client.Client, label string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	args := filters.NewArgs(filters.Arg("label", label))
	svcs, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: args})
	if err != nil {
		t.Errorf("list services %s: %v", label, err)
		return
	}
	for _, s := range svcs {
		if err := cli.ServiceRemove(ctx, s.ID); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove service %s: %v", s.Spec.Name, err)
		}
	}
	for ctx.Err() == nil {
		cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: args})
		if err == nil && len(cs) == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	dockertest.RemoveLabelled(t, cli, label)
}

// TaskContainers returns the ids of the containers on this node carrying
// label (k=v), as `docker ps --filter label=…` lists them.
func TaskContainers(t testing.TB, cli *client.Client, label string) []string {
	t.Helper()
	cs, err := cli.ContainerList(context.Background(), container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		t.Fatalf("list containers %s: %v", label, err)
	}
	ids := make([]string, 0, len(cs))
	for _, c := range cs {
		ids = append(ids, c.ID)
	}
	return ids
}

// Probe runs `webserver healthcheck` against addr (ip:port) in a one-shot
// container of img on net: the overlay address need not be reachable from
// the host, but it must be from a container on the same network.
func Probe(t testing.TB, cli *client.Client, img, net, addr string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := dockertest.Unique("lbscale-test-probe")
	cr, err := cli.ContainerCreate(ctx,
		&container.Config{Image: img, Cmd: []string{"healthcheck"}, Env: []string{"LISTEN_ADDR=" + addr}, Labels: map[string]string{dockertest.LabelTest: name}},
		&container.HostConfig{NetworkMode: container.NetworkMode(net)}, nil, nil, name)
	if err != nil {
		return fmt.Errorf("create probe: %w", err)
	}
	defer dockertest.RemoveLabelled(t, cli, dockertest.LabelTest+"="+name)
	if err := cli.ContainerStart(ctx, cr.ID, container.StartOptions{}); err != nil {
		return fmt.Errorf("start probe: %w", err)
	}
	waitC, errC := cli.ContainerWait(ctx, cr.ID, container.WaitConditionNotRunning)
	select {
	case w := <-waitC:
		if w.StatusCode != 0 {
			logs := probeLogs(ctx, cli, cr.ID)
			return fmt.Errorf("probe of %s exited %d: %s", addr, w.StatusCode, logs)
		}
		return nil
	case err := <-errC:
		return fmt.Errorf("wait for probe: %w", err)
	}
}

func probeLogs(ctx context.Context, cli *client.Client, id string) string {
	rc, err := cli.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return err.Error()
	}
	defer rc.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	n, _ := rc.Read(buf)
	b.Write(buf[:n])
	return b.String()
}
