package swarm_test

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"lbscale/internal/testenv/dockertest"
	"lbscale/internal/testenv/swarmtest"
	"lbscale/scaler/driver"
	swarmdriver "lbscale/scaler/driver/swarm"
)

func TestMain(m *testing.M) { os.Exit(dockertest.Main(m)) }

// TestSwarmDriver checks the driver against a real single-node swarm:
// Start runs services on the overlay with the pool's labels on services and
// containers, List maps them, a killed task comes back, Stop removes a
// service with its container and refuses services outside the pool.
func TestSwarmDriver(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (Docker Swarm) skipped in -short mode")
	}
	begun := time.Now()
	cli := swarmtest.Swarm(t)
	img := dockertest.WebImage(t, cli)
	t.Logf("swarm and image ready in %s", time.Since(begun).Round(time.Millisecond))
	netName := swarmtest.Network(t, cli)
	pool := swarmtest.Pool(t, cli)
	otherPool := swarmtest.Foreign(t, cli, img, netName, map[string]string{driver.LabelPool: pool + "-x"})
	unlabelled := swarmtest.Foreign(t, cli, img, netName, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d, err := swarmdriver.New(swarmdriver.Config{Pool: pool, Network: netName, Port: 8080, Creator: "test", StopGrace: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	watch := d.Watch(ctx)
	<-watch // the nudge of the stream's opening

	ni, err := cli.NetworkInspect(ctx, netName, network.InspectOptions{})
	if err != nil || len(ni.IPAM.Config) == 0 {
		t.Fatalf("inspect %s: %v %+v", netName, err, ni.IPAM)
	}
	_, subnet, err := net.ParseCIDR(ni.IPAM.Config[0].Subnet)
	if err != nil {
		t.Fatal(err)
	}

	spec := func() driver.Spec {
		return driver.Spec{Name: driver.NewName(pool), Image: img, Env: []string{"LISTEN_ADDR=:8080"}, NanoCPUs: 250_000_000, MemoryBytes: 32 << 20}
	}
	started := map[string]driver.Instance{}
	for range 2 {
		t0 := time.Now()
		inst, err := d.Start(ctx, spec())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("Start took %s", time.Since(t0).Round(time.Millisecond))
		host, _, _ := net.SplitHostPort(inst.Addr)
		if !inst.Running() || !subnet.Contains(net.ParseIP(host)) || inst.Image != img {
			t.Fatalf("started %+v, want running at an address in %s with image %s", inst, subnet, img)
		}
		started[inst.ID] = inst
	}
	select {
	case <-watch:
	case <-time.After(10 * time.Second):
		t.Fatal("no nudge from the event stream after starts")
	}

	list := listed(t, d)
	if len(list) != 2 {
		t.Fatalf("List = %+v, want the 2 started", list)
	}
	for _, inst := range list {
		if s, ok := started[inst.ID]; !ok || !inst.Running() || inst.Addr != s.Addr || inst.Image != img {
			t.Fatalf("List has %+v, started %+v", inst, s)
		}
	}

	ids := swarmtest.TaskContainers(t, cli, driver.PoolFilter(pool))
	if len(ids) != 2 {
		t.Fatalf("containers with the pool label: %v, want 2", ids)
	}
	for _, id := range ids {
		info, err := cli.ContainerInspect(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := started[info.Config.Hostname]; !ok || info.Config.Labels[driver.LabelCreator] != "test" || info.Config.Labels[driver.LabelImage] != img ||
			!slices.Contains(info.HostConfig.CapDrop, "ALL") || info.HostConfig.NanoCPUs != 250_000_000 || info.HostConfig.Memory != 32<<20 {
			t.Fatalf("task container: hostname %q labels %v capdrop %v cpu %d mem %d",
				info.Config.Hostname, info.Config.Labels, info.HostConfig.CapDrop, info.HostConfig.NanoCPUs, info.HostConfig.Memory)
		}
	}
	probed := time.Now()
	for _, inst := range started {
		if err := swarmtest.Probe(t, cli, img, netName, inst.Addr); err != nil {
			t.Fatalf("%s not serving on the overlay: %v", inst.ID, err)
		}
		t.Logf("%s answers on the overlay (probe took %s)", inst.Addr, time.Since(probed).Round(time.Millisecond))
		break
	}

	// Kill one task's container: Swarm restarts it, List follows (and never
	// calls it gone meanwhile).
	victim := list[0]
	if err := cli.ContainerKill(ctx, victim.ContainerID, "KILL"); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	deadline := killed.Add(30 * time.Second)
	for {
		var back *driver.Instance
		for _, inst := range listed(t, d) {
			if inst.ID == victim.ID && inst.Gone() {
				t.Fatalf("%s listed as %s while Swarm restarts it: the scaler would replace it", inst.ID, inst.State)
			}
			if inst.ID == victim.ID && inst.Running() && inst.Addr != "" && inst.ContainerID != victim.ContainerID {
				back = &inst
			}
		}
		if back != nil {
			t.Logf("%s back at %s (was %s) %s after the kill", victim.ID, back.Addr, victim.Addr, time.Since(killed).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not running again 30 s after its container was killed: %+v", victim.ID, listed(t, d))
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A service created before the driver labelled the image: List falls
	// back to the service's task template.
	legacyPool := swarmtest.Pool(t, cli)
	legacy := swarmtest.Foreign(t, cli, img, netName, map[string]string{driver.LabelPool: legacyPool})
	dl, err := swarmdriver.New(swarmdriver.Config{Pool: legacyPool, Network: netName, Port: 8080})
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	if list := listed(t, dl); len(list) != 1 || list[0].ID != legacy || list[0].Image != img {
		t.Fatalf("List of a pool with an unlabelled image = %+v, want %s with image %s", list, legacy, img)
	}

	for _, foreign := range []string{otherPool, unlabelled} {
		before, _, err := cli.ServiceInspectWithRaw(ctx, foreign, swarm.ServiceInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Stop(ctx, foreign, time.Second); !errors.Is(err, driver.ErrNotInPool) {
			t.Fatalf("Stop(%s) = %v, want ErrNotInPool", foreign, err)
		}
		after, _, err := cli.ServiceInspectWithRaw(ctx, foreign, swarm.ServiceInspectOptions{})
		if err != nil || after.Version != before.Version {
			t.Fatalf("Stop touched %s: %v, version %v → %v", foreign, err, before.Version, after.Version)
		}
	}

	// Stop the other one: gone from List, its container gone from the node.
	var stopped driver.Instance
	for _, inst := range listed(t, d) {
		if inst.ID != victim.ID {
			stopped = inst
		}
	}
	t0 := time.Now()
	if err := d.Stop(ctx, stopped.ID, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("Stop took %s", time.Since(t0).Round(time.Millisecond))
	for _, inst := range listed(t, d) {
		if inst.ID == stopped.ID {
			t.Fatalf("List still has %+v after Stop", inst)
		}
	}
	if _, err := cli.ContainerInspect(ctx, stopped.ContainerID); !cerrdefs.IsNotFound(err) {
		t.Fatalf("container %s of the stopped service: %v, want not found", stopped.ContainerID, err)
	}
	if err := d.Stop(ctx, stopped.ID, time.Second); err != nil {
		t.Fatalf("second Stop of a gone service: %v", err)
	}

	bad := spec()
	bad.Image = "lbscale-no-such-image:none"
	if _, err := d.Start(ctx, bad); err == nil {
		t.Fatal("Start of a missing image succeeded")
	} else {
		t.Logf("Start of a missing image: %v", err)
	}
	if _, _, err := cli.ServiceInspectWithRaw(ctx, bad.Name, swarm.ServiceInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Fatalf("service of the failed Start: %v, want not found", err)
	}
	if n := len(listed(t, d)); n != 1 {
		t.Fatalf("List has %d services, want the killed-and-restarted one only", n)
	}
}

func listed(t *testing.T, d *swarmdriver.Swarm) []driver.Instance {
	t.Helper()
	list, err := d.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return list
}
