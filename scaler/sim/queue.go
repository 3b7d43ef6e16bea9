package sim

// cohort is the requests that arrived in one step and still wait.
type cohort struct{ at, n int64 }

// queue is the balancers' FIFO queue as counts per arrival step: a ring of
// cohorts, oldest at head. It never holds more cohorts than steps in
// QUEUE_TIMEOUT, whatever the rate.
type queue struct {
	buf        []cohort
	head, size int
	total      int64
}

// push appends n requests that arrived at step at (after every earlier
// push's step).
func (q *queue) push(at, n int64) {
	if n <= 0 {
		return
	}
	if q.size == len(q.buf) {
		grown := make([]cohort, max(2*len(q.buf), 16))
		for i := range q.size {
			grown[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.size)%len(q.buf)] = cohort{at, n}
	q.size++
	q.total += n
}

// pop takes up to n requests from the oldest cohort: their arrival step
// and how many were taken (0 when empty).
func (q *queue) pop(n int64) (at, got int64) {
	if q.size == 0 || n <= 0 {
		return 0, 0
	}
	c := &q.buf[q.head]
	got = min(n, c.n)
	at = c.at
	c.n -= got
	q.total -= got
	if c.n == 0 {
		q.head = (q.head + 1) % len(q.buf)
		q.size--
	}
	return at, got
}

// expire removes the requests that arrived before step before and returns
// how many.
func (q *queue) expire(before int64) int64 {
	var n int64
	for q.size > 0 && q.buf[q.head].at < before {
		n += q.buf[q.head].n
		q.head = (q.head + 1) % len(q.buf)
		q.size--
	}
	q.total -= n
	return n
}

// dropNewest removes up to n of the most recent arrivals (the ones that
// found the queue full) and returns how many.
func (q *queue) dropNewest(n int64) int64 {
	var dropped int64
	for q.size > 0 && n > 0 {
		c := &q.buf[(q.head+q.size-1)%len(q.buf)]
		d := min(n, c.n)
		c.n -= d
		n -= d
		dropped += d
		if c.n == 0 {
			q.size--
		}
	}
	q.total -= dropped
	return dropped
}
