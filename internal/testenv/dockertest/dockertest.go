// Package dockertest gives integration tests a real Docker engine the way
// statetest gives them a real Redis: a client (or a skip when no engine
// answers), a web-server image built from this tree, a private network and
// test-unique pool names, and clean-up of everything created, found by
// label so that nothing else on the engine is ever touched.
package dockertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/client"

	"lbscale/internal/testenv"
	"lbscale/scaler/driver"
)

// LabelTest marks every container and network a test creates outside the
// scaler (foreign containers, networks), with the test's unique value.
const LabelTest = "lbscale.test"

// EnvImage names an existing web-server image to use instead of building one.
const EnvImage = "SCALER_TEST_IMAGE"

// Client returns a client of the engine, or skips the test when none
// answers (fails instead when REQUIRE_DOCKER is set).
func Client(t testing.TB) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = cli.Ping(ctx)
		cancel()
	}
	if err != nil {
		testenv.Missing(t, testenv.Docker, fmt.Sprintf("Docker engine not reachable: %v", err))
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Unique returns prefix-<8 hex>, a name no other test run uses.
func Unique(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// WebImage returns the tag of a web-server image: $SCALER_TEST_IMAGE, or one
// built once per test binary from ./webserver (static binary, FROM scratch,
// non-root), removed by Main.
func WebImage(t testing.TB, cli *client.Client) string {
	t.Helper()
	if img := os.Getenv(EnvImage); img != "" {
		return img
	}
	buildOnce.Do(func() { built, buildErr = buildWebImage() })
	if buildErr != nil {
		t.Fatalf("build web-server image: %v", buildErr)
	}
	return built
}

func buildWebImage() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "lbscale-webimage-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	gb := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "webserver"), "./webserver")
	gb.Dir = root
	gb.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := gb.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./webserver: %v\n%s", err, out)
	}
	df := "FROM scratch\nCOPY webserver /webserver\nUSER 65534:65534\nEXPOSE 8080\nENTRYPOINT [\"/webserver\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		return "", err
	}
	tag := Unique("lbscale-scalertest/webserver") // a repository name may not hold ':'
	tag = strings.Replace(tag, "webserver-", "webserver:", 1)
	db := exec.Command("docker", "build", "-q", "--label", LabelTest+"=image", "-t", tag, dir)
	if out, err := db.CombinedOutput(); err != nil {
		return "", fmt.Errorf("docker build: %v\n%s", err, out)
	}
	return tag, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the lbscale module")
	}
	return filepath.Dir(mod), nil
}

// Main runs the tests and then removes the image WebImage built.
func Main(m *testing.M) int {
	code := m.Run()
	if built != "" {
		cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err == nil {
			_, _ = cli.ImageRemove(context.Background(), built, image.RemoveOptions{Force: true, PruneChildren: true})
			cli.Close()
		}
	}
	return code
}

// Network creates a bridge network with a unique name, removed (after the
// containers of pools on it) when the test ends.
func Network(t testing.TB, cli *client.Client) string {
	t.Helper()
	name := Unique("lbscale-test-net")
	ctx := context.Background()
	if _, err := cli.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge", Labels: map[string]string{LabelTest: name}}); err != nil {
		t.Fatalf("create network %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := cli.NetworkRemove(context.Background(), name); err != nil {
			t.Errorf("remove network %s: %v", name, err)
		}
	})
	return name
}

// Pool returns a unique pool name and removes every container labelled
// with it when the test ends (registered after Network, so it runs first).
func Pool(t testing.TB, cli *client.Client) string {
	t.Helper()
	pool := Unique("it")
	t.Cleanup(func() { RemoveLabelled(t, cli, driver.PoolFilter(pool)) })
	return pool
}

// RemoveLabelled force-removes every container matching label (k=v).
func RemoveLabelled(t testing.TB, cli *client.Client, label string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		t.Errorf("list containers %s: %v", label, err)
		return
	}
	for _, c := range cs {
		if err := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !strings.Contains(err.Error(), "No such container") && !strings.Contains(err.Error(), "already in progress") {
			t.Errorf("remove container %s: %v", c.ID, err)
		}
	}
}

// Foreign runs a web-server container on net that the pool under test must
// never touch: labels are its only labels besides LabelTest (pass none for
// an unlabelled one, or another pool's label). It is removed at the end.
func Foreign(t testing.TB, cli *client.Client, img, net string, labels map[string]string) string {
	t.Helper()
	name := Unique("lbscale-test-foreign")
	all := map[string]string{LabelTest: name}
	for k, v := range labels {
		all[k] = v
	}
	ctx := context.Background()
	cr, err := cli.ContainerCreate(ctx, &container.Config{Image: img, Labels: all},
		&container.HostConfig{NetworkMode: container.NetworkMode(net)}, nil, nil, name)
	if err != nil {
		t.Fatalf("create foreign container: %v", err)
	}
	t.Cleanup(func() { RemoveLabelled(t, cli, LabelTest+"="+name) })
	if err := cli.ContainerStart(ctx, cr.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start foreign container: %v", err)
	}
	return name
}

// Running reports whether container id exists and runs.
func Running(t testing.TB, cli *client.Client, id string) bool {
	t.Helper()
	info, err := cli.ContainerInspect(context.Background(), id)
	if err != nil {
		return false
	}
	return info.State != nil && info.State.Running
}

// Count returns how many containers (running or not) carry label.
func Count(t testing.TB, cli *client.Client, label string) int {
	t.Helper()
	cs, err := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		t.Fatalf("list containers %s: %v", label, err)
	}
	return len(cs)
}
