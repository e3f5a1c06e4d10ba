package delivery

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtmrec/rtmrec/evidence"
	"github.com/rtmrec/rtmrec/internal/backoff"
	"github.com/rtmrec/rtmrec/internal/durable"
	"github.com/rtmrec/rtmrec/internal/ledger"
	"github.com/rtmrec/rtmrec/internal/workpool"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/upload"
	"github.com/rtmrec/rtmrec/webhook"
)

// Outbox queues webhook events inside a ledger transaction (package
// webhook).
type Outbox interface {
	Stage(tx *ledger.Tx, ev webhook.Event) (after func(), err error)
}

// Uploader makes one upload attempt (package upload).
type Uploader interface {
	Put(ctx context.Context, job upload.Job) upload.Outcome
	CloseIdle()
}

// Config configures Journeys. Zero durations and counts take the defaults
// documented on each field.
type Config struct {
	// Ledger keeps the journeys. Required.
	Ledger *ledger.Ledger
	// Outbox takes the recordings' events. Required.
	Outbox Outbox
	// Uploader uploads finished files. Required.
	Uploader Uploader
	// Dir is where the recordings' media files are.
	Dir string
	// Allow, if set, checks an upload URL again before every attempt (the
	// operator may have narrowed what is allowed since the recording
	// started); its error refuses the upload.
	Allow func(tenant, uploadURL string) error
	// Announce, if set, hears each recording's final outcome (STOPPED or
	// FAILED) once it is durable, to tell the client that started it.
	Announce func(recordingID string, m rtm.Message)
	// MaxAttempts bounds the upload attempts per recording; default 10.
	MaxAttempts int
	// Deadline bounds the time a recording may keep retrying its upload,
	// from the moment its file was final; default 24h.
	Deadline time.Duration
	// BaseBackoff and MaxBackoff shape the retry delays (full jitter);
	// defaults 1s and 5m. A longer Retry-After from the target wins.
	BaseBackoff, MaxBackoff time.Duration
	// EvidenceKey, if set, signs every recording's manifest (docs/evidence.md): the signed manifest is kept beside the file as
	// <id>.manifest.json, carried in STOPPED, and uploaded to the
	// recording's manifest URL.
	EvidenceKey ed25519.PrivateKey
	// Retention keeps an uploaded file (and its journey) this long after
	// the upload; 0 removes both at once. A failed recording's file is
	// never removed.
	Retention time.Duration
	// Workers is the number of concurrent uploads and repairs; default 4.
	Workers int
	// Logger receives the journeys' logs; nil discards them.
	Logger *slog.Logger
	// Metrics registers the journeys' metrics; nil skips them.
	Metrics prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 10
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	def(&c.Deadline, 24*time.Hour)
	def(&c.BaseBackoff, time.Second)
	def(&c.MaxBackoff, 5*time.Minute)
	if c.MaxBackoff < c.BaseBackoff {
		c.MaxBackoff = c.BaseBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// The reasons of the failures whose detail is always the same.
var (
	reasonEmpty         = rtm.FailureRecordingEmpty.Reason("no audio and no video keyframe reached the server before the recording stopped")
	reasonNotWritten    = rtm.FailureRecordingFailed.Reason("the file could not be written on the server; what was written is kept there")
	reasonUnrepairable  = rtm.FailureRecordingUnrepairable.Reason("the server stopped before any playable media of the recording reached the disk; the file is kept on the server")
	reasonFileIsMissing = rtm.FailureRecordingMissing.Reason("the recording's file is missing from the server's data directory")
)

// storeRetry is how soon a step whose state could not be committed is
// tried again (disk full, I/O error).
const storeRetry = 5 * time.Second

// Journeys keeps every recording's journey. Create it with New (which
// resumes what an earlier process left), feed it with Begin, Paused, Audit
// and Finish, run it with Run, finish it with Drain.
type Journeys struct {
	cfg Config
	log *slog.Logger
	m   *metrics

	mu   sync.Mutex
	due  workpool.Due[*journey] // journeys with a next step, earliest first
	wake chan struct{}
	// scheduled are the journeys in due or in a worker's hands, with the
	// state they were scheduled in.
	scheduled map[string]state

	life *workpool.Lifecycle
}

// New loads the journeys an earlier process left and schedules what each
// needs next: a repair for a recording a crash cut off, an upload for a
// finished one, the removal of an uploaded file once its retention is
// over. Media files that no journey knows (a crash between creating the
// file and recording its journey; no client ever heard of them) are moved
// aside into Dir/orphaned.
func New(cfg Config) (*Journeys, error) {
	if cfg.Ledger == nil || cfg.Outbox == nil || cfg.Uploader == nil {
		return nil, errors.New("delivery: Ledger, Outbox and Uploader are required")
	}
	if cfg.Dir == "" {
		return nil, errors.New("delivery: Dir is required")
	}
	cfg.setDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("delivery: recordings dir: %w", err)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	j := &Journeys{
		cfg: cfg, log: cfg.Logger, m: m,
		wake:      make(chan struct{}, 1),
		scheduled: map[string]state{},
		life:      workpool.New(),
	}
	known := map[string]bool{}
	now := cfg.Now()
	var resumed int
	err = cfg.Ledger.View(func(tx *ledger.Tx) error {
		b := tx.Bucket(bucketJourneys)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			known[string(k)] = true
			jr := new(journey)
			if err := json.Unmarshal(v, jr); err != nil || jr.ID != string(k) || jr.Manifest == nil {
				// Nothing can be done for it, not even a FAILED: its route is
				// unreadable. Keep it for the operator and say so loudly.
				j.log.Error("delivery: unreadable recording journey kept in the ledger", "recording_id", string(k))
				j.m.corrupt.Inc()
				return nil
			}
			if jr.State == stateFinished {
				j.m.pending.Inc()
			}
			if j.schedule(jr, now) {
				resumed++
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("delivery: load journeys: %w", err)
	}
	j.sweepOrphans(known)
	if resumed > 0 {
		j.log.Info("resuming the recordings of an earlier run", "count", resumed)
	}
	return j, nil
}

// sweepOrphans moves aside media files without a journey and removes the
// temporary files of an interrupted repair.
func (j *Journeys) sweepOrphans(known map[string]bool) {
	entries, err := os.ReadDir(j.cfg.Dir)
	if err != nil {
		j.log.Error("delivery: read recordings dir", "error", err)
		return
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() {
			continue
		}
		full := filepath.Join(j.cfg.Dir, name)
		if strings.HasSuffix(name, ".repair") {
			_ = os.Remove(full)
			continue
		}
		id := strings.TrimSuffix(name, filepath.Ext(name))
		switch filepath.Ext(name) {
		case ".ogg", ".webm", ".mkv":
		default:
			continue
		}
		if known[id] {
			continue
		}
		dst := filepath.Join(j.cfg.Dir, "orphaned")
		if err := os.MkdirAll(dst, 0o750); err == nil {
			err = os.Rename(full, filepath.Join(dst, name))
		}
		j.log.Warn("media file without a recording journey moved aside (the server stopped before it was announced)", "file", name, "error", err)
	}
}

// schedule puts j in the heap at its next step, if it has one. Callers
// hold j.mu (or own the Journeys alone).
func (j *Journeys) schedule(jr *journey, now time.Time) bool {
	at, ok := j.nextStep(jr, now)
	if !ok {
		return false
	}
	j.scheduled[jr.ID] = jr.State
	j.due.Push(at, jr)
	select {
	case j.wake <- struct{}{}:
	default:
	}
	return true
}

// nextStep says when a journey next needs a worker. A journey in state
// recording is scheduled only by New (it is a crash's leftover); the live
// ones are the recorder's until Finish.
func (j *Journeys) nextStep(jr *journey, now time.Time) (time.Time, bool) {
	switch jr.State {
	case stateRecording:
		return now, true
	case stateFinished:
		return jr.NextAttempt, true
	case stateUploaded:
		return jr.Decided.Add(j.cfg.Retention), true
	}
	return time.Time{}, false
}

// Begin records, durably, that a recording started, and queues its STARTED
// behind the session's earlier events. It blocks on disk: call it off the
// session loop. announce (may be nil) gets the STARTED message once it is
// durable, in order with the session's other events.
func (j *Journeys) Begin(r Route, m *recorder.Manifest, announce func(rtm.Message)) error {
	jr := &journey{ID: m.RecordingID, Route: r, State: stateRecording, Manifest: m}
	msg, ev, err := recordingEvent(jr, rtm.RecordingStarted, 0)
	if err != nil {
		return err
	}
	var after func()
	err = j.cfg.Ledger.Update(func(tx *ledger.Tx) error {
		if err := saveJourney(tx, jr); err != nil {
			return err
		}
		after, err = j.cfg.Outbox.Stage(tx, ev)
		return err
	})
	if err != nil {
		return fmt.Errorf("delivery: begin %s: %w", jr.ID, err)
	}
	after()
	if announce != nil {
		announce(msg)
	}
	return nil
}

// Paused records the recording's pauses so far (after a pause or a resume)
// and queues PAUSED or RESUMED, without waiting: a session loop calls it.
// announce (may be nil) gets the message once it is durable.
func (j *Journeys) Paused(id string, paused bool, pauses []recorder.PauseSpan, announce func(rtm.Message)) {
	st := rtm.RecordingResumed
	if paused {
		st = rtm.RecordingPaused
	}
	var msg rtm.Message
	var after func()
	j.cfg.Ledger.Submit(ledger.Op{
		Apply: func(tx *ledger.Tx) error {
			after = nil
			jr, err := loadJourney(tx, id)
			if err != nil || jr == nil || jr.State != stateRecording {
				return err
			}
			jr.Manifest.Pauses = pauses
			var ev webhook.Event
			if msg, ev, err = recordingEvent(jr, st, len(pauses)); err != nil {
				return err
			}
			if err := saveJourney(tx, jr); err != nil {
				return err
			}
			after, err = j.cfg.Outbox.Stage(tx, ev)
			return err
		},
		Done: func(err error) {
			if err != nil {
				j.log.Error("delivery: pause not recorded", "recording_id", id, "error", err)
				return
			}
			if after == nil {
				return
			}
			after()
			if announce != nil {
				announce(msg)
			}
		},
	})
}

// Audit records a supervisor's visit in the recording's manifest, without
// waiting: a session loop calls it.
func (j *Journeys) Audit(id string, e recorder.AuditEvent) {
	j.cfg.Ledger.Submit(ledger.Op{
		Apply: func(tx *ledger.Tx) error {
			jr, err := loadJourney(tx, id)
			if err != nil || jr == nil || jr.State != stateRecording {
				return err
			}
			jr.Manifest.Audit = append(jr.Manifest.Audit, e)
			return saveJourney(tx, jr)
		},
		Done: func(err error) {
			if err != nil {
				j.log.Error("delivery: supervisor visit not recorded", "recording_id", id, "error", err)
			}
		},
	})
}

// Finish takes a recording whose recorder has stopped: m is its final
// manifest, err what went wrong writing it. The journey becomes finished
// (and the upload is scheduled) or, when the file could not be written,
// FAILED. It blocks on disk: call it off the session loop.
func (j *Journeys) Finish(id string, m *recorder.Manifest, werr error) error {
	now := j.cfg.Now()
	cur, err := j.lookup(id)
	if err != nil {
		return fmt.Errorf("delivery: finish %s: %w", id, err)
	}
	if cur == nil || cur.State != stateRecording {
		j.log.Error("delivery: finish of a recording without a journey", "recording_id", id)
		return nil
	}
	switch {
	case errors.Is(werr, recorder.ErrNoMedia):
		return j.decide(cur, stateFailed, reasonEmpty, 0)
	case werr != nil:
		j.log.Error("recording could not be written", "recording_id", id, "error", werr)
		return j.decide(cur, stateFailed, reasonNotWritten, 0)
	}
	next := cur.clone()
	if m != nil {
		// The journey's pauses and visits were recorded as they happened,
		// the recorder's kept in memory: they agree, and should one miss
		// an entry, the longer list wins.
		pauses, audit := next.Manifest.Pauses, next.Manifest.Audit
		next.Manifest = m
		if len(m.Pauses) < len(pauses) {
			next.Manifest.Pauses = pauses
		}
		if len(m.Audit) < len(audit) {
			next.Manifest.Audit = audit
		}
	}
	next.State, next.Finished, next.NextAttempt = stateFinished, now, now
	j.seal(next)
	if err := j.cfg.Ledger.Update(func(tx *ledger.Tx) error { return saveJourney(tx, next) }); err != nil {
		return fmt.Errorf("delivery: finish %s: %w", id, err)
	}
	j.m.pending.Inc()
	j.mu.Lock()
	j.schedule(next, now)
	j.mu.Unlock()
	return nil
}

// seal signs a journey's final manifest (when the server signs) and keeps
// the signed manifest beside the media file, where operators and the
// upload find it. A manifest that cannot be signed or written is logged:
// the recording still goes out, unsigned.
func (j *Journeys) seal(jr *journey) {
	if j.cfg.EvidenceKey == nil {
		return
	}
	signed, err := evidence.Sign(evidence.FromManifest(jr.Manifest), j.cfg.EvidenceKey)
	if err == nil {
		err = durable.WriteFile(j.manifestPath(jr), signed)
	}
	if err != nil {
		j.log.Error("delivery: manifest not signed", "recording_id", jr.ID, "error", err)
		return
	}
	jr.Signed = signed
}

func (j *Journeys) mediaPath(jr *journey) string {
	return filepath.Join(j.cfg.Dir, filepath.Base(jr.Manifest.File))
}

func (j *Journeys) manifestPath(jr *journey) string {
	return filepath.Join(j.cfg.Dir, jr.ID+".manifest.json")
}

// Recording finds a recording still in the data directory: its media file
// and signed manifest (for the operators' redaction API).
func (j *Journeys) Recording(_ context.Context, id string) (media string, manifest []byte, err error) {
	jr, err := j.lookup(id)
	if err != nil {
		return "", nil, err
	}
	if jr == nil || jr.Manifest == nil || jr.State == stateRecording {
		return "", nil, evidence.ErrUnknownRecording
	}
	media = j.mediaPath(jr)
	if _, err := os.Stat(media); err != nil {
		return "", nil, evidence.ErrUnknownRecording
	}
	return media, jr.Signed, nil
}

// Progress is where a recording's journey stands, for a status page.
type Progress struct {
	RecordingID string `json:"recording_id"`
	SessionID   string `json:"session_id"`
	// State is "recording" (being written, or a crash's leftover waiting
	// for its repair), "finished" (the file is final and is being uploaded,
	// or waits for its next attempt), "uploaded" or "failed".
	State string `json:"state"`
	// Attempts counts the upload attempts so far, the one in progress
	// included; MaxAttempts is the server's bound.
	Attempts    int `json:"attempts"`
	MaxAttempts int `json:"max_attempts"`
	// NextAttempt is when the next upload attempt is due (finished only).
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// GiveUpAt is when a finished recording stops retrying (the upload
	// deadline).
	GiveUpAt time.Time `json:"give_up_at,omitzero"`
	// LastStatus is the HTTP status of the last attempt, if it got one.
	LastStatus int `json:"last_status,omitempty"`
	// Reason says why the last attempt failed, or why the recording failed.
	Reason string `json:"reason,omitempty"`
	// File is the media file's path on the server (where a failed
	// recording is kept).
	File string `json:"file,omitempty"`
}

// Progress reads a recording's journey without changing it. ok is false
// when there is none: the recording never started here, or it was
// uploaded and its journey removed (no retention).
func (j *Journeys) Progress(id string) (p Progress, ok bool, err error) {
	jr, err := j.lookup(id)
	if err != nil || jr == nil || jr.Manifest == nil {
		return Progress{}, false, err
	}
	p = Progress{
		RecordingID: jr.ID, SessionID: jr.Route.SessionID, State: string(jr.State),
		Attempts: jr.Attempts, MaxAttempts: j.cfg.MaxAttempts,
		LastStatus: jr.Status, Reason: jr.Reason, File: j.mediaPath(jr),
	}
	if jr.State == stateFinished {
		p.NextAttempt, p.GiveUpAt = jr.NextAttempt, jr.Finished.Add(j.cfg.Deadline)
	}
	return p, true, nil
}

// lookup reads a journey from the ledger (nil if there is none).
func (j *Journeys) lookup(id string) (jr *journey, err error) {
	err = j.cfg.Ledger.View(func(tx *ledger.Tx) error {
		jr, err = loadJourney(tx, id)
		return err
	})
	return jr, err
}

// Run repairs, uploads and cleans up with Config.Workers workers until ctx
// is cancelled or a drain is over, and returns after every worker has
// exited. An upload cut off by ctx is not counted and stays scheduled.
func (j *Journeys) Run(ctx context.Context) error {
	return workpool.Run(ctx, j.life, j.cfg.Workers, j.dispatch, j.step, j.cfg.Uploader.CloseIdle)
}

// Drain finishes what can be finished by ctx's deadline: uploads due
// before it (retries included) and their STOPPED or FAILED. What is left
// stays in the ledger for the next start and is logged. After Drain, Run
// returns.
func (j *Journeys) Drain(ctx context.Context) {
	j.life.Drain(ctx)
	for _, id := range j.Unfinished() {
		j.log.Info("recording left for the next start", "recording_id", id)
	}
}

// Unfinished lists the recordings whose outcome is not decided yet (being
// repaired, uploaded, or waiting for a retry).
func (j *Journeys) Unfinished() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	var left []string
	for id, st := range j.scheduled {
		if st == stateRecording || st == stateFinished {
			left = append(left, id)
		}
	}
	return left
}

// dispatch hands due journeys to the workers.
func (j *Journeys) dispatch(ctx context.Context, work chan<- *journey) {
	workpool.Dispatch(ctx, j.life, &j.mu, &j.due, j.wake, j.cfg.Now, nil,
		func(jr *journey) {
			at, _ := j.nextStep(jr, j.cfg.Now())
			j.due.Push(at, jr)
		}, work)
}

// step does what jr needs now, then schedules its next step. A worker owns
// jr while it runs.
func (j *Journeys) step(ctx context.Context, jr *journey) {
	var err error
	switch jr.State {
	case stateRecording:
		err = j.repair(jr)
	case stateFinished:
		err = j.attempt(ctx, jr)
	case stateUploaded:
		err = j.cleanUp(jr)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.scheduled, jr.ID)
	if err != nil {
		j.log.Error("delivery: recording state not saved, retrying", "recording_id", jr.ID, "error", err)
		j.scheduled[jr.ID] = jr.State
		j.due.Push(j.cfg.Now().Add(storeRetry), jr)
		return
	}
	j.schedule(jr, j.cfg.Now())
}

// repair finishes the file a crash cut off. A file that cannot be repaired
// (missing, cut inside its headers, garbage) ends the journey FAILED with
// the reason; the file stays.
func (j *Journeys) repair(jr *journey) error {
	m := *jr.Manifest
	m.Path = filepath.Join(j.cfg.Dir, filepath.Base(m.File))
	log := j.log.With("recording_id", jr.ID, "session_id", jr.Route.SessionID)
	if err := recorder.Repair(&m); err != nil {
		j.m.repairs.WithLabelValues("unrepairable").Inc()
		reason := reasonUnrepairable
		if _, serr := os.Stat(m.Path); errors.Is(serr, os.ErrNotExist) {
			reason = reasonFileIsMissing
		} else if errors.Is(err, recorder.ErrNoMedia) {
			reason = reasonEmpty
		}
		log.Error("recording of an earlier run cannot be repaired", "error", err)
		return j.decide(jr, stateFailed, reason, 0)
	}
	j.m.repairs.WithLabelValues("repaired").Inc()
	next := jr.clone()
	now := j.cfg.Now()
	next.Manifest, next.Repaired = &m, true
	next.State, next.Finished, next.NextAttempt = stateFinished, now, now
	j.seal(next)
	if err := j.cfg.Ledger.Update(func(tx *ledger.Tx) error { return saveJourney(tx, next) }); err != nil {
		return err
	}
	*jr = *next
	j.m.pending.Inc()
	log.Info("recording of an earlier run repaired", "duration_ms", m.DurationMS, "size_bytes", m.SizeBytes)
	return nil
}

// attempt makes one upload attempt and records its outcome. The attempt is
// counted durably before it starts, so a process that dies mid-upload
// still uses up attempts rather than retrying forever.
func (j *Journeys) attempt(ctx context.Context, jr *journey) error {
	if j.cfg.Allow != nil {
		if err := j.cfg.Allow(jr.Route.Tenant, jr.Route.UploadURL); err != nil {
			return j.decide(jr, stateFailed, rtm.FailureUploadRefused.Reason(err.Error()), 0)
		}
	}
	counted := jr.clone()
	counted.Attempts++
	if err := j.cfg.Ledger.Update(func(tx *ledger.Tx) error { return saveJourney(tx, counted) }); err != nil {
		return err
	}
	*jr = *counted
	log := j.log.With("recording_id", jr.ID, "session_id", jr.Route.SessionID)
	start := j.cfg.Now()
	out := upload.Outcome{OK: true}
	if !jr.MediaDone {
		out = j.cfg.Uploader.Put(ctx, upload.Job{File: j.mediaPath(jr), ContentType: jr.Manifest.ContentType, URL: jr.Route.UploadURL})
		if out.OK && jr.manifestTarget() != "" {
			// The manifest goes next: remember the media went, so a retry
			// sends only the manifest.
			done := jr.clone()
			done.MediaDone = true
			if err := j.cfg.Ledger.Update(func(tx *ledger.Tx) error { return saveJourney(tx, done) }); err != nil {
				return err
			}
			*jr = *done
		}
	}
	if target := jr.manifestTarget(); out.OK && target != "" {
		out = j.cfg.Uploader.Put(ctx, upload.Job{File: j.manifestPath(jr), ContentType: "application/json", URL: target})
		if !out.OK && out.Reason != "" {
			out.Reason = "manifest: " + out.Reason
		}
	}
	now := j.cfg.Now()
	if !out.OK && ctx.Err() != nil {
		// Shutdown, not the target's fault: the attempt does not count.
		undone := jr.clone()
		undone.Attempts--
		if err := j.cfg.Ledger.Update(func(tx *ledger.Tx) error { return saveJourney(tx, undone) }); err != nil {
			return err
		}
		*jr = *undone
		log.Info("upload interrupted by the shutdown; left for the next start")
		return nil
	}
	jr.Status = out.Status
	over := now.Sub(jr.Finished).Round(time.Second)
	switch {
	case out.OK:
		log.Info("upload succeeded", "attempt", jr.Attempts, "status", out.Status, "size_bytes", out.Size, "took", now.Sub(start).Round(time.Millisecond).String())
		return j.decide(jr, stateUploaded, "", out.Status)
	case !out.Retry && strings.Contains(out.Reason, "missing"):
		return j.decide(jr, stateFailed, rtm.FailureRecordingMissing.Reason(out.Reason), out.Status)
	case !out.Retry:
		return j.decide(jr, stateFailed, rtm.FailureUploadRefused.Reason(out.Reason), out.Status)
	}
	delay := max(backoff.Delay(jr.Attempts, j.cfg.BaseBackoff, j.cfg.MaxBackoff, nil), out.RetryAfter)
	switch {
	case jr.Attempts >= j.cfg.MaxAttempts:
		return j.decide(jr, stateFailed, rtm.FailureUploadUnreachable.Reason(fmt.Sprintf("%s after %d attempts over %s", out.Reason, jr.Attempts, over)), out.Status)
	case now.Add(delay).After(jr.Finished.Add(j.cfg.Deadline)):
		return j.decide(jr, stateFailed, rtm.FailureUploadUnreachable.Reason(fmt.Sprintf("%s; gave up after %d attempts over %s (deadline %s)", out.Reason, jr.Attempts, over, j.cfg.Deadline)), out.Status)
	}
	retry := jr.clone()
	retry.Reason, retry.NextAttempt = out.Reason, now.Add(delay)
	if err := j.cfg.Ledger.Update(func(tx *ledger.Tx) error { return saveJourney(tx, retry) }); err != nil {
		return err
	}
	*jr = *retry
	log.Info("upload attempt failed, will retry", "attempt", jr.Attempts, "status", out.Status,
		"reason", out.Reason, "retry_in", delay.Round(time.Millisecond).String())
	return nil
}

// decide ends a journey: its outcome and its final event (STOPPED or
// FAILED) commit together, so the outcome is reported exactly once, under
// one id, whatever dies after.
func (j *Journeys) decide(jr *journey, st state, reason string, status int) error {
	next := jr.clone()
	next.State, next.Reason, next.Status, next.Decided = st, reason, status, j.cfg.Now()
	rs := rtm.RecordingStopped
	if st == stateFailed {
		rs = rtm.RecordingFailed
	}
	msg, ev, err := recordingEvent(next, rs, 0)
	if err != nil {
		return err
	}
	var after func()
	err = j.cfg.Ledger.Update(func(tx *ledger.Tx) error {
		if err := saveJourney(tx, next); err != nil {
			return err
		}
		after, err = j.cfg.Outbox.Stage(tx, ev)
		return err
	})
	if err != nil {
		return err
	}
	wasPending := jr.State == stateFinished
	*jr = *next
	after()
	if wasPending {
		j.m.pending.Dec()
	}
	j.m.outcomes.WithLabelValues(strings.ToLower(string(rs))).Inc()
	log := j.log.With("recording_id", jr.ID, "session_id", jr.Route.SessionID)
	if st == stateFailed {
		log.Warn("recording failed", "reason", reason, "attempts", jr.Attempts,
			"duration_ms", jr.Manifest.DurationMS, "size_bytes", jr.Manifest.SizeBytes, "file", j.mediaPath(jr))
	} else {
		log.Info("recording delivered", "duration_ms", jr.Manifest.DurationMS, "size_bytes", jr.Manifest.SizeBytes, "attempts", jr.Attempts, "repaired", jr.Repaired)
	}
	if j.cfg.Announce != nil {
		j.cfg.Announce(jr.ID, msg)
	}
	if st == stateUploaded && j.cfg.Retention <= 0 {
		return j.cleanUp(jr)
	}
	return nil
}

// cleanUp removes an uploaded recording's file, then its journey, once the
// retention is over: nothing of it is left to slow down later starts.
func (j *Journeys) cleanUp(jr *journey) error {
	if now := j.cfg.Now(); jr.Decided.Add(j.cfg.Retention).After(now) {
		return nil
	}
	for _, path := range []string{j.mediaPath(jr), j.manifestPath(jr)} {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("delivery: remove uploaded file: %w", err)
		}
	}
	if err := j.cfg.Ledger.Update(func(tx *ledger.Tx) error { return deleteJourney(tx, jr.ID) }); err != nil {
		return err
	}
	jr.FileDeleted = true
	jr.State = "" // nothing more to do
	return nil
}
