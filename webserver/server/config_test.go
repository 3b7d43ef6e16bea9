package server

import (
	"os"
	"strings"
	"testing"
	"time"

	"lbscale/internal/envconf"
)

func TestLoadDefaults(t *testing.T) {
	c, err := Load(envconf.FromMap(map[string]string{"WORK_MS": "", "CAPACITY": "  "}))
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	want := Config{ListenAddr: ":8080", ServerID: host, Hostname: host, ShutdownTimeout: 30 * time.Second, LogLevel: "info"}
	if c != want {
		t.Errorf("defaults = %+v, want %+v", c, want)
	}
}

func TestLoadValues(t *testing.T) {
	c, err := Load(envconf.FromMap(map[string]string{
		"LISTEN_ADDR": "127.0.0.1:9000", "WORK_MS": "15", "SLEEP_MS": "5000", "CAPACITY": "4",
		"SERVER_ID": "web-7", "SHUTDOWN_TIMEOUT": "2s", "LOG_LEVEL": "debug",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.ListenAddr != "127.0.0.1:9000" || c.Work != 15*time.Millisecond || c.Sleep != 5*time.Second ||
		c.Capacity != 4 || c.ServerID != "web-7" || c.ShutdownTimeout != 2*time.Second || c.LogLevel != "debug" {
		t.Errorf("got %+v", c)
	}
}

func TestLoadRejects(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want []string // every variable the error must name
	}{
		{map[string]string{"WORK_MS": "abc"}, []string{"WORK_MS"}},
		{map[string]string{"WORK_MS": "60001"}, []string{"WORK_MS"}},
		{map[string]string{"WORK_MS": "1.5"}, []string{"WORK_MS"}},
		{map[string]string{"SLEEP_MS": "-5"}, []string{"SLEEP_MS"}},
		{map[string]string{"CAPACITY": "-1"}, []string{"CAPACITY"}},
		{map[string]string{"LISTEN_ADDR": "nonsense"}, []string{"LISTEN_ADDR"}},
		{map[string]string{"LISTEN_ADDR": ":99999"}, []string{"LISTEN_ADDR"}},
		{map[string]string{"SHUTDOWN_TIMEOUT": "30"}, []string{"SHUTDOWN_TIMEOUT"}},
		{map[string]string{"LOG_LEVEL": "loud"}, []string{"LOG_LEVEL"}},
		{map[string]string{"FAULT": "crash"}, []string{"FAULT"}},
		{map[string]string{"FAULT": "Hang"}, []string{"FAULT"}},
		{map[string]string{"WORK_MS": "x", "CAPACITY": "-1", "LISTEN_ADDR": "nonsense"}, []string{"WORK_MS", "CAPACITY", "LISTEN_ADDR"}},
	} {
		_, err := Load(envconf.FromMap(tc.env))
		if err == nil {
			t.Errorf("%v: no error", tc.env)
			continue
		}
		for _, name := range tc.want {
			if !strings.Contains(err.Error(), name+":") {
				t.Errorf("%v: error %q does not name %s", tc.env, err, name)
			}
		}
	}
}

func TestLoadFault(t *testing.T) {
	for _, v := range []string{"", "hang", "error", " error "} {
		c, err := Load(envconf.FromMap(map[string]string{"FAULT": v}))
		if err != nil || c.Fault != strings.TrimSpace(v) {
			t.Errorf("FAULT=%q: Fault %q, err %v", v, c.Fault, err)
		}
	}
}
