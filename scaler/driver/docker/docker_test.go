package docker_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"testing"
	"time"

	"lbscale/internal/testenv/dockertest"
	"lbscale/scaler/driver"
	"lbscale/scaler/driver/docker"
)

func TestMain(m *testing.M) { os.Exit(dockertest.Main(m)) }

// TestDockerDriver checks the driver against a real engine: Start on the
// pool's network with labels and limits, List sees only the pool, the
// address answers from the host, Stop refuses containers outside the pool
// and removes the pool's own.
func TestDockerDriver(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (Docker) skipped in -short mode")
	}
	cli := dockertest.Client(t)
	img := dockertest.WebImage(t, cli)
	netName := dockertest.Network(t, cli)
	pool := dockertest.Pool(t, cli)
	unlabelled := dockertest.Foreign(t, cli, img, netName, nil)
	otherPool := dockertest.Foreign(t, cli, img, netName, map[string]string{driver.LabelPool: pool + "-x"})

	d, err := docker.New(docker.Config{Pool: pool, Network: netName, Port: 8080, Creator: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	watch := d.Watch(ctx)

	name := driver.NewName(pool)
	inst, err := d.Start(ctx, driver.Spec{Name: name, Image: img, Env: []string{"LISTEN_ADDR=:8080"}, NanoCPUs: 250_000_000, MemoryBytes: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if inst.ID != name || inst.Addr == "" || !inst.Running() || inst.Image != img {
		t.Fatalf("started %+v, want running at an address with image %s", inst, img)
	}
	select {
	case <-watch:
	case <-time.After(30 * time.Second):
		t.Fatal("no nudge from the event stream after a start")
	}
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get("http://" + inst.Addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never healthy from the host: %v", inst.Addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	list, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != name || list[0].Addr != inst.Addr || list[0].Image != img {
		t.Fatalf("List = %+v, want only %s at %s with image %s", list, name, inst.Addr, img)
	}
	info, err := cli.ContainerInspect(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Hostname != name || info.Config.Labels[driver.LabelCreator] != "test" || info.Config.Labels[driver.LabelImage] != img ||
		info.HostConfig.NanoCPUs != 250_000_000 || info.HostConfig.Memory != 32<<20 {
		t.Fatalf("container config: hostname %q labels %v cpu %d mem %d", info.Config.Hostname, info.Config.Labels, info.HostConfig.NanoCPUs, info.HostConfig.Memory)
	}

	// A container created before the driver labelled the image: List falls
	// back to the engine's image field, which still reads as the reference
	// given while the tag names the same image.
	legacyPool := dockertest.Pool(t, cli)
	legacy := dockertest.Foreign(t, cli, img, netName, map[string]string{driver.LabelPool: legacyPool})
	dl, err := docker.New(docker.Config{Pool: legacyPool, Network: netName, Port: 8080})
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	if list, err := dl.List(ctx); err != nil || len(list) != 1 || list[0].ID != legacy || list[0].Image != img {
		t.Fatalf("List of a pool with an unlabelled image = %+v, %v; want %s with image %s", list, err, legacy, img)
	}

	for _, foreign := range []string{unlabelled, otherPool} {
		if err := d.Stop(ctx, foreign, 0); !errors.Is(err, driver.ErrNotInPool) {
			t.Fatalf("Stop(%s) = %v, want ErrNotInPool", foreign, err)
		}
		if !dockertest.Running(t, cli, foreign) {
			t.Fatalf("Stop touched %s", foreign)
		}
	}

	if err := d.Stop(ctx, name, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.ContainerInspect(ctx, name); err == nil {
		t.Fatal("container still exists after Stop")
	}
	if err := d.Stop(ctx, name, time.Second); err != nil {
		t.Fatalf("second Stop of a gone container: %v", err)
	}
	if _, err := d.Start(ctx, driver.Spec{Name: driver.NewName(pool), Image: "lbscale-no-such-image:none"}); err == nil {
		t.Fatal("Start of a missing image succeeded")
	}
	if n := dockertest.Count(t, cli, driver.PoolFilter(pool)); n != 0 {
		t.Fatalf("%d containers left after a failed Start", n)
	}
}
