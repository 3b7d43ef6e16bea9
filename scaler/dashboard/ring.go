package dashboard

// ring keeps the latest points, oldest overwritten first. Not safe for
// concurrent use: the Hub guards it.
type ring struct {
	buf  []Point
	next int  // where the next point goes
	full bool // buf has wrapped at least once
}

func newRing(size int) *ring { return &ring{buf: make([]Point, max(size, 1))} }

func (r *ring) add(p Point) {
	r.buf[r.next] = p
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
}

// points returns the kept points, oldest first, in a new slice.
func (r *ring) points() []Point {
	if !r.full {
		return append([]Point(nil), r.buf[:r.next]...)
	}
	out := make([]Point, 0, len(r.buf))
	out = append(out, r.buf[r.next:]...)
	return append(out, r.buf[:r.next]...)
}
