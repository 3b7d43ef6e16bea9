package redisstore

import (
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"testing"

	"lbscale/internal/state"
)

// FuzzDecodeBackend decodes arbitrary registry hash fields, as a hand edit
// or another version could leave them. Nothing panics; a refused entry's
// error names it; an accepted one has a known state, a dialable address
// when balancers route to it, a weight in range, and encodes back to the
// same entry.
func FuzzDecodeBackend(f *testing.F) {
	seeds := []struct{ id, v string }{
		{"web-1", `{"id":"web-1","addr":"10.0.0.2:8080","state":"ready","since":"2024-05-01T10:00:00Z"}`},
		{"web-2", `{"addr":"web-2:8080","state":"draining","weight":3}`},
		{"web-3", `{"state":"starting"}`},
		{"web-4", `{"addr":"","state":"ready"}`},
		{"web-5", `{"addr":"a:1","state":"gone"}`},
		{"web-6", `{"addr":"a:1","state":"ready","weight":-1}`},
		{"web-7", `{"addr":"a:1","state":"ready","weight":9223372036854775807}`},
		{"web-8", `{"addr":"a:1","state":"ready","since":"yesterday"}`},
		{"web-9", `{not json`},
		{"", `null`},
		{"web-10", `{"addr":"[::1]:99999","state":"ready"}`},
	}
	for _, s := range seeds {
		f.Add(s.id, s.v)
	}
	f.Fuzz(func(t *testing.T, id, v string) {
		b, err := decodeBackend(id, v)
		if err != nil {
			if !strings.Contains(err.Error(), strconv.Quote(id)) {
				t.Fatalf("error %q does not name entry %q", err, id)
			}
			return
		}
		if b.ID != id {
			t.Fatalf("%q: decoded id %q", id, b.ID)
		}
		switch b.State {
		case state.Starting, state.Ready, state.Draining:
		default:
			t.Fatalf("%q: accepted state %q", v, b.State)
		}
		if b.State != state.Starting {
			if host, _, err := net.SplitHostPort(b.Addr); err != nil || host == "" {
				t.Fatalf("%q: routable with address %q", v, b.Addr)
			}
		}
		if b.Weight < 0 || b.Weight > state.MaxWeight {
			t.Fatalf("%q: weight %d", v, b.Weight)
		}
		enc, err := json.Marshal(b)
		if err != nil {
			t.Fatalf("%+v does not encode: %v", b, err)
		}
		again, err := decodeBackend(id, string(enc))
		if err != nil || again.Addr != b.Addr || again.State != b.State || again.Weight != b.Weight || !again.Since.Equal(b.Since) {
			t.Fatalf("%+v does not round-trip: %+v, %v", b, again, err)
		}
	})
}

// FuzzDecodeRegistry: a registry hash of arbitrary entries decodes to one
// entry per field, sorted by id, bad ones marked Invalid.
func FuzzDecodeRegistry(f *testing.F) {
	f.Add("web-1", `{"addr":"a:1","state":"ready"}`, "web-0", `{"addr":"a:1","state":"bogus"}`)
	f.Fuzz(func(t *testing.T, id1, v1, id2, v2 string) {
		m := map[string]string{id1: v1, id2: v2}
		out := decodeRegistry(m)
		if len(out) != len(m) {
			t.Fatalf("%d entries from %d fields", len(out), len(m))
		}
		for i, b := range out {
			if i > 0 && out[i-1].ID >= b.ID {
				t.Fatalf("not sorted: %+v", out)
			}
			if _, err := decodeBackend(b.ID, m[b.ID]); (err != nil) != (b.State == state.Invalid) {
				t.Fatalf("entry %q: state %q, decode error %v", b.ID, b.State, err)
			}
		}
	})
}
