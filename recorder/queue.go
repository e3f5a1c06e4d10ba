package recorder

import "sync"

// packetQueue carries packets from the tracks' reader goroutines to the
// recording's writer. Producers append under a mutex and the writer takes
// the whole batch at once, so a packet costs one uncontended lock rather
// than a channel hand-off, and the writer is called once per batch. It is
// bounded: a full queue refuses the packet (the caller drops and counts it)
// and never blocks the RTP path.
type packetQueue struct {
	mu    sync.Mutex
	items []queueItem
	spare []queueItem // the writer's last batch, reused as the next buffer
	limit int
	// ready is called when items becomes non-empty: the writer has work.
	ready func()
}

func newPacketQueue(limit int, ready func()) *packetQueue {
	return &packetQueue{limit: limit, ready: ready}
}

// push adds it unless the queue is full.
func (q *packetQueue) push(it queueItem) bool {
	q.mu.Lock()
	if len(q.items) >= q.limit {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, it)
	first := len(q.items) == 1
	q.mu.Unlock()
	if first {
		q.ready()
	}
	return true
}

// take returns everything queued, in order; only the writer calls it, and
// the batch is valid until its next call.
func (q *packetQueue) take() []queueItem {
	q.mu.Lock()
	batch := q.items
	q.items = q.spare[:0]
	q.mu.Unlock()
	q.spare = batch
	return batch
}

// len is the number of packets waiting (benchmarks pace themselves by it).
func (q *packetQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
