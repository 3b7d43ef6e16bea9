package config

import (
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"lbscale/internal/envconf"
	"lbscale/internal/state"
	"lbscale/internal/testenv/envconftest"
)

// fuzzVars are every variable the scaler reads.
var fuzzVars = []string{
	EnvRedisURL, EnvPool, EnvMinReplicas, EnvMaxReplicas, EnvMaxInflight,
	EnvTargetInflight, EnvScaleUpCooldown, EnvIdleTimeout, EnvScaleDownInterval,
	EnvDrainTimeout, EnvDrainSettle, EnvStopGrace, EnvCPULimit, EnvMemoryLimit,
	EnvWebImage, EnvWebEnv, EnvWebPort, EnvNetwork, EnvDriver, EnvHealthTimeout,
	EnvLeaseTTL, EnvReconcileInterval, EnvPollInterval, EnvAdminAddr, EnvScalerID,
	EnvLogLevel, EnvScaleDown, EnvStableWindow, EnvPanicWindow,
	EnvMaxScaleDownRate, EnvBacklogDrain, EnvWebConstraints,
	EnvMinSchedule, EnvForecast, EnvForecastBucket, EnvForecastPeriod, EnvForecastDays,
}

// FuzzLoad sets one variable of an otherwise valid environment to arbitrary
// text: Load must not panic, every problem must start with a variable's
// name and one must name the variable changed; what it accepts must hold
// the cross-field rules.
func FuzzLoad(f *testing.F) {
	seeds := []struct{ name, value string }{
		{EnvRedisURL, "redis://r:6379/x"},
		{EnvRedisURL, "http://r:6379"},
		{EnvPool, "Web"},
		{EnvMinReplicas, "20"},
		{EnvTargetInflight, "99"},
		{EnvScaleDownInterval, "500ms"},
		{EnvScaleDownInterval, "*/1 * * * *"},
		{EnvDrainSettle, "1h"},
		{EnvCPULimit, "0.001"},
		{EnvMemoryLimit, "1gb"},
		{EnvMemoryLimit, "99999999999999999999k"},
		{EnvWebEnv, "A=1,LISTEN_ADDR=:9000"},
		{EnvWebPort, "81"},
		{EnvDriver, "swarm"},
		{EnvWebConstraints, "node.role==worker"},
		{EnvWebConstraints, "node.role=worker"},
		{EnvPanicWindow, "2m"},
		{EnvMaxScaleDownRate, "NaN"},
		{EnvMinSchedule, "0 8 * * 1-5 10h 4; 0 20 * * * 30m 2"},
		{EnvMinSchedule, "CRON_TZ=Europe/Paris @daily 1h 2;;"},
		{EnvForecastBucket, "7m"},
	}
	for _, s := range seeds {
		f.Add(uint8(slices.Index(fuzzVars, s.name)), s.value)
	}
	f.Fuzz(func(t *testing.T, which uint8, value string) {
		name := fuzzVars[int(which)%len(fuzzVars)]
		// NETWORK names an overlay-like network, so that the valid base
		// holds for either driver.
		env := map[string]string{EnvRedisURL: "redis://127.0.0.1:6379/0", EnvWebEnv: "LISTEN_ADDR=:8080", EnvNetwork: "lbscale-web"}
		env[name] = value
		c, err := Load(envconf.FromMap(env))
		if err != nil {
			checkNamed(t, err, name)
			return
		}
		switch {
		case c.MinReplicas > c.MaxReplicas, c.DrainTimeout < c.DrainSettle, c.PanicWindow > c.StableWindow,
			c.NanoCPUs < 0, c.MemoryBytes != 0 && c.MemoryBytes < 6<<20, state.CheckPool(c.Pool) != nil,
			c.ForecastPeriod%c.ForecastBucket != 0, c.MinSchedule.Most() > c.MaxReplicas:
			t.Fatalf("%s=%q: accepted %+v", name, value, c)
		}
	})
}

// FuzzWebEnv checks WEB_ENV against WEB_PORT: an accepted list is KEY=VALUE
// items with portable keys and exactly one LISTEN_ADDR, on WEB_PORT.
func FuzzWebEnv(f *testing.F) {
	f.Add("A=1,B=2", 8080)
	f.Add("LISTEN_ADDR=:8080,X=a=b", 8080)
	f.Add("LISTEN_ADDR=0.0.0.0:9000", 8080)
	f.Add("LISTEN_ADDR=:9000", 9000)
	f.Add("=1,1A=2,A", 80)
	f.Add(" , ,A= ", 65535)
	f.Add("LISTEN_ADDR=:8080,LISTEN_ADDR=:8080", 8080)
	f.Fuzz(func(t *testing.T, list string, port int) {
		r := envconf.New(envconf.FromMap(map[string]string{EnvWebEnv: list}), Vars)
		out := webEnv(r, EnvWebEnv, port)
		if err := r.Err(); err != nil {
			checkNamed(t, err, EnvWebEnv)
			return
		}
		listens := 0
		for _, kv := range out {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || !envKey.MatchString(k) {
				t.Fatalf("WEB_ENV=%q: accepted item %q", list, kv)
			}
			if k == EnvWebListenAddr {
				listens++
				if _, p, err := net.SplitHostPort(v); err != nil || p != strconv.Itoa(port) {
					t.Fatalf("WEB_ENV=%q: %q does not listen on %d", list, kv, port)
				}
			}
		}
		if listens == 0 {
			t.Fatalf("WEB_ENV=%q: no LISTEN_ADDR in %q", list, out)
		}
	})
}

// FuzzMemory checks MEMORY_LIMIT: an accepted size is 0 (no limit) or
// from Docker's 6 MiB minimum to 1 TiB, never an overflowed product.
func FuzzMemory(f *testing.F) {
	for _, s := range []string{"0", "6m", "5m", "128MB", "1g", "1024g", "1025g", "512k", "6291456", "9223372036854775807k", "1t", "-1m", " 64m "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r := envconf.New(envconf.FromMap(map[string]string{EnvMemoryLimit: v}), Vars)
		n := memory(r, EnvMemoryLimit)
		if err := r.Err(); err != nil {
			checkNamed(t, err, EnvMemoryLimit)
			if n != 0 {
				t.Fatalf("%q: refused but returned %d", v, n)
			}
			return
		}
		if n != 0 && (n < 6<<20 || n > 1<<40) {
			t.Fatalf("%q: accepted %d bytes", v, n)
		}
	})
}

// checkNamed fails unless every error joined in err starts with a known
// variable's name and err mentions name.
func checkNamed(t *testing.T, err error, name string) {
	t.Helper()
	envconftest.CheckNamed(t, err, name, fuzzVars)
}
