package main_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"lbscale/internal/testenv"
)

// readLog decodes the access log at path (nil when it does not exist).
func readLog(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// The real balancer process writes its access log to ACCESS_LOG, and
// after logrotate's move and SIGHUP goes on in a new file at the same
// path, losing no line.
func TestAccessLogFileAndSIGHUP(t *testing.T) {
	addr := web(t, "w1")
	path := filepath.Join(t.TempDir(), "access.log")
	b := balancer(t, "BACKENDS="+addr, "ACCESS_LOG="+path)
	c := &http.Client{Timeout: 10 * time.Second}
	for _, p := range []string{"/one", "/two"} {
		if res := get(t, c, b.proxy+p); res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", p, res.StatusCode)
		}
	}
	testenv.Eventually(t, 5*time.Second, "two lines in the log", func() bool { return len(readLog(t, path)) == 2 })
	first := readLog(t, path)
	if first[0]["path"] != "/one" || first[0]["status"] != float64(200) || first[0]["backend"] == "" || first[0]["pool"] == "" {
		t.Fatalf("first line %v", first[0])
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := b.proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, "a new file after SIGHUP", func() bool {
		_ = get(t, c, b.proxy+"/three")
		return len(readLog(t, path)) > 0
	})
	rotated, fresh := readLog(t, path+".1"), readLog(t, path)
	if len(rotated) < 2 || rotated[0]["path"] != "/one" {
		t.Fatalf("rotated file: %v", rotated)
	}
	for _, l := range fresh {
		if l["path"] != "/three" {
			t.Fatalf("new file holds %v", l)
		}
	}
	if strings.Contains(b.proc.Output(), "panic") {
		t.Fatalf("balancer output: %s", b.proc.Output())
	}
}
