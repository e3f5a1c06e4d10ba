// Package packetqueue holds received packets between the goroutine that decrypts them and
// the one that reads them, in buffers lent by a pool that all queues share, or hands them
// straight to their consumer once it needs no reader (Divert).
//
// It replaces pion's packetio.Buffer for recorded tracks. That one keeps one growing byte
// ring per stream: a burst (a keyframe, or a reader that fell behind for a moment under
// load) grows it, and it never shrinks, so a thousand calls keep a thousand bursts' worth
// of memory. Here a packet's buffer goes back to the pool as soon as it is read, and a
// queue that is empty holds nothing.
package packetqueue

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/pion/transport/v4/deadline"
	"github.com/pion/transport/v4/packetio"
)

// pooledSize is the size of the pool's buffers: an Ethernet MTU's worth, which every
// media packet fits. A larger packet gets a buffer of its own.
const pooledSize = 1500

// maxPacket is the largest packet a queue takes, as pion's buffer.
const maxPacket = 0xffff

var errTooBig = errors.New("packetqueue: packet too big")

// ErrDiverted is what Read returns once the queue hands its packets to Divert's function.
var ErrDiverted = errors.New("packetqueue: packets are diverted")

// Pool lends packet buffers to queues; one serves every queue of a server.
type Pool struct{ p sync.Pool }

// NewPool returns an empty pool.
func NewPool() *Pool {
	return &Pool{p: sync.Pool{New: func() any { b := make([]byte, 0, pooledSize); return &b }}}
}

func (p *Pool) get(n int) *[]byte {
	if n > pooledSize {
		b := make([]byte, 0, n)
		return &b
	}
	return p.p.Get().(*[]byte)
}

func (p *Pool) put(b *[]byte) {
	if cap(*b) == pooledSize {
		*b = (*b)[:0]
		p.p.Put(b)
	}
}

// Queue is one stream's packets, first in, first out. Write and Read may be called from
// different goroutines; it is an io.ReadWriteCloser with a read deadline, as pion's SRTP
// streams expect of their buffers.
type Queue struct {
	pool     *Pool
	limit    int // bytes that may wait; beyond, packets are dropped
	deadline *deadline.Deadline
	notify   chan struct{} // a packet came or the queue closed

	mu     sync.Mutex
	pkts   []*[]byte // waiting, oldest first, from head
	head   int
	bytes  int
	closed bool
	// deliver takes the packets once the waiting ones are read (diverted).
	deliver  func([]byte)
	diverted bool
}

// New returns an empty queue that holds at most limit bytes of packets.
func New(pool *Pool, limit int) *Queue {
	return &Queue{pool: pool, limit: limit, deadline: deadline.New(), notify: make(chan struct{}, 1)}
}

// Write queues a copy of one packet. A full queue drops it with packetio.ErrFull (pion's
// SRTP reader then goes on); a closed one returns io.ErrClosedPipe.
func (q *Queue) Write(pkt []byte) (int, error) {
	if len(pkt) > maxPacket {
		return 0, errTooBig
	}
	q.mu.Lock()
	switch {
	case q.closed:
		q.mu.Unlock()
		return 0, io.ErrClosedPipe
	case q.diverted:
		q.deliver(pkt)
		q.mu.Unlock()
		return len(pkt), nil
	case q.bytes+len(pkt) > q.limit:
		q.mu.Unlock()
		return 0, packetio.ErrFull
	}
	b := q.pool.get(len(pkt))
	*b = append((*b)[:0], pkt...)
	if q.head > 0 && len(q.pkts) == cap(q.pkts) {
		// Move the waiting packets to the front rather than grow.
		n := copy(q.pkts, q.pkts[q.head:])
		clear(q.pkts[n:])
		q.pkts, q.head = q.pkts[:n], 0
	}
	q.pkts = append(q.pkts, b)
	q.bytes += len(pkt)
	q.mu.Unlock()
	q.wake()
	return len(pkt), nil
}

func (q *Queue) wake() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// Read copies the oldest packet into p, waiting for one until the queue closes (io.EOF
// once it is empty) or the read deadline passes (a net.Error whose Timeout is true). A
// packet longer than p is cut, and io.ErrShortBuffer returned with what fit.
func (q *Queue) Read(p []byte) (int, error) {
	for {
		select {
		case <-q.deadline.Done():
			return 0, os.ErrDeadlineExceeded
		default:
		}
		q.mu.Lock()
		if q.head < len(q.pkts) {
			b := q.pkts[q.head]
			q.pkts[q.head] = nil
			q.head++
			if q.head == len(q.pkts) {
				q.pkts, q.head = q.pkts[:0], 0
				if cap(q.pkts) > 64 {
					q.pkts = nil // a burst's slots go too
				}
			}
			q.bytes -= len(*b)
			q.mu.Unlock()
			n := copy(p, *b)
			short := n < len(*b)
			q.pool.put(b)
			if short {
				return n, io.ErrShortBuffer
			}
			return n, nil
		}
		closed := q.closed
		diverted := q.deliver != nil
		q.diverted = diverted && !closed
		q.mu.Unlock()
		switch {
		case closed:
			return 0, io.EOF
		case diverted:
			return 0, ErrDiverted
		}
		select {
		case <-q.deadline.Done():
		case <-q.notify:
		}
	}
}

// Divert makes the queue hand every packet written to deliver instead of queueing it, once
// the packets waiting now are read: the Read that finds the queue empty switches it over
// and returns ErrDiverted, so the reader sees every packet in order, the waiting ones
// first. deliver then runs in Write's goroutine, one packet at a time, must not keep pkt,
// and must not block: it holds up the writer (pion's decryption of every stream of the
// connection). Once Close returns, deliver is not running and is not called again.
//
// It lets a stream that needs no reader goroutine (nothing on pion's read path works on
// it) go without one, and without the wake-up per packet that handing it over costs.
func (q *Queue) Divert(deliver func(pkt []byte)) {
	q.mu.Lock()
	q.deliver = deliver
	q.mu.Unlock()
	q.wake() // a waiting Read switches over at once if nothing is queued
}

// SetReadDeadline sets when a waiting Read gives up; the zero time means never.
func (q *Queue) SetReadDeadline(t time.Time) error {
	q.deadline.Set(t)
	return nil
}

// Close ends the queue: waiting packets can still be read, then Read returns io.EOF.
// A diverted queue delivers nothing more.
func (q *Queue) Close() error {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wake()
	return nil
}
