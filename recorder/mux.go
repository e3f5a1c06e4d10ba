package recorder

// Interleaving. Frames of all tracks pass through a small time-ordered queue before they
// reach the container, so blocks and pages come out in time order even though video frames
// complete later than audio packets and each track waits for its own reordering. A frame is
// released as soon as no frame before it can come any more: every track has queued a frame
// and its next one cannot start earlier (the floor; a track's frames never go back in
// time). So the track that lags (usually video: the sender's clock places its frames before
// they arrive) is written at once, and only the other's frames wait, for the lag. A track
// that has not started or has gone quiet holds no frame longer than until the newest frame
// seen is muxDelay ahead of it. The queue also lets frames go early when it holds muxMaxLen
// frames or Config.MuxBytes bytes (a sender of huge frames must not make a recording hold
// gigabytes; its blocks may then come out of order across tracks, which players accept).
const (
	muxDelayNS = 500e6
	muxMaxLen  = 4096
	// DefaultMuxBytes is Config.MuxBytes's default: half a second of video at 200 Mbit/s.
	DefaultMuxBytes = 16 << 20
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
	items    []muxFrame
	maxT     int64
	order    uint64
	delay    int64
	floor    int64 // no frame earlier than this can come any more
	bytes    int   // of the frames held
	maxBytes int
}

func (q *muxQueue) less(i, j int) bool {
	a, b := &q.items[i], &q.items[j]
	return a.t < b.t || a.t == b.t && a.order < b.order
}

func (q *muxQueue) push(f muxFrame) {
	q.order++
	f.order = q.order
	q.maxT = max(q.maxT, f.t)
	q.bytes += len(f.data)
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
	return len(q.items) > 0 && (q.due() || q.full())
}

// due reports whether the oldest frame is in time order for good (the floor has passed it)
// or has waited out the interleaving delay.
func (q *muxQueue) due() bool {
	t := q.items[0].t
	return t <= q.floor || t <= q.maxT-q.delay
}

// full reports whether the queue holds as many frames or bytes as it may.
func (q *muxQueue) full() bool { return len(q.items) >= muxMaxLen || q.bytes >= q.maxBytes }

func (q *muxQueue) pop() muxFrame {
	top := q.items[0]
	q.bytes -= len(top.data)
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

// frameFreeList keeps the buffers of written video frames for the next ones, so a
// steady stream allocates nothing. It is bounded in bytes: one huge keyframe must not
// leave megabytes behind for the rest of the recording.
type frameFreeList struct {
	bufs  []*[]byte
	bytes int // capacity of the buffers kept
}

const (
	freeListBytes  = 2 << 20   // kept in all
	freeListMaxBuf = 256 << 10 // a larger buffer goes to the garbage collector
)

func (l *frameFreeList) get() *[]byte {
	n := len(l.bufs)
	if n == 0 {
		return new([]byte)
	}
	bp := l.bufs[n-1]
	l.bufs[n-1] = nil
	l.bufs = l.bufs[:n-1]
	l.bytes -= cap(*bp)
	return bp
}

func (l *frameFreeList) put(bp *[]byte) {
	c := cap(*bp)
	if c > freeListMaxBuf || l.bytes+c > freeListBytes {
		return
	}
	l.bufs = append(l.bufs, bp)
	l.bytes += c
}
