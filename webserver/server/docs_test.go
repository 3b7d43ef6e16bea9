package server

import (
	"testing"

	"lbscale/internal/testenv"
)

// TestDocsMatchVars holds docs/configuration.md's webserver table to Vars.
func TestDocsMatchVars(t *testing.T) { testenv.ConfigDocs(t, Vars, "webserver") }
