package main

import (
	"errors"
	"io"
	"strconv"
	"testing"
	"time"
)

// FuzzRunProfile drives `loadtest run`'s rate-shape flags (--profile,
// --rate, --rate-to, --step-by, --step-every, --spike-*, --duration,
// --requests) with arbitrary values; set says which flags are given. The
// command line is refused with a usage error or yields a profile that
// validates, runs forward, stays under maxRate and is small enough to hold.
func FuzzRunProfile(f *testing.F) {
	const all = 0xff
	f.Add("constant", 10.0, 0.0, 0.0, 0.0, int64(0), int64(10*time.Second), int64(0), int64(0), int64(0), uint8(0b00000101))
	f.Add("step", 10.0, 0.0, 5.0, 0.0, int64(time.Second), int64(time.Minute), int64(0), int64(0), int64(0), uint8(0b00011101))
	f.Add("step", 1.0, 0.0, 0.0, 0.0, int64(time.Nanosecond), int64(time.Hour), int64(0), int64(0), int64(0), uint8(0b00010101))
	f.Add("step", 1.0, 0.0, 0.0, 0.0, int64(2000000*time.Hour), int64(1<<63-1), int64(0), int64(0), int64(0), uint8(0b00010101))
	f.Add("ramp", 1.0, 100.0, 0.0, 0.0, int64(0), int64(time.Minute), int64(0), int64(0), int64(0), uint8(0b00000111))
	f.Add("spike", 10.0, 0.0, 0.0, 50.0, int64(0), int64(time.Minute), int64(time.Second), int64(1<<63-1), int64(0), uint8(0b11100101))
	f.Add("constant", 1e-9, 0.0, 0.0, 0.0, int64(0), int64(0), int64(0), int64(0), int64(1<<62), uint8(0b00000011))
	f.Add("file", 0.0, 0.0, 0.0, 0.0, int64(0), int64(0), int64(0), int64(0), int64(0), uint8(all))
	f.Fuzz(func(t *testing.T, profile string, rate, rateTo, stepBy, spikeRate float64,
		stepEvery, duration, spikeAt, spikeFor, requests int64, set uint8) {
		args := []string{"--target", "http://127.0.0.1:1", "--profile", profile}
		flags := []struct {
			name, value string
		}{
			{"rate", strconv.FormatFloat(rate, 'g', -1, 64)},
			{"requests", strconv.FormatInt(requests, 10)},
			{"duration", time.Duration(duration).String()},
			{"step-by", strconv.FormatFloat(stepBy, 'g', -1, 64)},
			{"step-every", time.Duration(stepEvery).String()},
			{"spike-rate", strconv.FormatFloat(spikeRate, 'g', -1, 64)},
			{"spike-at", time.Duration(spikeAt).String()},
			{"spike-for", time.Duration(spikeFor).String()},
		}
		for i, fl := range flags {
			if set&(1<<i) != 0 {
				args = append(args, "--"+fl.name, fl.value)
			}
		}
		if profile == "ramp" {
			args = append(args, "--rate-to", strconv.FormatFloat(rateTo, 'g', -1, 64))
		}
		c, err := loadRun(args, io.Discard)
		if err != nil {
			var ue usageError
			if !errors.As(err, &ue) || ue.msg == "" {
				t.Fatalf("%q: error %v is not a usage error", args, err)
			}
			return
		}
		p := c.profile
		if err := p.Validate(); err != nil {
			t.Fatalf("%q: accepted a profile Validate refuses: %v", args, err)
		}
		if p[0].Start != 0 || p.Duration() <= 0 || p.Duration() != c.Duration {
			t.Fatalf("%q: profile runs %v, config says %v", args, p.Duration(), c.Duration)
		}
		if len(p) > maxSegments {
			t.Fatalf("%q: %d segments", args, len(p))
		}
		for _, s := range p {
			if max(s.From, s.To) > maxRate {
				t.Fatalf("%q: rate %v above maxRate", args, max(s.From, s.To))
			}
		}
	})
}
