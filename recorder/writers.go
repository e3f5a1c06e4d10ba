package recorder

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for WritersConfig.
const (
	// workerIdle is how long a worker waits for work before it exits
	// (one always stays).
	workerIdle = 5 * time.Second
)

// WritersConfig configures Writers.
type WritersConfig struct {
	// SyncInterval is how often what the recordings wrote is made durable,
	// default DefaultSyncInterval.
	SyncInterval time.Duration
	// MaxWorkers bounds the goroutines writing files, default 4 ×
	// GOMAXPROCS (at least 8): enough that a few recordings stuck on a slow
	// write leave the others served.
	MaxWorkers int
	Logger     *slog.Logger
	Metrics    *Metrics // may be nil
}

// Writers runs the file I/O of many recordings on a few shared goroutines,
// instead of one goroutine (and one fsync a second) per recording, and
// makes their files durable together.
//
// A recording with work (queued packets, a track to add, a flush, its stop)
// waits in a FIFO run queue; a worker takes it, does all of that work, and
// puts it back at the end of the queue if more came meanwhile. A recording
// is served by at most one worker at a time, so its writer state keeps a
// single owner. A worker stuck in a slow write holds only its recording:
// while work waits and no worker is idle another one starts, up to
// MaxWorkers, and workers idle for a while exit. The RTP path never waits
// for any of it: Track.WriteRTP only queues, and drops when the
// recording's queue is full.
//
// Durability: every SyncInterval the syncer asks each recording to write
// out what it buffered (its worker does), then makes it durable with one
// syncfs(2) per directory's file system rather than one fsync per file: a
// thousand fsyncs a second each wait for the disk, and on a busy disk they
// add up to more than the second, leaving the writers stuck in fsync while
// their queues overflow. Where syncfs is not available each recording
// fsyncs its own file as it flushes, as it did on its own goroutine. A
// failed syncfs makes every recording fsync its own file once, so that the
// one with a write-back error learns it; Stop always fsyncs the file.
type Writers struct {
	cfg  WritersConfig
	log  *slog.Logger
	bufs packetBuffers
	crc  *oggCRC // the Ogg writers' CRC table, read only
	// syncfs: one file system sync per round; otherwise (a recording's
	// own Writers, or no syncfs) each recording fsyncs its file.
	syncfs bool

	mu      sync.Mutex
	cond    *sync.Cond
	runq    []*Recording
	idle    int // workers waiting on cond
	running int // workers
	closed  bool
	live    map[*Recording]struct{}
	dirs    map[string]*os.File // opened for syncfs, by directory

	workers sync.WaitGroup
	stop    chan struct{}
	stopped chan struct{} // the syncer ended
}

// NewWriters starts the syncer; workers start with the first work.
func NewWriters(cfg WritersConfig) *Writers { return newWriters(cfg, haveSyncfs) }

func newWriters(cfg WritersConfig, useSyncfs bool) *Writers {
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	if cfg.MaxWorkers <= 0 {
		cfg.MaxWorkers = max(8, 4*runtime.GOMAXPROCS(0))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Writers{
		cfg: cfg, log: cfg.Logger, syncfs: useSyncfs, crc: newOggCRC(),
		live: map[*Recording]struct{}{}, dirs: map[string]*os.File{},
		stop: make(chan struct{}), stopped: make(chan struct{}),
	}
	w.cond = sync.NewCond(&w.mu)
	go w.syncer()
	return w
}

// Close stops the syncer and the workers. Recordings still running then
// are no longer served (their Stop would wait forever): close after
// stopping them, as the server's drain does.
func (w *Writers) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	live := len(w.live)
	w.cond.Broadcast()
	w.mu.Unlock()
	close(w.stop)
	<-w.stopped
	w.workers.Wait()
	var errs []error
	w.mu.Lock()
	for _, d := range w.dirs {
		errs = append(errs, d.Close())
	}
	w.dirs = nil
	w.mu.Unlock()
	if live > 0 {
		errs = append(errs, fmt.Errorf("recorder: %d recordings were still running", live))
	}
	return errors.Join(errs...)
}

// register adds a started recording to the sync rounds; its directory is
// opened once for syncfs.
func (w *Writers) register(r *Recording) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("recorder: writers closed")
	}
	if w.syncfs && w.dirs[r.cfg.Dir] == nil {
		d, err := os.Open(r.cfg.Dir)
		if err != nil {
			return fmt.Errorf("recorder: open data dir for sync: %w", err)
		}
		w.dirs[r.cfg.Dir] = d
	}
	w.live[r] = struct{}{}
	return nil
}

func (w *Writers) unregister(r *Recording) {
	w.mu.Lock()
	delete(w.live, r)
	w.mu.Unlock()
}

// submit queues a recording with work for a worker.
func (w *Writers) submit(r *Recording) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.runq = append(w.runq, r)
	switch {
	case w.idle > 0:
		w.cond.Signal()
	case w.running < w.cfg.MaxWorkers && !w.closed:
		w.running++
		w.workers.Add(1)
		go w.worker()
	}
}

func (w *Writers) worker() {
	defer w.workers.Done()
	w.mu.Lock()
	for {
		var idleSince time.Time
		for len(w.runq) == 0 {
			now := time.Now()
			if idleSince.IsZero() {
				idleSince = now
			}
			if w.closed || w.running > 1 && now.Sub(idleSince) >= workerIdle {
				w.running--
				w.mu.Unlock()
				return
			}
			w.idle++
			w.cond.Wait() // the syncer's tick wakes idle workers to check their age
			w.idle--
		}
		r := w.runq[0]
		w.runq[0] = nil
		w.runq = w.runq[1:]
		w.mu.Unlock()
		w.serve(r)
		w.mu.Lock()
	}
}

// serve does a recording's pending work; if more came meanwhile, it goes
// to the back of the queue rather than keep this worker.
func (w *Writers) serve(r *Recording) {
	n := r.sched.Load()
	r.work()
	if !r.sched.CompareAndSwap(n, 0) {
		r.sched.Store(1)
		w.submit(r)
	}
}

// syncRound is one round of flushes followed by one durable sync.
type syncRound struct {
	pending atomic.Int64
	done    chan struct{}
}

func (s *syncRound) ack() {
	if s.pending.Add(-1) == 0 {
		close(s.done)
	}
}

func (w *Writers) syncer() {
	defer close(w.stopped)
	tick := time.NewTicker(w.cfg.SyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-tick.C:
			w.syncRound()
		}
	}
}

// syncRound asks every recording to write out what it buffered, waits (at
// most half an interval) for them, then syncs each directory's file system.
func (w *Writers) syncRound() {
	w.mu.Lock()
	w.cond.Broadcast() // idle workers check how long they have been idle
	recs := make([]*Recording, 0, len(w.live))
	for r := range w.live {
		recs = append(recs, r)
	}
	dirs := make([]*os.File, 0, len(w.dirs))
	for _, d := range w.dirs {
		dirs = append(dirs, d)
	}
	w.mu.Unlock()
	if len(recs) == 0 {
		return
	}
	begun := time.Now()
	round := &syncRound{done: make(chan struct{})}
	round.pending.Store(int64(len(recs)))
	for _, r := range recs {
		r.requestFlush(round)
	}
	wait := time.NewTimer(w.cfg.SyncInterval / 2)
	select {
	case <-round.done:
	case <-wait.C:
		// A recording whose worker is stuck keeps what it has not written
		// for the next round; the others are made durable now.
	case <-w.stop:
	}
	wait.Stop()
	if !w.syncfs {
		return // each recording fsynced its file as it flushed
	}
	var failed bool
	for _, d := range dirs {
		if err := syncfs(d); err != nil {
			w.log.Error("recorder: sync the recordings' file system; each recording now syncs its own file", "dir", d.Name(), "err", err)
			failed = true
		}
	}
	if failed {
		for _, r := range recs {
			r.fsyncNext.Store(true)
			r.notify()
		}
	}
	if m := w.cfg.Metrics; m != nil {
		m.SyncSeconds.Observe(time.Since(begun).Seconds())
	}
}

// packetBuffers pools the buffers that carry packets from WriteRTP to the
// file, in two sizes: an Opus packet (about 100 to 300 bytes) in a
// full-size buffer would hold five times its size for as long as it waits
// in the queue, the reorder window and the interleaving queue.
type packetBuffers struct {
	small, large sync.Pool
}

const (
	smallPacketBuf = 512
	largePacketBuf = packetBufSize
)

// get returns a buffer of length n (its contents undefined).
func (p *packetBuffers) get(n int) *[]byte {
	pool, size := &p.small, smallPacketBuf
	if n > smallPacketBuf {
		pool, size = &p.large, largePacketBuf
	}
	if n > size {
		b := make([]byte, n)
		return &b
	}
	if bp, ok := pool.Get().(*[]byte); ok {
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, size)
	return &b
}

// put returns a buffer from get; one that grew is left to the collector.
func (p *packetBuffers) put(bp *[]byte) {
	switch cap(*bp) {
	case smallPacketBuf:
		p.small.Put(bp)
	case largePacketBuf:
		p.large.Put(bp)
	}
}
