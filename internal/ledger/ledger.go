// Package ledger is rtmrec's durable state: one bbolt database in the data
// directory, written by a single committer that applies changes in the
// order they were submitted and groups them into as few commits (fsyncs) as
// the load allows.
//
// One database closes the seams three separate files had: a recording's
// state, its upload decision and the webhook event that reports it commit
// together or not at all, and every event gets its place in one global
// order at commit time, which is the order receivers see.
package ledger

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FileName is the database's name inside the data directory.
const FileName = "rtmrec.db"

// lockName is the file whose flock makes the data directory one process's.
const lockName = "LOCK"

// Tx is a read-write or read-only transaction.
type Tx = bolt.Tx

// Op is one change to apply in order. Apply runs inside the committer's
// write transaction and may be nil (an op that only keeps its place in the
// order); Done, if not nil, runs on the committer's goroutine once the
// change is durable (err nil) or has failed, in submission order. Done must
// not block: it hands results on, it does not wait for anything.
type Op struct {
	Apply func(tx *Tx) error
	Done  func(err error)
}

// Ledger is the open database with its committer.
type Ledger struct {
	db   *bolt.DB
	lock *os.File

	mu      sync.Mutex
	pending []Op
	closed  bool
	wake    chan struct{}
	stopped chan struct{}

	commits func() // observed after each commit (metrics); may be nil
}

// Options tune Open.
type Options struct {
	// OnCommit, if set, is called after every commit (for metrics).
	OnCommit func()
}

// ErrLocked is returned by Open when another process holds the directory.
var ErrLocked = errors.New("data directory in use")

// Open takes the data directory's lock, opens (or creates) the database and
// starts the committer. Another process holding the directory makes Open
// fail at once with ErrLocked and that process's id.
func Open(dir string, opts Options) (*Ledger, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("ledger: data dir: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	db, err := bolt.Open(filepath.Join(dir, FileName), 0o600, &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("ledger: open %s: %w", FileName, err)
	}
	l := &Ledger{db: db, lock: lock, wake: make(chan struct{}, 1), stopped: make(chan struct{}), commits: opts.OnCommit}
	go l.commit()
	return l, nil
}

// lockDir takes an exclusive flock on dir/LOCK and writes this process's id
// into it, so a second process can say who holds the directory.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ledger: lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		_ = f.Close()
		holder := strings.TrimSpace(string(b[:n]))
		if _, perr := strconv.Atoi(holder); perr != nil {
			holder = "another process"
		} else {
			holder = "process " + holder
		}
		return nil, fmt.Errorf("%w: %s is used by %s (one rtmrec per data directory)", ErrLocked, dir, holder)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// Submit queues op behind every op submitted before it and returns at once.
// After Close, op fails with ErrClosed.
func (l *Ledger) Submit(op Op) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		if op.Done != nil {
			op.Done(ErrClosed)
		}
		return
	}
	l.pending = append(l.pending, op)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// ErrClosed is the error of ops submitted after Close.
var ErrClosed = errors.New("ledger: closed")

// Update applies fn in order with every submitted op and waits until it is
// durable. It blocks on disk: never call it from a session loop.
func (l *Ledger) Update(fn func(tx *Tx) error) error {
	done := make(chan error, 1)
	l.Submit(Op{Apply: fn, Done: func(err error) { done <- err }})
	return <-done
}

// View runs fn in a read-only transaction.
func (l *Ledger) View(fn func(tx *Tx) error) error { return l.db.View(fn) }

// Pending is the number of ops waiting for the committer.
func (l *Ledger) Pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
}

// Close applies what was submitted before it, then closes the database and
// releases the directory.
func (l *Ledger) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		<-l.stopped
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	<-l.stopped
	return errors.Join(l.db.Close(), l.lock.Close())
}

// commit is the committer: it takes every op queued so far, applies them in
// one transaction, and reports each in order.
func (l *Ledger) commit() {
	defer close(l.stopped)
	for {
		l.mu.Lock()
		batch := l.pending
		l.pending = nil
		closed := l.closed
		l.mu.Unlock()
		if len(batch) > 0 {
			l.apply(batch)
			continue
		}
		if closed {
			return
		}
		<-l.wake
	}
}

func (l *Ledger) apply(batch []Op) {
	errs := make([]error, len(batch))
	writes := false
	for _, op := range batch {
		writes = writes || op.Apply != nil
	}
	if writes {
		err := l.db.Update(func(tx *Tx) error {
			for _, op := range batch {
				if op.Apply != nil {
					if err := op.Apply(tx); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil && len(batch) > 1 {
			// One op failed and took the batch down with it: apply each on its
			// own, so only the failing one fails.
			for i, op := range batch {
				if op.Apply != nil {
					errs[i] = l.db.Update(op.Apply)
				}
			}
		} else if err != nil {
			errs[0] = err
		}
		if l.commits != nil {
			l.commits()
		}
	}
	for i, op := range batch {
		if op.Done != nil {
			op.Done(errs[i])
		}
	}
}

// Bucket returns the named top-level bucket, creating it in a write
// transaction; in a read-only transaction a missing bucket is nil.
func Bucket(tx *Tx, name []byte) (*bolt.Bucket, error) {
	if b := tx.Bucket(name); b != nil || !tx.Writable() {
		return b, nil
	}
	b, err := tx.CreateBucket(name)
	if err != nil {
		return nil, fmt.Errorf("ledger: bucket %s: %w", name, err)
	}
	return b, nil
}
