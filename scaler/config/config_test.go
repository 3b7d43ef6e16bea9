package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"lbscale/internal/envconf"
	"lbscale/internal/state/redisstore"
	"lbscale/internal/testenv/tlstest"
	"lbscale/scaler/forecast"
)

func load(t *testing.T, env map[string]string) (Config, error) {
	t.Helper()
	if _, ok := env[EnvRedisURL]; !ok {
		env[EnvRedisURL] = "redis://127.0.0.1:6379/0"
	}
	return Load(envconf.FromMap(env))
}

func TestDefaults(t *testing.T) {
	c, err := load(t, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Pool != "web" || c.MinReplicas != 1 || c.MaxReplicas != 10 || c.TargetInflight != 4 ||
		c.ScaleUpCooldown != 0 || c.IdleTimeout != time.Minute || c.ScaleDownSpec != "@every 10s" ||
		c.DrainTimeout != 30*time.Second || c.NanoCPUs != 0 || c.MemoryBytes != 0 ||
		c.WebImage != "lbscale/webserver:local" || c.WebPort != 8080 || c.Network != "bridge" ||
		c.Driver != DriverDocker || c.HealthTimeout != 30*time.Second || c.LeaseTTL != 5*time.Second ||
		c.ReconcileInterval != 2*time.Second || c.AdminAddr != ":9090" || c.ID == "" ||
		c.ScaleDown != ScaleDownDemand || c.StableWindow != time.Minute || c.PanicWindow != 6*time.Second ||
		c.MaxScaleDownRate != 2 || c.BacklogDrain != 2*time.Second || c.HealthPath != "/healthz" {
		t.Fatalf("defaults: %+v", c)
	}
	if len(c.WebEnv) != 1 || c.WebEnv[0] != "LISTEN_ADDR=:8080" {
		t.Fatalf("WebEnv = %v, want the listen address added", c.WebEnv)
	}
}

func TestValues(t *testing.T) {
	c, err := load(t, map[string]string{
		EnvMinReplicas: "0", EnvMaxReplicas: "3", EnvMaxInflight: "7",
		EnvCPULimit: "0.5", EnvMemoryLimit: "128m", EnvScaleDownInterval: "1s",
		EnvWebEnv: "CAPACITY=2, SLEEP_MS=300", EnvWebPort: "9000", EnvHealthPath: "/status/200",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.HealthPath != "/status/200" {
		t.Errorf("HealthPath = %q", c.HealthPath)
	}
	if c.MinReplicas != 0 || c.MaxReplicas != 3 {
		t.Errorf("min/max = %d/%d", c.MinReplicas, c.MaxReplicas)
	}
	if c.TargetInflight != 7 {
		t.Errorf("TargetInflight = %d, want MAX_INFLIGHT's 7 when TARGET_INFLIGHT is unset", c.TargetInflight)
	}
	if c.NanoCPUs != 500_000_000 || c.MemoryBytes != 128<<20 {
		t.Errorf("limits = %d cpu, %d bytes", c.NanoCPUs, c.MemoryBytes)
	}
	if c.ScaleDownSpec != "@every 1s" {
		t.Errorf("bare duration spec = %q, want @every 1s", c.ScaleDownSpec)
	}
	if strings.Join(c.WebEnv, " ") != "CAPACITY=2 SLEEP_MS=300 LISTEN_ADDR=:9000" {
		t.Errorf("WebEnv = %v", c.WebEnv)
	}
	c, err = load(t, map[string]string{EnvScaleDown: "idle", EnvStableWindow: "20s", EnvPanicWindow: "2s", EnvMaxScaleDownRate: "1.5", EnvBacklogDrain: "500ms"})
	if err != nil {
		t.Fatal(err)
	}
	if c.ScaleDown != ScaleDownIdle || c.StableWindow != 20*time.Second || c.PanicWindow != 2*time.Second || c.MaxScaleDownRate != 1.5 || c.BacklogDrain != 500*time.Millisecond {
		t.Errorf("autoscaling settings: %+v", c)
	}
	c, err = load(t, map[string]string{EnvTargetInflight: "3", EnvMaxInflight: "7", EnvWebEnv: "LISTEN_ADDR=:1234", EnvWebPort: "1234", EnvScaleDownInterval: "*/2 * * * *", EnvMemoryLimit: "1g"})
	if err != nil {
		t.Fatal(err)
	}
	if c.TargetInflight != 3 || strings.Join(c.WebEnv, " ") != "LISTEN_ADDR=:1234" || c.ScaleDownSpec != "*/2 * * * *" || c.MemoryBytes != 1<<30 {
		t.Errorf("got %+v", c)
	}
}

func TestInvalidNamesTheVariable(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{EnvRedisURL: ""}, EnvRedisURL},
		{map[string]string{EnvRedisURL: "http://x:1"}, EnvRedisURL},
		{map[string]string{EnvPool: "Has Space"}, EnvPool},
		{map[string]string{EnvMinReplicas: "-1"}, EnvMinReplicas},
		{map[string]string{EnvMinReplicas: "5", EnvMaxReplicas: "4"}, EnvMaxReplicas},
		{map[string]string{EnvMaxReplicas: "0"}, EnvMaxReplicas},
		{map[string]string{EnvTargetInflight: "0"}, EnvTargetInflight},
		{map[string]string{EnvScaleUpCooldown: "soon"}, EnvScaleUpCooldown},
		{map[string]string{EnvIdleTimeout: "0s"}, EnvIdleTimeout},
		{map[string]string{EnvScaleDownInterval: "every ten"}, EnvScaleDownInterval},
		{map[string]string{EnvScaleDownInterval: "1ms"}, EnvScaleDownInterval},
		{map[string]string{EnvCPULimit: "-1"}, EnvCPULimit},
		{map[string]string{EnvMemoryLimit: "lots"}, EnvMemoryLimit},
		{map[string]string{EnvMemoryLimit: "1m"}, EnvMemoryLimit},
		{map[string]string{EnvWebEnv: "=x"}, EnvWebEnv},
		{map[string]string{EnvWebPort: "70000"}, EnvWebPort},
		{map[string]string{EnvDriver: "swarm"}, EnvNetwork},
		{map[string]string{EnvDriver: "swarm", EnvNetwork: "web", EnvWebConstraints: "node.role"}, EnvWebConstraints},
		{map[string]string{EnvDriver: "swarm", EnvNetwork: "web", EnvWebConstraints: "node.role==manager,zone=eu"}, EnvWebConstraints},
		{map[string]string{EnvDriver: "swarm", EnvNetwork: "web", EnvWebConstraints: "node.role=="}, EnvWebConstraints},
		{map[string]string{EnvWebConstraints: "node.role==worker"}, EnvWebConstraints},
		{map[string]string{EnvDriver: "k8s"}, EnvDriver},
		{map[string]string{EnvLeaseTTL: "1ms"}, EnvLeaseTTL},
		{map[string]string{EnvAdminAddr: "nope"}, EnvAdminAddr},
		{map[string]string{EnvLogLevel: "loud"}, EnvLogLevel},
		{map[string]string{EnvRedisURL: "redis://r:6379/abc"}, EnvRedisURL},
		{map[string]string{EnvRedisURL: "redis://r:6379/0?foo=1"}, EnvRedisURL},
		{map[string]string{EnvCPULimit: "NaN"}, EnvCPULimit},
		{map[string]string{EnvCPULimit: "0.001"}, EnvCPULimit},
		{map[string]string{EnvMemoryLimit: "7gm"}, EnvMemoryLimit},
		{map[string]string{EnvMemoryLimit: "1kg"}, EnvMemoryLimit},
		{map[string]string{EnvWebEnv: "LISTEN_ADDR=:9000"}, EnvWebEnv},
		{map[string]string{EnvMaxInflight: "2", EnvTargetInflight: "3"}, EnvTargetInflight},
		{map[string]string{EnvDrainTimeout: "0s"}, EnvDrainTimeout},
		{map[string]string{EnvDrainTimeout: "2s", EnvDrainSettle: "3s"}, EnvDrainTimeout},
		{map[string]string{EnvScaleDown: "never"}, EnvScaleDown},
		{map[string]string{EnvStableWindow: "10"}, EnvStableWindow},
		{map[string]string{EnvStableWindow: "500ms"}, EnvStableWindow},
		{map[string]string{EnvPanicWindow: "-1s"}, EnvPanicWindow},
		{map[string]string{EnvStableWindow: "5s", EnvPanicWindow: "6s"}, EnvPanicWindow},
		{map[string]string{EnvMaxScaleDownRate: "0.5"}, EnvMaxScaleDownRate},
		{map[string]string{EnvMaxScaleDownRate: "NaN"}, EnvMaxScaleDownRate},
		{map[string]string{EnvBacklogDrain: "0s"}, EnvBacklogDrain},
		{map[string]string{EnvHealthPath: "healthz"}, EnvHealthPath},
		{map[string]string{EnvMinSchedule: "0 8 * * 1-5 10h"}, EnvMinSchedule},
		{map[string]string{EnvMinSchedule: "0 25 * * * 1h 2"}, EnvMinSchedule},
		{map[string]string{EnvMinSchedule: "0 8 * * * 1h 11"}, EnvMinSchedule}, // above MAX_REPLICAS=10
		{map[string]string{EnvForecast: "yes"}, EnvForecast},
		{map[string]string{EnvForecastBucket: "1s"}, EnvForecastBucket},
		{map[string]string{EnvForecastBucket: "10500ms"}, EnvForecastBucket},
		{map[string]string{EnvForecastBucket: "7m"}, EnvForecastPeriod}, // 24h is no multiple of 7m
		{map[string]string{EnvForecastBucket: "1h", EnvForecastPeriod: "1h"}, EnvForecastPeriod},
		{map[string]string{EnvForecastDays: "0"}, EnvForecastDays},
	}
	for _, tt := range tests {
		_, err := load(t, tt.env)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("env %v: error %v, want one naming %s", tt.env, err, tt.want)
		}
	}
}

// TestFloors: MIN_SCHEDULE parses into a schedule the controller reads,
// and the learned floor's settings default to a week of days in 5-minute
// buckets, off.
func TestFloors(t *testing.T) {
	c, err := load(t, map[string]string{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Forecast || c.ForecastBucket != 5*time.Minute || c.ForecastPeriod != 24*time.Hour || c.ForecastDays != 7 || len(c.MinSchedule.Entries) != 0 {
		t.Fatalf("defaults: forecast %v %s %s %d, schedule %q", c.Forecast, c.ForecastBucket, c.ForecastPeriod, c.ForecastDays, c.MinSchedule)
	}
	c, err = load(t, map[string]string{EnvMinSchedule: "0 8 * * 1-5 10h 4; 0 20 * * * 30m 2", EnvForecast: "on",
		EnvForecastBucket: "1m", EnvForecastPeriod: "168h", EnvForecastDays: "4"})
	if err != nil {
		t.Fatal(err)
	}
	monday := time.Date(2026, 12, 7, 9, 0, 0, 0, time.Local)
	if !c.Forecast || c.Bucketing() != (forecast.Bucketing{Bucket: time.Minute, Period: 168 * time.Hour, Days: 4}) ||
		len(c.MinSchedule.Entries) != 2 || c.MinSchedule.Floor(monday) != 4 {
		t.Fatalf("read forecast %v %+v, schedule %+v", c.Forecast, c.Bucketing(), c.MinSchedule)
	}
}

// TestSwarmSettings: the swarm driver takes an overlay network and
// placement constraints, trimmed, in the order given.
func TestSwarmSettings(t *testing.T) {
	c, err := load(t, map[string]string{EnvDriver: DriverSwarm, EnvNetwork: "lbscale-web",
		EnvWebConstraints: " node.role==worker , node.labels.zone != eu-1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"node.role==worker", "node.labels.zone != eu-1"}
	if c.Driver != DriverSwarm || c.Network != "lbscale-web" || !slices.Equal(c.WebConstraints, want) {
		t.Fatalf("driver %q network %q constraints %q, want swarm, lbscale-web, %q", c.Driver, c.Network, c.WebConstraints, want)
	}
}

// TestRedisTLSVariables: the scaler reads the same Redis variables as the
// balancer (redisstore.ReadConn; its own tests cover every rule), and no
// error carries the URL's password.
func TestRedisTLSVariables(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	tlstest.NewCA(t, ca, "test CA")
	const url = "rediss://:s3cret-pw@redis:6380/0"
	c, err := load(t, map[string]string{EnvRedisURL: url, redisstore.EnvRedisCAFile: ca})
	if err != nil {
		t.Fatal(err)
	}
	if c.Redis.URL != url || c.Redis.CAFile != ca {
		t.Fatalf("read %+v", c.Redis)
	}
	for name, env := range map[string]map[string]string{
		redisstore.EnvRedisCAFile:   {EnvRedisURL: "redis://:s3cret-pw@redis:6379/0", redisstore.EnvRedisCAFile: ca},
		EnvRedisURL:                 {EnvRedisURL: "redis://:s3cret-pw@redis:port/0"},
		redisstore.EnvRedisCertFile: {EnvRedisURL: url, redisstore.EnvRedisKeyFile: ca},
	} {
		_, err := load(t, env)
		if err == nil || !strings.Contains(err.Error(), name+":") || strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("%v: error %v, want one naming %s without the password", env, err, name)
		}
	}
}

// TestLoadNilLookup: nil reads the process environment, as envconf.New
// documents, instead of panicking on the MAX_INFLIGHT check.
func TestLoadNilLookup(t *testing.T) {
	t.Setenv(EnvRedisURL, "redis://127.0.0.1:6379/0")
	t.Setenv(EnvMaxInflight, "8")
	c, err := Load(nil)
	if err == nil && c.TargetInflight != 8 {
		t.Errorf("TARGET_INFLIGHT defaults to %d, want MAX_INFLIGHT=8", c.TargetInflight)
	}
}
