package workpool

import (
	"container/heap"
	"context"
	"sync"
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

// Dispatch hands due items to the workers, one at a time, until ctx ends
// or a drain is over; it is the only reader of the heap's head. mu guards
// due. wake tells it the heap changed. taken (may be nil) runs under mu as
// an item leaves the heap; requeue runs under mu for an item that could not
// be handed out before the end, so it stays scheduled for the next Run.
func Dispatch[T any](ctx context.Context, l *Lifecycle, mu sync.Locker, due *Due[T], wake <-chan struct{},
	now func() time.Time, taken, requeue func(T), work chan<- T) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if ctx.Err() != nil {
			return
		}
		mu.Lock()
		var item T
		var ready bool
		var wait time.Duration
		at, ok := due.Next()
		if l.drained(at, ok) {
			mu.Unlock()
			return
		}
		if ok && !(l.IsDraining() && !l.deadline.IsZero() && at.After(l.deadline)) {
			if wait = at.Sub(now()); wait <= 0 {
				item, ready = due.Pop(), true
				if taken != nil {
					taken(item)
				}
				l.inFlight.Add(1)
			}
		}
		mu.Unlock()
		if ready {
			select {
			case work <- item:
				continue
			case <-ctx.Done():
			}
			l.inFlight.Add(-1)
			mu.Lock()
			requeue(item)
			mu.Unlock()
			return
		}
		var tick <-chan time.Time
		if wait > 0 {
			timer.Reset(wait)
			tick = timer.C
		}
		var draining <-chan struct{}
		if !l.IsDraining() {
			draining = l.Draining()
		}
		select {
		case <-ctx.Done():
		case <-draining:
		case <-l.settled:
		case <-wake:
		case <-tick:
		}
		timer.Stop()
	}
}
