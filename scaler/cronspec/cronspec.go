// Package cronspec parses the scaler's cron specs (SCALE_DOWN_INTERVAL,
// MIN_SCHEDULE) with robfig/cron's standard parser, as an error and never
// a panic: the parser indexes past the end of some malformed specs (a
// time-zone prefix with no fields after it, "TZ=0"), and a setting must
// stop the scaler with a message naming it, not crash it.
package cronspec

import (
	"fmt"

	"github.com/robfig/cron/v3"
)

// Parse is cron.ParseStandard, with the parser's panics turned into
// errors.
func Parse(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("malformed cron spec %q", spec)
		}
	}()
	return cron.ParseStandard(spec)
}
