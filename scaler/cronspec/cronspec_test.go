package cronspec

import "testing"

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		spec string
		ok   bool
	}{
		{"*/10 * * * *", true},
		{"@every 10s", true},
		{"CRON_TZ=Europe/Paris 0 8 * * 1-5", true},
		{"TZ=0", false},        // the parser panics on a zone with no fields
		{"CRON_TZ=UTC", false}, // likewise
		{"0 8 * *", false},
		{"", false},
	} {
		if _, err := Parse(tt.spec); (err == nil) != tt.ok {
			t.Errorf("Parse(%q): err %v, want ok %v", tt.spec, err, tt.ok)
		}
	}
}
