package config

import (
	"slices"
	"strings"
	"testing"

	balancer "lbscale/balancer/config"
	"lbscale/internal/poolfile"
)

// TestPoolFileSettingsAreDeclared holds the pool file's per-pool keys to
// the two commands' tables: a key that neither the balancer nor the scaler
// declares would parse, then be read by neither, and the setting would do
// nothing without a word.
func TestPoolFileSettingsAreDeclared(t *testing.T) {
	for _, name := range poolfile.Settings {
		if Vars.Var(name).Name == "" && balancer.Vars.Var(name).Name == "" {
			t.Errorf("pool file key %s (%s) is declared by neither the balancer's nor the scaler's config.Vars", strings.ToLower(name), name)
		}
	}
}

// TestProcessWideSettingsAreNotPerPool: what one scaler process has once —
// its admin address, Redis, lease timing, identity, driver and network —
// is not a pool file key, so that no pool can move it for itself alone.
func TestProcessWideSettingsAreNotPerPool(t *testing.T) {
	for _, name := range []string{EnvRedisURL, EnvAdminAddr, EnvAdminToken, EnvScalerID, EnvDriver, EnvNetwork,
		EnvLeaseTTL, EnvReconcileInterval, EnvPollInterval, EnvLogLevel, EnvPool, EnvConfig} {
		if slices.Contains(poolfile.Settings, name) {
			t.Errorf("%s is process-wide, yet the pool file may set it per pool", name)
		}
	}
}
