package recorder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Config.
const (
	DefaultSyncInterval = time.Second
	DefaultQueueSize    = 1024
	// audioQueueSize is the default for Ogg (audio only): 5 s of one 20 ms
	// Opus track, a quarter of the memory of the video default.
	audioQueueSize  = 256
	keyframeRetryNS = 500e6 // while waiting for a keyframe, ask again at most this often
	packetBufSize   = 1536
)

// Config configures a recording.
type Config struct {
	Dir                                        string // the file is <Dir>/<RecordingID>.<ext>
	RecordingID, SessionID, ClientID, Identity string
	Format                                     Format
	PauseMode                                  PauseMode
	// Tracks are the tracks known at start (received or negotiated): they choose the format,
	// and an Ogg file gets their headers at once, so it is repairable from its first second.
	Tracks []TrackInfo
	// RequestKeyframe is called from the writer goroutine (the caller rate-limits PLI);
	// it must not block. May be nil.
	RequestKeyframe func(trackID string)
	// Writers does the recording's file I/O, shared with other recordings;
	// nil gives the recording writers of its own, with SyncInterval.
	Writers      *Writers
	SyncInterval time.Duration // durable-sync period of the recording's own Writers, default 1 s
	QueueSize    int           // packets, default 1024 (256 for Ogg)
	Logger       *slog.Logger
	Metrics      *Metrics // may be nil
	Now          func() time.Time

	// MaxPauses bounds the pauses of the recording, default DefaultMaxPauses.
	MaxPauses int
	// MuxBytes bounds the frames held for interleaving, default DefaultMuxBytes.
	MuxBytes int
}

// ErrNoMedia is the error of a recording that received nothing it could
// write (no audio, and no video keyframe) before it stopped.
var ErrNoMedia = errors.New("no media was received: the recording holds no audio and no video keyframe")

// Recording writes one media file and describes it in a Manifest. All file I/O happens on
// a worker of its Writers, one at a time (called the writer below); the RTP path only
// copies packets into a bounded queue.
type Recording struct {
	cfg     Config
	format  Format
	log     *slog.Logger
	path    string
	started time.Time
	t0      int64 // recording start, unix ns

	queue   *packetQueue
	writers *Writers
	// ownWriters: the recording made its Writers and closes them at Stop.
	ownWriters bool
	bufs       *packetBuffers
	// sched counts the notifications since a worker last picked the
	// recording up; 0 while it is not queued for one (see Writers.serve).
	sched     atomic.Int32
	flushReq  atomic.Pointer[syncRound] // the syncer asks for a flush
	fsyncNext atomic.Bool               // the next flush fsyncs the file
	stopReq   atomic.Bool
	ctrlMu    sync.Mutex
	ctrlq     []func() // control calls (AddTrack) for the writer
	ctrlShut  bool     // the writer took the last control calls
	done      chan struct{}

	stopping    atomic.Bool
	paused      atomic.Bool
	resumeEpoch atomic.Uint64
	pauseView   atomic.Pointer[pauseView] // for the writer goroutine; changed under mu

	mu       sync.Mutex // guards pauses, audit, tracks, stopWall
	pauses   []pauseWall
	audit    []AuditEvent
	tracks   []*Track
	stopWall time.Time

	stopOnce sync.Once
	result   *Manifest
	stopErr  error

	hint []TrackInfo // the tracks known at Start

	// Owned by the writer.
	finished  bool
	w         *fileWriter
	file      *os.File
	c         container
	mux       muxQueue
	frameFree frameFreeList
	states    []*trackState // every track, in the order added
	ntpOffset int64
	ntpSet    bool
	// senderOffset is the smallest arrival minus NTP time of the Sender Reports on the
	// recording's clock (ns): the sender's clock plus the least network delay, used to
	// report wall-clock times on the sender's clock.
	senderOffset int64
	writeErr     error
}

type pauseWall struct{ start, end int64 } // unix ns; end 0 while paused

// container is what the Ogg and Matroska writers share.
type container interface {
	addTrack(tr *trackState) error
	updateTrack(tr *trackState) error
	writeFrame(tr *trackState, t int64, key bool, data []byte) error
	finish(end int64, marks []fileMark) error
	duration() int64
	flushPending() error
}

// Track receives the RTP packets and Sender Reports of one track.
type Track struct {
	r        *Recording
	st       *trackState
	received atomic.Uint64
	dropped  atomic.Uint64
	paused   atomic.Uint64
}

// trackState is owned by the writer.
type trackState struct {
	info TrackInfo
	pub  *Track
	num  int

	ssrc     uint32
	haveSSRC bool
	tl       timeline
	ro       reorder
	asm      *assembler

	held []rtpPacket // packets whose timestamps jumped, until the jump is confirmed

	lost, dups, reanchors        uint64
	reanchorLoggedAt             int64 // arrival (ns) of the last re-anchor logged; 0: none yet
	reanchorsUnlogged            uint64
	framesWritten, framesDropped uint64
	needKey                      bool
	lastKeyReq                   int64
	epoch                        uint64
	width, height                int
	codecPrivate                 []byte
	lastMS                       int64
	nextT                        int64 // file time before which the track's next frame may not start
	queued                       bool  // a frame went to the muxer: nextT holds
	q                            qualityMeter
	orient                       orientation
}

// inOrderTime keeps a track's frames in their order through the time-ordered muxer: a
// Sender Report that re-anchors a track earlier than its arrival-time placement (video
// arrives later than the audio captured with it) must not put the next frames before the
// keyframe already queued, which decoders could not decode. An audio frame (dur: its
// length, ns) also never starts before the previous one ends: overlapping Opus frames make
// a decoder's output timestamps collide, so a frame the timeline moved back is pushed
// behind the previous one rather than dropped, as Ogg's granule positions do it.
func (st *trackState) inOrderTime(t, dur int64) int64 {
	t = max(t, st.nextT)
	st.nextT, st.queued = t+dur, true
	return t
}

type queueItem struct {
	st      *trackState
	buf     *[]byte // nil for a Sender Report
	arrival int64
	epoch   uint64 // resumes before the packet arrived
	ntp     uint64
	rtpTS   uint32
}

// Start creates the media file, writes its header (and, for Ogg, the headers of the tracks
// known at start) durably, and starts the writer.
func Start(cfg Config) (*Recording, error) {
	if cfg.RecordingID == "" || filepath.Base(cfg.RecordingID) != cfg.RecordingID || cfg.RecordingID == "." || cfg.RecordingID == ".." {
		return nil, fmt.Errorf("recorder: invalid recording id %q", cfg.RecordingID)
	}
	if cfg.Dir == "" {
		return nil, errors.New("recorder: no data directory")
	}
	pm, err := ParsePauseMode(string(cfg.PauseMode))
	if err != nil {
		return nil, err
	}
	cfg.PauseMode = pm
	hint := make([]TrackInfo, 0, len(cfg.Tracks))
	for _, t := range cfg.Tracks {
		n, err := t.normalized()
		if err != nil {
			return nil, err
		}
		hint = append(hint, n)
	}
	f, err := ResolveFormat(cfg.Format, hint)
	if err != nil {
		return nil, err
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
		if f == FormatOgg {
			cfg.QueueSize = audioQueueSize
		}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxPauses <= 0 {
		cfg.MaxPauses = DefaultMaxPauses
	}
	if cfg.MuxBytes <= 0 {
		cfg.MuxBytes = DefaultMuxBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Recording{
		cfg:    cfg,
		format: f,
		log:    cfg.Logger.With("recording_id", cfg.RecordingID),
		path:   filepath.Join(cfg.Dir, cfg.RecordingID+"."+f.Ext()),
		done:   make(chan struct{}),
	}
	r.queue = newPacketQueue(cfg.QueueSize, r.notify)
	r.started = cfg.Now()
	r.t0 = r.started.UnixNano()
	r.pauseView.Store(newPauseView())

	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("recorder: data dir: %w", err)
	}
	file, err := os.OpenFile(r.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, fmt.Errorf("recorder: create media file: %w", err)
	}
	r.file = file
	var bytesFn func(int)
	if m := cfg.Metrics; m != nil {
		bytesFn = func(n int) { m.BytesWritten.Add(float64(n)) }
	}
	r.writers = cfg.Writers
	if r.writers == nil {
		// One file: its own fsync is the cheaper sync.
		r.writers = newWriters(WritersConfig{SyncInterval: cfg.SyncInterval, MaxWorkers: 1, Logger: cfg.Logger, Metrics: cfg.Metrics}, false)
		r.ownWriters = true
	}
	r.bufs = &r.writers.bufs
	if err := r.open(file, hint, bytesFn); err != nil {
		if r.ownWriters {
			_ = r.writers.Close()
		}
		return nil, errors.Join(err, file.Close(), os.Remove(r.path))
	}
	r.hint = hint
	if cfg.Metrics != nil {
		cfg.Metrics.Active.Inc()
	}
	r.log.Info("recording started", "format", f, "file", filepath.Base(r.path), "pause_mode", pm)
	return r, nil
}

// open writes the file's header (and, for Ogg, the headers of the tracks known at start)
// durably and registers the recording with its writers.
func (r *Recording) open(file *os.File, hint []TrackInfo, bytesFn func(int)) error {
	r.mux.maxBytes = r.cfg.MuxBytes
	if r.format == FormatOgg {
		r.w = newFileWriter(file, oggWriteBuffer, bytesFn)
		h := fnv.New32a()
		h.Write([]byte(r.cfg.RecordingID))
		ow := newOggWriter(r.w, r.writers.crc, h.Sum32())
		r.c = ow
		if err := ow.begin(hint); err != nil {
			return fmt.Errorf("recorder: write track headers: %w", err)
		}
	} else {
		r.w = newFileWriter(file, writeBuffer, bytesFn)
		mw, err := newMKVWriter(r.w, r.format, r.cfg.RecordingID, r.started)
		if err != nil {
			return err
		}
		r.c = mw
	}
	if err := r.w.sync(); err != nil {
		return fmt.Errorf("recorder: write header: %w", err)
	}
	r.mux.delay = r.muxDelay()
	return r.writers.register(r)
}

// ID returns the recording id.
func (r *Recording) ID() string { return r.cfg.RecordingID }

// Format returns the resolved container format.
func (r *Recording) Format() Format { return r.format }

// Path returns the media file path.
func (r *Recording) Path() string { return r.path }

// AddTrack registers a track and returns the handle to feed it. Tracks added after the first
// frames (renegotiation) are recorded too (see the package documentation for how).
func (r *Recording) AddTrack(t TrackInfo) (*Track, error) {
	info, err := t.normalized()
	if err != nil {
		return nil, err
	}
	if err := r.format.accepts(info); err != nil {
		return nil, err
	}
	if r.stopping.Load() {
		return nil, errors.New("recorder: recording stopped")
	}
	st := &trackState{info: info, lastKeyReq: -1 << 62, needKey: info.Kind == KindVideo, q: newQualityMeter()}
	st.tl.clock = int64(info.ClockRate)
	if info.Kind == KindVideo {
		st.asm = newAssembler(info.Codec)
	}
	tr := &Track{r: r, st: st}
	st.pub = tr
	errc := make(chan error, 1)
	fn := func() {
		if r.stopReq.Load() {
			errc <- errors.New("recorder: recording stopped")
			return
		}
		if r.writeErr != nil {
			errc <- r.writeErr
			return
		}
		if len(r.tracks) >= MaxTracks {
			errc <- fmt.Errorf("recorder: a recording holds at most %d tracks", MaxTracks)
			return
		}
		if err := r.c.addTrack(st); err != nil {
			errc <- fmt.Errorf("recorder: add track %q: %w", info.ID, err)
			return
		}
		r.mu.Lock()
		r.tracks = append(r.tracks, tr)
		r.mu.Unlock()
		r.states = append(r.states, st)
		r.mux.delay = r.muxDelay()
		if info.Kind == KindVideo {
			r.requestKeyframe(st, r.cfg.Now().UnixNano())
		}
		errc <- nil
	}
	if !r.post(fn) {
		return nil, errors.New("recorder: recording stopped")
	}
	if err := <-errc; err != nil {
		return nil, err
	}
	r.log.Info("track added", "track_id", info.ID, "codec", info.Codec, "number", st.num)
	return tr, nil
}

// WriteRTP queues a copy of an RTP packet. It never blocks: when the queue is full the
// packet is dropped and counted. Safe for one goroutine per track.
func (t *Track) WriteRTP(pkt []byte, arrival time.Time) {
	r := t.r
	t.received.Add(1)
	if r.stopping.Load() {
		return
	}
	if r.paused.Load() {
		t.paused.Add(1) // nothing received while paused is written
		return
	}
	// Resume bumps the epoch before it clears paused, so a packet let through here
	// carries the epoch of the stretch it belongs to, whenever the writer gets to it.
	epoch := r.resumeEpoch.Load()
	bp := r.bufs.get(len(pkt))
	copy(*bp, pkt)
	if !r.queue.push(queueItem{st: t.st, buf: bp, arrival: arrival.UnixNano(), epoch: epoch}) {
		r.bufs.put(bp)
		t.drop()
		if r.cfg.Metrics != nil {
			r.cfg.Metrics.PacketsDropped.Inc()
		}
	}
}

// WriteSenderReport passes an RTCP Sender Report (NTP and RTP time) of the track's sender,
// used to align tracks (RFC 3550 §6.4.1).
func (t *Track) WriteSenderReport(ntpTime uint64, rtpTime uint32, arrival time.Time) {
	r := t.r
	if r.stopping.Load() {
		return
	}
	if !r.queue.push(queueItem{st: t.st, arrival: arrival.UnixNano(), ntp: ntpTime, rtpTS: rtpTime}) {
		t.drop()
	}
}

// drop counts a packet a full queue turned away, and at the track's first
// says so: its writer has fallen seconds behind.
func (t *Track) drop() {
	if t.dropped.Add(1) == 1 {
		t.r.log.Warn("recording queue full: packets dropped", "track_id", t.st.info.ID, "queue_packets", t.r.cfg.QueueSize)
	}
}

// ID returns the track id.
func (t *Track) ID() string { return t.st.info.ID }

// Pause stops writing what is received; false if already paused (or stopped), and
// ErrTooManyPauses once the recording had Config.MaxPauses of them.
func (r *Recording) Pause() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.paused.Load() || r.stopping.Load() {
		return false, nil
	}
	if len(r.pauses) >= r.cfg.MaxPauses {
		return false, ErrTooManyPauses
	}
	start := r.cfg.Now().UnixNano()
	r.pauses = append(r.pauses, pauseWall{start: start})
	r.pauseView.Store(r.pauseView.Load().paused(start))
	r.paused.Store(true)
	r.log.Info("recording paused")
	return true, nil
}

// Resume writes again after Pause; false if not paused. Video waits for a keyframe.
func (r *Recording) Resume() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.paused.Load() || r.stopping.Load() {
		return false
	}
	r.endPause(r.cfg.Now().UnixNano())
	r.resumeEpoch.Add(1)
	r.paused.Store(false)
	r.log.Info("recording resumed")
	return true
}

// Manifest describes the recording as it is now (state "recording" until Stop): what a
// journey keeps from the start so that a crash loses nothing of it.
func (r *Recording) Manifest() *Manifest {
	m := r.manifest(StateRecording)
	for _, t := range r.hint {
		m.Tracks = append(m.Tracks, TrackStats{ID: t.ID, Kind: t.Kind, Codec: t.Codec})
	}
	return m
}

// Pauses lists the pauses so far, on the file timeline and the wall clock (an open pause
// ends where it started).
func (r *Recording) Pauses() []PauseSpan { return r.manifest(StateRecording).Pauses }

// Paused reports whether the recording is paused.
func (r *Recording) Paused() bool { return r.paused.Load() }

// AddAuditEvent stores an event in the manifest.
func (r *Recording) AddAuditEvent(e AuditEvent) {
	r.mu.Lock()
	r.audit = append(r.audit, e)
	r.mu.Unlock()
}

// Stop finalizes the file, ends the writer goroutine and returns the manifest (state
// "finished"). It is idempotent: later calls return the first result.
func (r *Recording) Stop() (*Manifest, error) {
	r.stopOnce.Do(func() {
		r.mu.Lock()
		r.stopping.Store(true)
		now := r.cfg.Now()
		if r.paused.Load() {
			r.endPause(now.UnixNano())
		}
		r.stopWall = now
		r.mu.Unlock()
		r.stopReq.Store(true)
		r.notify()
		<-r.done
		r.closeFile()
		if r.ownWriters {
			if err := r.writers.Close(); err != nil {
				r.log.Warn("close the recording's writers", "err", err)
			}
		}
		if r.cfg.Metrics != nil {
			r.cfg.Metrics.Active.Dec()
		}
		r.result, r.stopErr = r.finishManifest()
	})
	return r.result, r.stopErr
}

// endPause closes the open pause at end (unix ns). Callers hold mu.
func (r *Recording) endPause(end int64) {
	last := &r.pauses[len(r.pauses)-1]
	last.end = max(end, last.start)
	r.pauseView.Store(r.pauseView.Load().resumed(last.end))
}

// fileTime maps a local time (unix ns) to the file timeline; PauseSkip removes the paused
// spans before it.
func (r *Recording) fileTime(local int64) int64 {
	t := local - r.t0
	if r.cfg.PauseMode == PauseSkip {
		t -= r.pauseView.Load().skipped(local)
	}
	return max(t, 0)
}

// muxDelay is how long frames wait to be interleaved. An Ogg file of one stream (one
// track hinted at the start, or added) has nothing to interleave: its frames go to the
// page at once instead of holding their buffers for half a second. (A track added after
// media starts a new chained link, so its frames never need to go before those already
// written.)
func (r *Recording) muxDelay() int64 {
	if o, ok := r.c.(*oggWriter); ok && len(o.streams) <= 1 {
		return 0
	}
	return muxDelayNS
}

// notify tells the Writers the recording has work; it never blocks. Safe from any
// goroutine.
func (r *Recording) notify() {
	if r.sched.Add(1) == 1 {
		r.writers.submit(r)
	}
}

// post queues a control call for the writer; false once the recording is finishing.
func (r *Recording) post(fn func()) bool {
	r.ctrlMu.Lock()
	if r.ctrlShut {
		r.ctrlMu.Unlock()
		return false
	}
	r.ctrlq = append(r.ctrlq, fn)
	r.ctrlMu.Unlock()
	r.notify()
	return true
}

// takeCtrl returns the queued control calls; last refuses any further ones.
func (r *Recording) takeCtrl(last bool) []func() {
	r.ctrlMu.Lock()
	defer r.ctrlMu.Unlock()
	fns := r.ctrlq
	r.ctrlq = nil
	r.ctrlShut = r.ctrlShut || last
	return fns
}

// requestFlush asks the writer to write out what it buffered, for the syncer's round.
func (r *Recording) requestFlush(round *syncRound) {
	if old := r.flushReq.Swap(round); old != nil {
		old.ack() // a round the writer never got to; the syncer stopped waiting for it
	}
	r.notify()
}

// work runs on a worker of the recording's Writers, never on two at once: the control
// calls and packets queued so far, the flush the syncer asked for, and the stop.
func (r *Recording) work() {
	if r.finished {
		if round := r.flushReq.Swap(nil); round != nil {
			round.ack()
		}
		return
	}
	stopping := r.stopReq.Load()
	for _, fn := range r.takeCtrl(stopping) {
		// Packets queued before the control call come first (e.g. a track added
		// after media was written must see that media as already written).
		r.drainQueue()
		fn()
	}
	r.drainQueue()
	if r.fsyncNext.Swap(false) {
		r.sync(true)
	}
	if round := r.flushReq.Swap(nil); round != nil {
		r.sync(!r.writers.syncfs)
		round.ack()
	}
	if stopping {
		r.finish()
		r.finished = true
		r.writers.unregister(r)
		if round := r.flushReq.Swap(nil); round != nil {
			round.ack()
		}
		close(r.done)
	}
}

// drainQueue handles every packet queued so far, in arrival order.
func (r *Recording) drainQueue() {
	for {
		batch := r.queue.take()
		if len(batch) == 0 {
			return
		}
		for i := range batch {
			r.handle(batch[i])
			batch[i] = queueItem{} // let the pooled buffer go
		}
	}
}

func (r *Recording) fail(err error) {
	if r.writeErr == nil {
		r.writeErr = err
		r.log.Error("recording write failed; further media is dropped", "err", err)
	}
}

// sync writes out the container's pending page or block and the write buffer, and with
// fsync makes the file durable (otherwise the Writers' syncfs does).
func (r *Recording) sync(fsync bool) {
	if r.writeErr != nil {
		return
	}
	if err := r.c.flushPending(); err != nil {
		r.fail(err)
		return
	}
	var err error
	if fsync {
		err = r.w.sync()
	} else {
		err = r.w.flush()
	}
	if err != nil {
		r.fail(fmt.Errorf("recorder: %w", err))
	}
}

func (r *Recording) handle(it queueItem) {
	st := it.st
	if it.buf == nil {
		r.senderReport(st, it)
		return
	}
	h, ok := parseRTP(*it.buf)
	if !ok || r.writeErr != nil {
		r.bufs.put(it.buf)
		return
	}
	if !st.haveSSRC || h.ssrc != st.ssrc {
		if st.haveSSRC {
			// A new SSRC is a new stream: flush the old one and re-anchor.
			r.flushReorder(st)
			r.dropRun(st)
			r.dropHeld(st)
			st.ro = reorder{run: st.ro.run}
			if st.tl.have {
				r.countReanchor(st, "ssrc")
			}
			st.tl.newStream()
			st.q.restart()
			if st.asm != nil {
				st.asm.reset()
				st.needKey = true
			}
			r.log.Info("track ssrc changed", "track_id", st.info.ID, "ssrc", h.ssrc)
		}
		st.ssrc, st.haveSSRC = h.ssrc, true
	}
	p := rtpPacket{
		buf: it.buf, payload: h.payload, seq: h.seq, ts: h.ts, marker: h.marker,
		arrival: it.arrival, epoch: it.epoch, valid: true,
	}
	// The sequence stage first: re-sent, duplicate and stray packets must never reach
	// the timeline (see timeline.go).
	switch st.ro.admit(&p) {
	case admitNew:
		r.dropRun(st) // the current stream goes on: the far packets were strays
		st.ro.lastArrival = p.arrival
		r.reorderPush(st, p)
	case admitOld:
		st.dups++
		r.bufs.put(p.buf)
	case admitFar:
		r.holdFar(st, p)
	}
}

// holdFar adds a packet far from the stream (or one of a stream's first packets) to the
// run that may start the stream. The run starts it once it holds restartRun distinct
// packets close together and the current stream has been quiet for runQuietNS: a burst of
// old packets re-sent between the current stream's packets never does.
func (r *Recording) holdFar(st *trackState, p rtpPacket) {
	ro := &st.ro
	for _, q := range ro.run {
		if q.seq == p.seq {
			st.dups++
			r.bufs.put(p.buf)
			return
		}
	}
	if n := len(ro.run); n > 0 {
		if d := int16(p.seq - ro.run[n-1].seq); d <= -reorderSlots || d >= reorderSlots {
			r.dropRun(st) // not one stream with the held packets
		}
	}
	ro.run = append(ro.run, p)
	quiet := !ro.started || p.arrival-ro.lastArrival >= runQuietNS || len(ro.run) >= reorderSlots
	if len(ro.run) >= restartRun && quiet {
		r.startStream(st)
	}
}

// startStream starts the sequence numbering on the held run: a stream's first packets,
// or a sender that restarted its sequence numbers.
func (r *Recording) startStream(st *trackState) {
	run := st.ro.run
	if st.ro.started {
		r.flushReorder(st)
		if st.asm != nil {
			st.asm.reset()
			st.needKey = true
		}
		r.log.Info("track sequence numbers restarted", "track_id", st.info.ID, "seq", run[0].seq)
	}
	first := run[0].seq
	for _, q := range run {
		if int16(q.seq-first) < 0 {
			first = q.seq
		}
	}
	st.ro = reorder{started: true, next: 1<<32 | uint64(first), run: run[:0], lastArrival: run[len(run)-1].arrival}
	for i, q := range run {
		run[i] = rtpPacket{}
		st.ro.admit(&q)
		r.reorderPush(st, q)
	}
}

// dropRun drops the held far packets: they were strays.
func (r *Recording) dropRun(st *trackState) {
	for i := range st.ro.run {
		st.dups++
		r.bufs.put(st.ro.run[i].buf)
		st.ro.run[i] = rtpPacket{}
	}
	st.ro.run = st.ro.run[:0]
}

func (r *Recording) senderReport(st *trackState, it queueItem) {
	ntp := ntpToNS(it.ntp)
	if !r.ntpSet {
		r.ntpOffset, r.ntpSet = it.arrival-ntp, true
		r.senderOffset = r.ntpOffset
	}
	local := ntp + r.ntpOffset
	if d := local - it.arrival; d > srMaxSkewNS || d < -srMaxSkewNS {
		local = it.arrival // another sender's clock: only its own arrival is comparable
	} else {
		r.senderOffset = min(r.senderOffset, it.arrival-ntp)
	}
	if st.tl.have && !st.tl.fromSR {
		st.q.senderReport(st.tl.local(it.rtpTS)-local, it.arrival)
	}
	if moved := st.tl.senderReport(it.rtpTS, local); moved != 0 {
		r.countReanchor(st, "sender_report")
		r.logReanchor(st, it.arrival, "track timeline re-anchored: its sender's clock moved", moved)
	}
}

// reorderPush puts an admitNew packet into the reorder window and emits what is in order.
func (r *Recording) reorderPush(st *trackState, p rtpPacket) {
	ro := &st.ro
	for p.ext >= ro.next+reorderSlots {
		r.skipOne(st)
	}
	slot := &ro.slots[p.ext%reorderSlots]
	if slot.valid {
		st.dups++
		r.bufs.put(p.buf)
		return
	}
	*slot = p
	ro.count++
	st.q.arrived(p.ts, p.arrival, int64(st.info.ClockRate))
	r.drain(st, p.arrival, false)
}

// skipOne advances past ro.next: emits it if held, otherwise counts it lost.
func (r *Recording) skipOne(st *trackState) {
	ro := &st.ro
	slot := &ro.slots[ro.next%reorderSlots]
	if slot.valid && slot.ext == ro.next {
		p := *slot
		*slot = rtpPacket{}
		ro.count--
		r.emit(st, p)
	} else {
		st.lost++
	}
	ro.next++
	ro.waitSince = 0
}

// drain emits packets in order; a gap is waited for up to reorderMaxWait (arrival time),
// or skipped at once when all is true.
func (r *Recording) drain(st *trackState, now int64, all bool) {
	ro := &st.ro
	for ro.count > 0 {
		slot := &ro.slots[ro.next%reorderSlots]
		if slot.valid && slot.ext == ro.next {
			p := *slot
			*slot = rtpPacket{}
			ro.count--
			ro.next++
			ro.waitSince = 0
			r.emit(st, p)
			continue
		}
		if !all {
			if ro.waitSince == 0 {
				ro.waitSince = now
			}
			if now-ro.waitSince < reorderMaxWait {
				return
			}
		}
		st.lost++
		ro.next++
	}
}

func (r *Recording) flushReorder(st *trackState) {
	r.drain(st, 0, true)
}

// emit handles an in-order packet: the timeline stage (see timeline.go).
func (r *Recording) emit(st *trackState, p rtpPacket) {
	if p.epoch > st.epoch {
		// What was not sent during a pause is neither a gap nor silence of the sender.
		st.epoch = p.epoch
		st.q.restart()
		if st.info.Kind == KindVideo {
			st.needKey = true
			st.lastKeyReq = -1 << 62
		}
	}
	if len(p.payload) == 0 {
		// Padding only (a bandwidth probe): no media and no timestamp worth trusting,
		// but its sequence number is no loss.
		if st.asm != nil {
			st.asm.skip(p.ext)
		}
		r.bufs.put(p.buf)
		return
	}
	anchors := st.tl.arrivalAnchors
	next := st.tl.step(p.ts, p.arrival)
	if st.tl.arrivalAnchors != anchors {
		st.q.arrivalAnchored(p.arrival)
	}
	switch next {
	case stepFits:
		r.dropHeld(st)
		r.place(st, p)
	case stepNewRun:
		r.dropHeld(st)
		st.held = append(st.held, p)
	case stepHold:
		st.held = append(st.held, p)
	case stepRestart:
		r.countReanchor(st, "timestamp")
		r.logReanchor(st, p.arrival, "track timeline re-anchored: its timestamps jumped", st.tl.moved)
		for i, q := range st.held {
			st.held[i] = rtpPacket{}
			r.place(st, q)
		}
		st.held = st.held[:0]
		r.place(st, p)
	}
}

// dropHeld drops the packets the timeline held: their timestamps were strays.
func (r *Recording) dropHeld(st *trackState) {
	for i := range st.held {
		st.dups++
		r.bufs.put(st.held[i].buf)
		st.held[i] = rtpPacket{}
	}
	st.held = st.held[:0]
}

// reanchorLogEveryNS: after a track's first re-anchor line, at most one a minute. A
// sender whose clock keeps moving (an overloaded one re-anchors every few seconds)
// would otherwise fill the log; the manifest and the metric count every re-anchor.
const reanchorLogEveryNS = 60e9

// logReanchor logs a track's re-anchor at arrival time now (ns), within
// reanchorLogEveryNS, saying how many went unlogged since the last line.
func (r *Recording) logReanchor(st *trackState, now int64, msg string, jumpNS int64) {
	if st.reanchorLoggedAt != 0 && now-st.reanchorLoggedAt < reanchorLogEveryNS {
		st.reanchorsUnlogged++
		return
	}
	r.log.Info(msg, "track_id", st.info.ID, "jump_ms", jumpNS/1e6, "reanchors_not_logged", st.reanchorsUnlogged)
	st.reanchorLoggedAt, st.reanchorsUnlogged = now, 0
}

func (r *Recording) countReanchor(st *trackState, cause string) {
	st.reanchors++
	if r.cfg.Metrics != nil {
		r.cfg.Metrics.Reanchors.WithLabelValues(cause).Inc()
	}
}

// place writes a packet whose time the timeline knows.
func (r *Recording) place(st *trackState, p rtpPacket) {
	t := r.fileTime(st.tl.local(p.ts))
	clock := int64(st.info.ClockRate)
	if st.info.Kind == KindAudio {
		samples := int64(opusSamples(p.payload))
		st.q.inOrder(p.ext, p.ts, samples*clock/opusSampleRate, len(p.payload), p.arrival, clock)
		r.mux.push(muxFrame{t: st.inOrderTime(t, samples*1e9/opusSampleRate), tr: st, key: true, buf: p.buf, data: p.payload})
		r.release(false)
		return
	}
	st.q.inOrder(p.ext, p.ts, -1, len(p.payload), p.arrival, clock)
	if id := st.info.OrientationExtID; id != 0 {
		st.orient.follow(*p.buf, id, t, st.width != 0)
	}
	frame, lost := st.asm.push(p.ext, p.ts, p.marker, p.payload)
	if lost && !st.needKey {
		st.needKey = true
		st.framesDropped++
	}
	if frame != nil {
		r.videoFrame(st, t, frame, p.arrival)
	} else if st.needKey {
		r.requestKeyframe(st, p.arrival)
	}
	r.bufs.put(p.buf)
}

func (r *Recording) videoFrame(st *trackState, t int64, frame []byte, arrival int64) {
	var key bool
	var w, h int
	switch st.info.Codec {
	case CodecVP8:
		key, w, h = vp8Keyframe(frame)
	case CodecVP9:
		key, w, h = vp9Keyframe(frame)
	case CodecH264:
		var sps, pps []byte
		var ok bool
		key, sps, pps, ok = h264Scan(frame)
		if !ok {
			st.needKey = true
			st.framesDropped++
			r.requestKeyframe(st, arrival)
			return
		}
		if key && len(sps) > 0 && len(pps) > 0 && len(st.codecPrivate) == 0 {
			st.codecPrivate = avcC(sps, pps)
			w, h, _ = h264Size(sps)
			if w == 0 {
				w, h = st.width, st.height
				if w == 0 {
					w, h = 16, 16
				}
			}
			st.width, st.height = 0, 0 // force the header update below
		}
	}
	if st.needKey && !key {
		st.framesDropped++
		r.requestKeyframe(st, arrival)
		return
	}
	if key && st.info.Codec == CodecH264 && len(st.codecPrivate) == 0 {
		// An IDR without SPS/PPS cannot start a Matroska AVC track.
		st.framesDropped++
		r.requestKeyframe(st, arrival)
		return
	}
	st.needKey = false
	if key && st.q.firstKey < 0 {
		st.q.firstKey = t
	}
	if key && w > 0 && h > 0 && st.width == 0 {
		st.width, st.height = w, h
		if err := r.c.updateTrack(st); err != nil {
			r.fail(fmt.Errorf("recorder: update track header: %w", err))
			return
		}
	} else if key && w > 0 && (w != st.width || h != st.height) {
		// Players follow the size in the bitstream; the header keeps the first size.
		r.log.Debug("video resolution changed", "track_id", st.info.ID, "width", w, "height", h)
	}
	bp := r.frameFree.get()
	*bp = append((*bp)[:0], frame...)
	r.mux.push(muxFrame{t: st.inOrderTime(t, 0), tr: st, key: key, buf: bp, data: *bp, video: true})
	r.release(false)
}

func (r *Recording) requestKeyframe(st *trackState, now int64) {
	if r.cfg.RequestKeyframe == nil || now-st.lastKeyReq < keyframeRetryNS {
		return
	}
	st.lastKeyReq = now
	r.cfg.RequestKeyframe(st.info.ID)
}

// muxFloor is the file time before which no frame can come any more: each track's next
// frame starts at or after its nextT. A track that has queued nothing yet may start
// anywhere, and then there is no floor.
func (r *Recording) muxFloor() int64 {
	floor := int64(math.MaxInt64)
	for _, st := range r.states {
		if !st.queued {
			return math.MinInt64
		}
		floor = min(floor, st.nextT)
	}
	return floor
}

// release writes the frames the interleaving queue lets go (all of them when all is set).
func (r *Recording) release(all bool) {
	r.mux.floor = r.muxFloor()
	for len(r.mux.items) > 0 && (all || r.mux.ready()) {
		if !all && !r.mux.due() && r.cfg.Metrics != nil {
			r.cfg.Metrics.MuxForced.Inc()
		}
		f := r.mux.pop()
		if r.writeErr == nil {
			if err := r.c.writeFrame(f.tr, f.t, f.key, f.data); err != nil {
				r.fail(err)
			} else if r.cfg.Metrics != nil {
				r.cfg.Metrics.PacketsWritten.Inc()
			}
		}
		if f.video {
			r.frameFree.put(f.buf)
		} else {
			r.bufs.put(f.buf)
		}
	}
}

// finish runs on the writer after the queue is drained.
func (r *Recording) finish() {
	r.mu.Lock()
	stop := r.stopWall.UnixNano()
	pauses := slices.Clone(r.pauses)
	r.mu.Unlock()
	for _, st := range r.trackStates() {
		if !st.ro.started && len(st.ro.run) > 0 {
			r.startStream(st) // fewer packets than a run: still the stream's start
		}
		r.flushReorder(st)
		r.dropHeld(st) // a timestamp jump the stream never confirmed
	}
	r.release(true)
	marks := make([]fileMark, 0, len(pauses))
	for _, p := range pauses {
		marks = append(marks, fileMark{startMS: r.fileTime(p.start) / 1e6, endMS: r.fileTime(p.end) / 1e6, label: markPaused})
	}
	if r.writeErr == nil {
		if err := r.c.finish(r.fileTime(stop), marks); err != nil {
			r.fail(err)
		}
	}
	// Stop makes the file durable, on its own goroutine: when a thousand
	// recordings stop at once, their fsyncs held the few shared workers for
	// seconds, while the recordings still running overflowed their queues.
	if err := r.w.flush(); err != nil {
		r.fail(fmt.Errorf("recorder: flush: %w", err))
	}
}

// closeFile makes the finished file durable and closes it. Stop calls it once
// the worker is done with the recording.
func (r *Recording) closeFile() {
	if err := r.file.Sync(); err != nil {
		r.fail(fmt.Errorf("recorder: fsync: %w", err))
	}
	if err := r.file.Close(); err != nil {
		r.fail(fmt.Errorf("recorder: close media file: %w", err))
	}
}

func (r *Recording) trackStates() []*trackState {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*trackState, 0, len(r.tracks))
	for _, t := range r.tracks {
		out = append(out, t.st)
	}
	return out
}

// manifest builds the manifest from the current state (tracks only once the writer ended).
func (r *Recording) manifest(state string) *Manifest {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := &Manifest{
		RecordingID: r.cfg.RecordingID, SessionID: r.cfg.SessionID, ClientID: r.cfg.ClientID,
		Identity: r.cfg.Identity, Format: r.format, ContentType: ContentType(r.format),
		File: filepath.Base(r.path), PauseMode: r.cfg.PauseMode, State: state,
		StartedAt: r.started, Clock: ClockServer, Path: r.path,
		Tracks: []TrackStats{}, Pauses: []PauseSpan{}, Audit: slices.Clone(r.audit),
	}
	if m.Audit == nil {
		m.Audit = []AuditEvent{}
	}
	for _, p := range r.pauses {
		span := PauseSpan{
			StartMS:   r.fileTime(p.start) / 1e6,
			StartedAt: time.Unix(0, p.start).UTC(),
		}
		if p.end != 0 {
			span.EndMS = r.fileTime(p.end) / 1e6
			e := time.Unix(0, p.end).UTC()
			span.EndedAt = &e
		} else {
			span.EndMS = span.StartMS
		}
		m.Pauses = append(m.Pauses, span)
	}
	return m
}

// ntpUnixOffsetNS is the NTP epoch (1900) to Unix epoch (1970) distance (RFC 5905 §6).
const ntpUnixOffsetNS = 2208988800e9

// finishManifest runs after the writer goroutine ended, so it may read its state.
func (r *Recording) finishManifest() (*Manifest, error) {
	m := r.manifest(StateFinished)
	stopped := r.stopWall.UTC()
	if r.ntpSet {
		// The sender's clock at a local instant is the instant minus senderOffset.
		shift := -r.senderOffset - ntpUnixOffsetNS
		m.Clock = ClockSender
		m.StartedAt = time.Unix(0, r.t0+shift).UTC()
		stopped = time.Unix(0, r.stopWall.UnixNano()+shift).UTC()
		m.SenderClockOffsetMS = new(shift / 1e6)
	}
	m.StoppedAt = &stopped
	m.DurationMS = r.c.duration() / 1e6
	var audio *trackState
	for _, st := range r.states {
		if st.info.Kind == KindAudio {
			audio = st
			break
		}
	}
	r.mu.Lock()
	tracks := slices.Clone(r.tracks)
	r.mu.Unlock()
	for _, t := range tracks {
		st := t.st
		paused := t.paused.Load()
		clock := int64(st.info.ClockRate)
		ts := TrackStats{
			ID: st.info.ID, Kind: st.info.Kind, Codec: st.info.Codec, Number: st.num,
			TrackQuality: TrackQuality{
				PacketsReceived: t.received.Load(),
				PacketsLost:     st.lost - min(st.lost, paused),
				LongestGapMS:    ticksToMS(st.q.longestGap, clock),
				SilenceMS:       ticksToMS(st.q.silence, clock),
				JitterMS:        st.q.jitterMS(),
				Reanchors:       st.reanchors,
			},
			Duplicates:     st.dups,
			PacketsDropped: t.dropped.Load(),
			FramesWritten:  st.framesWritten,
			FramesDropped:  st.framesDropped,
			Width:          st.width,
			Height:         st.height,
		}
		if st.info.Kind == KindVideo {
			ts.Rotation, ts.RotationChanges = st.orient.rotation, slices.Clone(st.orient.changes)
		}
		sent := ts.PacketsReceived - min(ts.PacketsReceived, paused+ts.Duplicates+ts.PacketsDropped)
		ts.LossPercent = lossPercent(ts.PacketsLost, sent)
		if st.info.Kind == KindVideo {
			if st.q.firstKey >= 0 {
				ts.FirstKeyframeMS = new(st.q.firstKey / 1e6)
			}
			if audio != nil {
				if off, ok := avOffset(&st.q, &audio.q); ok {
					ts.AVOffsetMS = new(off / 1e6)
				}
			}
		}
		m.PacketsDropped += ts.PacketsDropped
		m.Tracks = append(m.Tracks, ts)
	}
	size, sum, herr := hashFile(r.path)
	m.SizeBytes, m.SHA256 = size, sum
	err := errors.Join(r.writeErr, herr)
	args := []any{"duration_ms", m.DurationMS, "size_bytes", m.SizeBytes}
	level := slog.LevelInfo
	if m.PacketsDropped > 0 {
		args, level = append(args, "packets_dropped", m.PacketsDropped), slog.LevelWarn
	}
	if err != nil {
		args = append(args, "err", err)
	}
	r.log.Log(context.Background(), level, "recording stopped", args...)
	return m, err
}

func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", fmt.Errorf("recorder: hash media file: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return n, "", fmt.Errorf("recorder: hash media file: %w", err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}
