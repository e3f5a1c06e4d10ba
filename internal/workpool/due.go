package workpool

import (
	"container/heap"
	"time"
)

// Due is a min-heap of work by due time, for a queue's dispatcher: Next
// says what is due first and when. It is not safe for concurrent use; the
// queue's own mutex guards it.
type Due[T any] struct {
	h dueHeap[T]
}

type dueItem[T any] struct {
	at time.Time
	v  T
}

type dueHeap[T any] []dueItem[T]

func (h dueHeap[T]) Len() int           { return len(h) }
func (h dueHeap[T]) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap[T]) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap[T]) Push(x any)        { *h = append(*h, x.(dueItem[T])) }
func (h *dueHeap[T]) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = dueItem[T]{}
	*h = old[:len(old)-1]
	return it
}

// Push schedules v for at.
func (d *Due[T]) Push(at time.Time, v T) { heap.Push(&d.h, dueItem[T]{at: at, v: v}) }

// Len is the number of scheduled items.
func (d *Due[T]) Len() int { return len(d.h) }

// Next is when the earliest item is due; ok is false when nothing is
// scheduled.
func (d *Due[T]) Next() (at time.Time, ok bool) {
	if len(d.h) == 0 {
		return time.Time{}, false
	}
	return d.h[0].at, true
}

// Pop removes and returns the earliest item.
func (d *Due[T]) Pop() T { return heap.Pop(&d.h).(dueItem[T]).v }
