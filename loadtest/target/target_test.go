package target

import "testing"

func TestParse(t *testing.T) {
	good := []struct {
		in     string
		url    string
		weight int
	}{
		{"http://127.0.0.1:8081", "http://127.0.0.1:8081", 1},
		{"http://127.0.0.1:8081=9", "http://127.0.0.1:8081", 9},
		{"https://lb.example/path?a=b", "https://lb.example/path?a=b", 1},
		{"http://h/?id=5=2", "http://h/?id=5", 2},
		{"http://h/?sleep_ms=10", "http://h/?sleep_ms=10", 1},
		{"http://h/?a=1&sleep_ms=10", "http://h/?a=1&sleep_ms=10", 1},
		{"http://h/?a=1&sleep_ms=10=3", "http://h/?a=1&sleep_ms=10", 3},
		{"http://h/?flag&work_ms=2", "http://h/?flag&work_ms=2", 1},
	}
	for _, c := range good {
		got, err := Parse(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if got.URL != c.url || got.Weight != c.weight {
			t.Errorf("%q: got %+v, want %s weight %d", c.in, got, c.url, c.weight)
		}
	}
	bad := []string{
		"", "127.0.0.1:8081", "ftp://h/", "http://", "http://h=0", "http://h=-1",
		"http://h=1.5", "http://h:99999", "http://h:80=abc", "://x",
	}
	for _, in := range bad {
		if got, err := Parse(in); err == nil {
			t.Errorf("%q accepted as %+v", in, got)
		}
	}
}

func TestPickerSplitsByWeightSmoothly(t *testing.T) {
	cases := []struct {
		weights []int
		n       int
	}{
		{[]int{9, 1}, 1000},
		{[]int{1, 1, 1}, 999},
		{[]int{5, 3, 2}, 1000},
		{[]int{1}, 10},
	}
	for _, c := range cases {
		ts := make([]Target, len(c.weights))
		total := 0
		for i, w := range c.weights {
			ts[i] = Target{URL: "http://h", Weight: w}
			total += w
		}
		p := NewPicker(ts)
		got := make([]int, len(ts))
		run, longest, last := 0, 0, -1
		for range c.n {
			i := p.Pick()
			got[i]++
			if i == last {
				run++
			} else {
				run, last = 1, i
			}
			longest = max(longest, run)
		}
		for i, w := range c.weights {
			if want := c.n * w / total; got[i] != want {
				t.Errorf("weights %v: target %d got %d, want exactly %d", c.weights, i, got[i], want)
			}
		}
		// Smooth: the heaviest target never runs longer than its share
		// demands (9:1 gives runs of at most 9, not 90).
		if len(ts) > 1 && longest > c.weights[0] {
			t.Errorf("weights %v: a run of %d picks of one target", c.weights, longest)
		}
	}
}
