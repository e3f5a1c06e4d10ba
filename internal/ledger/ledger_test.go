package ledger

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var bucket = []byte("t")

func open(t *testing.T, dir string, opts Options) *Ledger {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func put(k, v string) func(*Tx) error {
	return func(tx *Tx) error {
		b, err := Bucket(tx, bucket)
		if err != nil {
			return err
		}
		return b.Put([]byte(k), []byte(v))
	}
}

func get(t *testing.T, l *Ledger, k string) string {
	t.Helper()
	var v string
	if err := l.View(func(tx *Tx) error {
		if b := tx.Bucket(bucket); b != nil {
			v = string(b.Get([]byte(k)))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestOpsApplyAndReportInOrder: ops from many goroutines are reported in
// submission order, grouped into fewer commits than ops, and a later op
// sees what an earlier one wrote.
func TestOpsApplyAndReportInOrder(t *testing.T) {
	var commits atomic.Int64
	l := open(t, t.TempDir(), Options{OnCommit: func() { commits.Add(1) }})
	const n = 2000
	var mu sync.Mutex
	var submitted, reported []int
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range n / 8 {
				v := g*1000 + i
				mu.Lock()
				submitted = append(submitted, v)
				wg.Add(1)
				l.Submit(Op{
					Apply: put("last", strconv.Itoa(v)),
					Done: func(err error) {
						if err != nil {
							t.Error(err)
						}
						reported = append(reported, v) // the committer is the only caller
						wg.Done()
					},
				})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if fmt.Sprint(submitted) != fmt.Sprint(reported) {
		t.Fatal("ops reported out of submission order")
	}
	if got := get(t, l, "last"); got != strconv.Itoa(submitted[n-1]) {
		t.Fatalf("last = %s, want the last submitted %d", got, submitted[n-1])
	}
	if c := commits.Load(); c >= n || c == 0 {
		t.Fatalf("%d commits for %d ops: not grouped", c, n)
	}
	t.Logf("%d ops in %d commits", n, commits.Load())
}

// TestFailingOpFailsAlone: an op whose change fails does not take the ops
// committed with it down.
func TestFailingOpFailsAlone(t *testing.T) {
	l := open(t, t.TempDir(), Options{})
	boom := errors.New("boom")
	results := make([]error, 5)
	var wg sync.WaitGroup
	// Hold the committer so the five ops land in one batch.
	hold := make(chan struct{})
	l.Submit(Op{Done: func(error) { <-hold }})
	for i := range results {
		wg.Add(1)
		apply := put(fmt.Sprint("k", i), "v")
		if i == 2 {
			apply = func(tx *Tx) error {
				if err := put("k2", "v")(tx); err != nil {
					return err
				}
				return boom
			}
		}
		l.Submit(Op{Apply: apply, Done: func(err error) { results[i] = err; wg.Done() }})
	}
	close(hold)
	wg.Wait()
	for i, err := range results {
		if i == 2 {
			if !errors.Is(err, boom) || get(t, l, "k2") != "" {
				t.Errorf("failing op: %v, k2 = %q (its change must be rolled back)", err, get(t, l, "k2"))
			}
			continue
		}
		if err != nil || get(t, l, fmt.Sprint("k", i)) != "v" {
			t.Errorf("op %d: %v", i, err)
		}
	}
}

// TestDataSurvivesReopen: what Update returned for is there after a
// reopen, and Close applies what was submitted before it.
func TestDataSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Update(put("a", "1")); err != nil {
		t.Fatal(err)
	}
	l.Submit(Op{Apply: put("b", "2")})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var after error
	l.Submit(Op{Apply: put("c", "3"), Done: func(err error) { after = err }})
	if !errors.Is(after, ErrClosed) {
		t.Fatalf("Submit after Close: %v, want ErrClosed", after)
	}
	l2 := open(t, dir, Options{})
	if get(t, l2, "a") != "1" || get(t, l2, "b") != "2" || get(t, l2, "c") != "" {
		t.Fatalf("after reopen: a=%q b=%q c=%q", get(t, l2, "a"), get(t, l2, "b"), get(t, l2, "c"))
	}
}

// TestOneProcessPerDirectory: a second Open of a directory in use fails
// at once and names the holder.
func TestOneProcessPerDirectory(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, Options{})
	_, err := Open(dir, Options{})
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Open: %v, want ErrLocked naming process %d", err, os.Getpid())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	l2.Close()
}
