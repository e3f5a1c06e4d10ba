package workpool

import (
	"context"
	"errors"
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
