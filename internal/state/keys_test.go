package state_test

import (
	"reflect"
	"strings"
	"testing"

	"lbscale/internal/state"
)

// TestKeysShareOneSlot: every key of a pool hashes to the same Redis
// Cluster slot, so the Lua scripts, which touch several keys at once, run
// on a cluster (and a Sentinel primary is one server anyway). Every method
// of Keys is called by reflection, so a key added later is checked too;
// balancer ids with braces of their own must not move their key.
func TestKeysShareOneSlot(t *testing.T) {
	for _, pool := range []string{"web", "a", "web-2.eu_west", "0"} {
		t.Run(pool, func(t *testing.T) {
			k := state.NewKeys(pool)
			v := reflect.ValueOf(k)
			names := map[string]string{}
			for i := range v.NumMethod() {
				m, name := v.Method(i), v.Type().Method(i).Name
				switch ft := m.Type(); {
				case ft.NumOut() != 1 || ft.Out(0).Kind() != reflect.String:
					t.Fatalf("Keys.%s does not return one string: adapt the test", name)
				case ft.NumIn() == 0:
					names[name] = m.Call(nil)[0].String()
				case ft.NumIn() == 1 && ft.In(0).Kind() == reflect.String:
					for _, id := range []string{"b1", "b{2}", "}{", ""} {
						names[name+"("+id+")"] = m.Call([]reflect.Value{reflect.ValueOf(id)})[0].String()
					}
				default:
					t.Fatalf("Keys.%s takes %v: adapt the test", name, ft)
				}
			}
			want := slot(pool)
			for name, key := range names {
				if tag := hashTag(key); tag != pool {
					t.Errorf("Keys.%s = %q hashes on %q, not the pool %q", name, key, tag, pool)
				}
				if got := slot(hashTag(key)); got != want {
					t.Errorf("Keys.%s = %q is in slot %d, the pool's is %d", name, key, got, want)
				}
			}
		})
	}
}

// hashTag is the part of key Redis Cluster hashes: between the first "{"
// and the first "}" after it when that is not empty, else the whole key.
func hashTag(key string) string {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	end := strings.IndexByte(key[open+1:], '}')
	if end <= 0 {
		return key
	}
	return key[open+1 : open+1+end]
}

// slot is Redis Cluster's slot of a hash tag: CRC16 (XMODEM) mod 16384.
func slot(tag string) int {
	var crc uint16
	for i := 0; i < len(tag); i++ {
		crc ^= uint16(tag[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// TestSlot pins the CRC to Redis's own answers (CLUSTER KEYSLOT), so the
// test above compares real slots.
func TestSlot(t *testing.T) {
	for tag, want := range map[string]int{"foo": 12182, "web": 9635, "123456789": 12739} {
		if got := slot(tag); got != want {
			t.Errorf("slot(%q) = %d, want %d", tag, got, want)
		}
	}
}

func TestCheckPool(t *testing.T) {
	for _, tc := range []struct {
		pool string
		ok   bool
	}{
		{"web", true},
		{"e2e-swarm.2_b", true},
		{"0pool", true},
		{"", false},
		{"Web", false},
		{"a}b", false},
		{"{web}", false},
		{"-web", false},
		{"a b", false},
		{"p234567890123456789012345678901234567890", true},
		{"p2345678901234567890123456789012345678901", false},
	} {
		if err := state.CheckPool(tc.pool); (err == nil) != tc.ok {
			t.Errorf("CheckPool(%q) = %v, want ok %v", tc.pool, err, tc.ok)
		}
	}
}
