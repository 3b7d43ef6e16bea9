package dashboard

import (
	"slices"
	"testing"
)

func TestRing(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size, add int
		want      []int64 // the kept points' T, oldest first
	}{
		{"empty", 3, 0, []int64{}},
		{"partly filled", 3, 2, []int64{1, 2}},
		{"just full", 3, 3, []int64{1, 2, 3}},
		{"wrapped once", 3, 4, []int64{2, 3, 4}},
		{"wrapped to the start", 3, 6, []int64{4, 5, 6}},
		{"wrapped many times", 3, 10, []int64{8, 9, 10}},
		{"size 0 keeps one", 0, 5, []int64{5}},
		{"size 1", 1, 2, []int64{2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing(tc.size)
			for i := range tc.add {
				r.add(Point{T: int64(i + 1)})
			}
			got := []int64{}
			for _, p := range r.points() {
				got = append(got, p.T)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("points = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRingPointsIsACopy(t *testing.T) {
	r := newRing(2)
	r.add(Point{T: 1})
	r.add(Point{T: 2})
	ps := r.points()
	ps[0].T = 99
	r.add(Point{T: 3})
	if got := r.points(); got[0].T != 2 || got[1].T != 3 {
		t.Errorf("points after changing an earlier result = %v, want T 2, 3", got)
	}
}
