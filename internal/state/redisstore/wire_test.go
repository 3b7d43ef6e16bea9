package redisstore

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"lbscale/internal/state"
)

func TestSyncArgsEncode(t *testing.T) {
	a := syncArgs{Balancer: "b1", TTL: 3 * time.Second, Hold: true, Gen: 7, Pos: -1, RegVer: 4, IxVer: -1,
		Scalars: []any{state.FieldQueued, int64(2)},
		Items:   []item{{id: "w1", local: 1, floor: 1, want: 3, limit: 4, seen: 99}},
		Moved:   []item{{id: "w2", local: 5}}}
	want := []any{"sync", "p:", "b1", int64(3000), 1, 0, int64(7), int64(-1), int64(4), int64(-1), 1,
		state.FieldQueued, int64(2), 1, "w1", int64(1), int64(1), int64(3), int64(4), int64(99), "w2", int64(5)}
	if got := a.encode("p:"); !reflect.DeepEqual(got, want) {
		t.Errorf("encode:\n got %v\nwant %v", got, want)
	}
}

func TestDecodeSyncReply(t *testing.T) {
	ok := make([]any, len(replySlots))
	set := func(name string, v any) { ok[slotOf[name]] = v }
	set("status", "ok")
	set("gen", int64(5))
	set("now", int64(1000))
	set("pos", int64(9))
	set("grants", []any{int64(2), int64(0)})
	set("seen_ids", []any{"w1"})
	set("seen_times", []any{int64(123)})
	set("live", []any{"b1", "b2"})
	set("weights", []any{"1.000", "2.500"})
	set("registry_version", int64(3))
	set("registry_sent", int64(1))
	set("registry", []any{"w1", "{}"})
	set("owned", int64(1))
	set("index_version", int64(2))
	set("index_sent", int64(0))
	set("index", []any{})
	set("counts", "\x00\x00\x00\x01")
	set("counts_read", int64(1))

	r, err := decodeSyncReply(ok, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := syncReply{Gen: 5, Now: 1000, Pos: 9, Grants: []int64{2, 0}, SeenIDs: []string{"w1"}, SeenTimes: []int64{123},
		Live: []string{"b1", "b2"}, Weights: []string{"1.000", "2.500"}, RegVer: 3, RegSent: true, Registry: []string{"w1", "{}"},
		Owned: true, IxVer: 2, Index: []string{}, Counts: "\x00\x00\x00\x01", CountsRead: true}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("decode:\n got %+v\nwant %+v", r, want)
	}

	for _, tc := range []struct {
		name    string
		raw     []any
		items   int
		resync  bool
		wantErr string
	}{
		{"resync", []any{"resync", int64(8)}, 0, true, ""},
		{"fewer grants than items", ok, 3, false, "grants 2 backends, sent 3"},
		{"short reply", ok[:5], 0, false, "unexpected reply"},
		{"unknown status", append([]any{"nope"}, ok[1:]...), 0, false, "unexpected reply"},
	} {
		r, err := decodeSyncReply(tc.raw, tc.items)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.wantErr)
			}
			continue
		}
		if err != nil || r.Resync != tc.resync || (tc.resync && r.Gen != 8) {
			t.Errorf("%s: %+v %v", tc.name, r, err)
		}
	}
}

// TestScriptPrelude: the script gets every name it uses from Go.
func TestScriptPrelude(t *testing.T) {
	p := scriptPrelude()
	for _, s := range append(append([]string{}, replySlots[:]...), loadSlots[:]...) {
		if !strings.Contains(p, `"`+s+`"`) {
			t.Errorf("prelude lacks slot %q", s)
		}
	}
	for _, f := range []string{state.FieldQueued, state.FieldWeight, state.FieldInterval, state.FieldArrivals,
		state.FieldDone, state.FieldService, state.FieldInflight, state.FieldGranted} {
		if !strings.Contains(p, `"`+f+`"`) {
			t.Errorf("prelude lacks field %q", f)
		}
	}
	for _, literal := range []string{"'q'", "'w'", "'i:'", "'g:'", "return {"} {
		if strings.Contains(syncSrc, literal) {
			t.Errorf("sync.lua spells %s itself; it must come from wire.go", literal)
		}
	}
}
