package drivertest_test

import (
	"context"
	"testing"
	"time"

	"lbscale/scaler/driver"
	"lbscale/scaler/driver/drivertest"
)

// TestStartListCarriesImage: the fake reports the image a container was
// started from, as the real drivers do, so that deploy logic can be
// unit-tested on it.
func TestStartListCarriesImage(t *testing.T) {
	e := drivertest.NewEngine(func() time.Time { return time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC) })
	d := e.Driver("p1")
	ctx := context.Background()
	inst, err := d.Start(ctx, driver.Spec{Name: "web-1", Image: "lbscale/webserver:v2"})
	if err != nil {
		t.Fatal(err)
	}
	if inst.Image != "lbscale/webserver:v2" {
		t.Fatalf("Start = %+v, want image lbscale/webserver:v2", inst)
	}
	e.Add("p1", driver.Instance{ID: "web-0", Image: "lbscale/webserver:v1"})
	list, err := d.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, i := range list {
		got[i.ID] = i.Image
	}
	if len(got) != 2 || got["web-0"] != "lbscale/webserver:v1" || got["web-1"] != "lbscale/webserver:v2" {
		t.Fatalf("List images = %v", got)
	}
}
