// Package workpool is the run-and-drain lifecycle the durable queues
// (uploads, webhooks) share: Run feeds a fixed set of workers from one
// dispatcher until the context ends or Drain is called, and Drain waits, up
// to a deadline, for the work in flight. What is not started stays on disk
// for the next process.
package workpool

import (
	"context"
	"errors"
	"sync"
)

// Lifecycle tracks one queue's Run and Drain.
type Lifecycle struct {
	mu      sync.Mutex
	running bool
	done    chan struct{} // closed when the current Run returns

	drainOnce sync.Once
	drain     chan struct{} // closed by Drain
}

// New returns a lifecycle that is neither running nor draining.
func New() *Lifecycle { return &Lifecycle{drain: make(chan struct{})} }

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
// them, and returns once dispatch has returned (on ctx or Drain) and every
// worker has finished; cleanup, if not nil, runs last (idle connections own
// goroutines that must not outlive Run).
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
			}
		})
	}
	dispatch(ctx, work)
	close(work)
	wg.Wait()
	return nil
}

// Drain stops new work and waits, up to ctx, for the current Run to return.
func (l *Lifecycle) Drain(ctx context.Context) {
	l.drainOnce.Do(func() { close(l.drain) })
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
