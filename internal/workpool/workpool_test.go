package workpool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestRunAndDrain(t *testing.T) {
	defer goleak.VerifyNone(t)
	l := New()
	var handled, cleaned atomic.Int32
	started := make(chan struct{})
	release := make(chan struct{})
	dispatch := func(ctx context.Context, work chan<- int) {
		for i := 0; ; i++ {
			select {
			case work <- i:
			case <-l.Draining():
				return
			case <-ctx.Done():
				return
			}
		}
	}
	handle := func(_ context.Context, i int) {
		if handled.Add(1) == 1 {
			close(started)
			<-release // an item in flight when Drain comes
		}
	}
	runErr := make(chan error, 1)
	go func() { runErr <- Run(context.Background(), l, 3, dispatch, handle, func() { cleaned.Add(1) }) }()
	<-started
	if err := Run(context.Background(), l, 1, dispatch, handle, nil); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Run: %v, want ErrRunning", err)
	}
	// Drain with a short deadline gives up while work is in flight…
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	l.Drain(ctx)
	cancel()
	if !l.IsDraining() {
		t.Fatal("not draining after Drain")
	}
	// …and a later Drain waits for it.
	close(release)
	l.Drain(context.Background())
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	if cleaned.Load() != 1 {
		t.Fatalf("cleanup ran %d times", cleaned.Load())
	}
}

// queue is a tiny durable-queue stand-in for Dispatch: items with due
// times, a handler that may reschedule them.
type queue struct {
	mu   sync.Mutex
	due  Due[int]
	wake chan struct{}
}

func (q *queue) push(at time.Time, v int) {
	q.mu.Lock()
	q.due.Push(at, v)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func TestDrainFinishesWhatIsDueBeforeTheDeadline(t *testing.T) {
	defer goleak.VerifyNone(t)
	tests := []struct {
		name     string
		deadline time.Duration // 0: Drain without deadline
		late     time.Duration // when item 99 is due
		wantLate bool          // whether item 99 is handled
	}{
		{"late item after the deadline stays queued", 300 * time.Millisecond, time.Hour, false},
		{"late item before the deadline is waited for", 2 * time.Second, 150 * time.Millisecond, true},
		{"no deadline waits for everything", 0, 100 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := New()
			q := &queue{wake: make(chan struct{}, 1)}
			now := time.Now()
			for i := range 5 {
				q.push(now, i)
			}
			q.push(now.Add(tt.late), 99)
			var mu sync.Mutex
			handled := map[int]int{}
			handle := func(_ context.Context, v int) {
				mu.Lock()
				handled[v]++
				n := handled[v]
				mu.Unlock()
				if v == 3 && n < 3 {
					// A retry soon after: part of what Drain finishes.
					q.push(time.Now().Add(20*time.Millisecond), v)
				}
			}
			dispatch := func(ctx context.Context, work chan<- int) {
				Dispatch(ctx, l, &q.mu, &q.due, q.wake, time.Now, nil, func(v int) { q.due.Push(now, v) }, work)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			runErr := make(chan error, 1)
			go func() { runErr <- Run(ctx, l, 2, dispatch, handle, nil) }()
			dctx := context.Background()
			if tt.deadline > 0 {
				var c context.CancelFunc
				dctx, c = context.WithTimeout(dctx, tt.deadline)
				defer c()
			}
			l.Drain(dctx)
			select {
			case err := <-runErr:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return after the drain")
			}
			mu.Lock()
			defer mu.Unlock()
			for i := range 5 {
				if handled[i] == 0 {
					t.Errorf("item %d not handled", i)
				}
			}
			if handled[3] != 3 {
				t.Errorf("item 3 handled %d times, want 3 (two retries)", handled[3])
			}
			if got := handled[99] > 0; got != tt.wantLate {
				t.Errorf("late item handled = %v, want %v", got, tt.wantLate)
			}
		})
	}
}

// TestDrainWaitsForARunNotYetBegun: a queue's Run started on a goroutine
// of its own may not have begun when Drain comes (rtmrec recover starts the
// queues and drains them at once); Drain still waits for the work.
func TestDrainWaitsForARunNotYetBegun(t *testing.T) {
	defer goleak.VerifyNone(t)
	l := New()
	q := &queue{wake: make(chan struct{}, 1)}
	q.push(time.Now(), 1)
	var handled atomic.Bool
	handle := func(context.Context, int) {
		time.Sleep(50 * time.Millisecond)
		handled.Store(true)
	}
	dispatch := func(ctx context.Context, work chan<- int) {
		Dispatch(ctx, l, &q.mu, &q.due, q.wake, time.Now, nil, func(v int) { q.due.Push(time.Now(), v) }, work)
	}
	runErr := make(chan error, 1)
	begin := make(chan struct{})
	go func() {
		<-begin
		runErr <- Run(context.Background(), l, 1, dispatch, handle, nil)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	time.AfterFunc(100*time.Millisecond, func() { close(begin) })
	l.Drain(ctx)
	if !handled.Load() {
		t.Fatal("Drain returned before the work of a Run that began after it was done")
	}
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
}
