package recorder

// Interleaving. Frames of all tracks pass through a small time-ordered queue before they
// reach the container, so blocks and pages come out in time order even though video frames
// complete later than audio packets and each track waits for its own reordering. A frame is
// released once the newest frame seen is muxDelay ahead of it (or the queue is full).
const (
	muxDelayNS = 500e6
	muxMaxLen  = 4096
)

type muxFrame struct {
	t     int64
	order uint64 // arrival order, keeps equal times stable
	tr    *trackState
	key   bool
	buf   *[]byte // owner of data, returned to its pool after writing
	data  []byte
	video bool // buf comes from the video frame free list, not the packet pool
}

// muxQueue is a binary min-heap on (t, order), hand-written so pushes do not box values.
type muxQueue struct {
	items []muxFrame
	maxT  int64
	order uint64
	delay int64
}

func (q *muxQueue) less(i, j int) bool {
	a, b := &q.items[i], &q.items[j]
	return a.t < b.t || a.t == b.t && a.order < b.order
}

func (q *muxQueue) push(f muxFrame) {
	q.order++
	f.order = q.order
	q.maxT = max(q.maxT, f.t)
	q.items = append(q.items, f)
	for i := len(q.items) - 1; i > 0; {
		p := (i - 1) / 2
		if !q.less(i, p) {
			break
		}
		q.items[i], q.items[p] = q.items[p], q.items[i]
		i = p
	}
}

// ready reports whether the oldest frame may be written.
func (q *muxQueue) ready() bool {
	return len(q.items) > 0 && (q.items[0].t <= q.maxT-q.delay || len(q.items) >= muxMaxLen)
}

func (q *muxQueue) pop() muxFrame {
	top := q.items[0]
	n := len(q.items) - 1
	q.items[0] = q.items[n]
	q.items[n] = muxFrame{}
	q.items = q.items[:n]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < n && q.less(l, m) {
			m = l
		}
		if r < n && q.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		q.items[i], q.items[m] = q.items[m], q.items[i]
		i = m
	}
	return top
}
