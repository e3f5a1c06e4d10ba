// Package workpool is the run-and-drain lifecycle the durable queues
// (uploads, webhooks) share: Run feeds a fixed set of workers from one
// dispatcher until the context ends or a drain is over. Drain finishes what
// can be finished by its deadline (a SIGTERM promises that every recording
// is uploaded and reported before the exit, when it can be); what is not due
// before the deadline stays on disk for the next process.
package workpool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Lifecycle tracks one queue's Run and Drain.
type Lifecycle struct {
	mu      sync.Mutex
	running bool
	done    chan struct{} // closed when the current Run returns

	startOnce sync.Once
	started   chan struct{} // closed when Run is first called

	drainOnce sync.Once
	drain     chan struct{} // closed by Drain
	deadline  time.Time     // set before drain is closed; zero: none

	inFlight atomic.Int64
	settled  chan struct{} // poked when a worker finishes an item
}

// New returns a lifecycle that is neither running nor draining.
func New() *Lifecycle {
	return &Lifecycle{drain: make(chan struct{}), started: make(chan struct{}), settled: make(chan struct{}, 1)}
}

// Draining is closed once Drain has been called; dispatchers select on it.
func (l *Lifecycle) Draining() <-chan struct{} { return l.drain }

// IsDraining reports whether Drain has been called.
func (l *Lifecycle) IsDraining() bool {
	select {
	case <-l.drain:
		return true
	default:
		return false
	}
}

// ErrRunning is returned by a second Run while one is under way.
var ErrRunning = errors.New("workpool: Run called twice")

// Run starts workers goroutines that call handle with what dispatch sends
// them, and returns once dispatch has returned (on ctx, or when a drain is
// over) and every worker has finished; cleanup, if not nil, runs last (idle
// connections own goroutines that must not outlive Run).
func Run[T any](ctx context.Context, l *Lifecycle, workers int,
	dispatch func(context.Context, chan<- T), handle func(context.Context, T), cleanup func()) error {
	l.mu.Lock()
	if l.running {
		l.mu.Unlock()
		return ErrRunning
	}
	l.running = true
	done := make(chan struct{})
	l.done = done
	l.mu.Unlock()
	l.startOnce.Do(func() { close(l.started) })
	defer func() {
		if cleanup != nil {
			cleanup()
		}
		l.mu.Lock()
		l.running = false
		l.mu.Unlock()
		close(done)
	}()

	work := make(chan T)
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for item := range work {
				handle(ctx, item)
				l.inFlight.Add(-1)
				select {
				case l.settled <- struct{}{}:
				default:
				}
			}
		})
	}
	dispatch(ctx, work)
	close(work)
	wg.Wait()
	return nil
}

// Drain finishes the work that can be finished by ctx's deadline: items
// due before it are still handed out (retries included), and once nothing
// is in flight or due before the deadline, Run returns. Drain waits for
// that, or for ctx. Without a deadline it waits until the queue is empty.
// A Run started on its own goroutine just before Drain may not have begun
// yet: Drain waits for it to begin (or for ctx), so call Drain only on a
// queue whose Run is called.
func (l *Lifecycle) Drain(ctx context.Context) {
	l.drainOnce.Do(func() {
		l.deadline, _ = ctx.Deadline()
		close(l.drain)
	})
	select {
	case <-l.started:
	case <-ctx.Done():
		return
	}
	l.mu.Lock()
	running, done := l.running, l.done
	l.mu.Unlock()
	if !running {
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// drained reports whether a drain is over: nothing in flight and nothing
// due before the deadline.
func (l *Lifecycle) drained(next time.Time, ok bool) bool {
	if !l.IsDraining() || l.inFlight.Load() > 0 {
		return false
	}
	return !ok || (!l.deadline.IsZero() && next.After(l.deadline))
}
