package decide_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDecideLinksNoClient keeps the decisions pure in the build, not only in
// spirit: scaler/decide must not link the Docker SDK or go-redis, so that
// the simulator and the tests of the decisions need neither, and a change to
// a client library cannot change a decision.
func TestDecideLinksNoClient(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "lbscale/scaler/decide").CombinedOutput()
	if err != nil {
		t.Skipf("go list unavailable: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"github.com/docker/", "github.com/redis/"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("scaler/decide links %s", dep)
			}
		}
	}
}
