package config

import (
	"testing"

	"lbscale/internal/testenv"
)

// TestDocsMatchVars holds docs/configuration.md's balancer table to Vars.
func TestDocsMatchVars(t *testing.T) { testenv.ConfigDocs(t, Vars, "balancer") }
