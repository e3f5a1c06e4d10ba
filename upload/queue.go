// Package upload is the durable upload queue: finished recordings are
// jobs on disk, uploaded by HTTP PUT to pre-signed URLs or to s3://bucket/key
// with the server's own credentials, retried with backoff, and reported
// exactly once per decision (again after a restart until acknowledged).
package upload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtmrec/rtmrec/internal/backoff"
	"github.com/rtmrec/rtmrec/internal/netguard"
	"github.com/rtmrec/rtmrec/internal/workpool"
)

// Config configures a Queue. Zero durations and counts take the defaults
// documented on each field.
type Config struct {
	// Dir holds the job state files (e.g. <data>/uploads); created if missing.
	Dir string
	// Guard checks upload URLs at Enqueue and every connection. Required.
	Guard *netguard.Guard
	// AcceptAny2xx counts any 2xx as success; by default only 200 does
	// (contract §4).
	AcceptAny2xx bool
	// MaxAttempts bounds the attempts per job; default 10.
	MaxAttempts int
	// Deadline bounds the total time per job from Enqueue; default 24h.
	Deadline time.Duration
	// RequestTimeout fails an attempt when the body makes no progress, or
	// no response comes, for this long; default 10m. It is an idle timeout,
	// not a total one, so large files on slow links still go through.
	RequestTimeout time.Duration
	// BaseBackoff and MaxBackoff shape the retry delays (full jitter);
	// defaults 1s and 5m. A longer Retry-After from the target wins.
	BaseBackoff, MaxBackoff time.Duration
	// Retention keeps the file this long after a successful upload; 0
	// deletes it at once. The file is never deleted after a failure.
	Retention time.Duration
	// KeepRecords keeps the record of a succeeded job this long after its
	// file is gone, so a repeated Enqueue of the same ID (e.g. a recorder
	// recovering after a crash) is still recognised; default 7 days.
	KeepRecords time.Duration
	// Workers is the number of concurrent uploads; default 4.
	Workers int
	// S3 configures s3:// uploads.
	S3 S3Config
	// Logger receives the queue's logs; nil discards them.
	Logger *slog.Logger
	// Metrics registers the queue's metrics; nil skips them.
	Metrics prometheus.Registerer
	// OnResult is called once per job when it is finally decided, from a
	// worker goroutine. A decision whose OnResult had not returned before a
	// crash or shutdown is reported again by the next Run, so OnResult
	// must tolerate a repeat (at-least-once).
	OnResult func(Result)
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
	def(&c.RequestTimeout, 10*time.Minute)
	def(&c.BaseBackoff, time.Second)
	def(&c.MaxBackoff, 5*time.Minute)
	def(&c.KeepRecords, 7*24*time.Hour)
	if c.MaxBackoff < c.BaseBackoff {
		c.MaxBackoff = c.BaseBackoff
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// enqueueCheckTimeout bounds the DNS lookup of the URL check in Enqueue,
// which has no context of its own.
const enqueueCheckTimeout = 10 * time.Second

// storeRetry is how soon a job whose state could not be written is tried
// again (disk full, I/O error).
const storeRetry = 5 * time.Second

// Queue is a durable upload queue. Create it with New, feed it with
// Enqueue, run it with Run, stop it with Drain and by cancelling Run's
// context.
type Queue struct {
	cfg   Config
	log   *slog.Logger
	store store
	m     *metrics
	http  *http.Client
	s3    s3Client

	mu   sync.Mutex
	jobs map[string]*entry    // every known job, by ID
	due  workpool.Due[*entry] // jobs with a next action, earliest first; busy jobs are not in it
	wake chan struct{}        // tells the dispatcher the heap changed

	life *workpool.Lifecycle
}

// entry is a job in memory. While a worker holds it (not in the heap) only
// that worker touches rec.
type entry struct {
	rec *record
}

// New loads the jobs left in cfg.Dir by an earlier process and returns a
// queue ready for Enqueue and Run.
func New(cfg Config) (*Queue, error) {
	if cfg.Dir == "" {
		return nil, errors.New("upload: Config.Dir is required")
	}
	if cfg.Guard == nil {
		return nil, errors.New("upload: Config.Guard is required")
	}
	cfg.setDefaults()
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("upload: create job dir: %w", err)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	q := &Queue{
		cfg:   cfg,
		log:   cfg.Logger,
		store: store{dir: cfg.Dir},
		m:     m,
		http:  cfg.Guard.HTTPClient(0), // timeouts are per attempt, see putHTTP
		s3:    s3Client{cfg: cfg.S3},
		jobs:  map[string]*entry{},
		wake:  make(chan struct{}, 1),
		life:  workpool.New(),
	}
	recs, bad, err := q.store.load()
	if err != nil {
		return nil, err
	}
	for _, b := range bad {
		q.log.Error("upload: unreadable job file set aside", "error", b)
	}
	for _, r := range recs {
		e := &entry{rec: r}
		q.jobs[r.Job.ID] = e
		if r.State == statePending {
			q.m.pending.Inc()
		}
		q.schedule(e, time.Now())
	}
	return q, nil
}

// Enqueue adds a job. When it returns nil the job is on disk (fsync'd) and
// will be uploaded, even across a crash. It is idempotent per ID: a job
// already known (pending, succeeded or failed) is left as it is and never
// uploaded twice. The URL is checked with the guard; a URL whose host
// cannot be resolved right now is accepted and checked again at dial time.
func (q *Queue) Enqueue(job Job) error {
	switch {
	case job.ID == "":
		return errors.New("upload: job without ID")
	case !filepath.IsAbs(job.File):
		return fmt.Errorf("upload: job %s: file path %q is not absolute", job.ID, job.File)
	case job.URL == "":
		return fmt.Errorf("upload: job %s: no URL", job.ID)
	}
	if q.known(job.ID) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), enqueueCheckTimeout)
	_, err := q.cfg.Guard.CheckURL(ctx, job.URL, "https", "http", "s3")
	cancel()
	if err != nil && !errors.Is(err, netguard.ErrResolve) {
		return fmt.Errorf("upload: job %s: %w", job.ID, err)
	}
	fi, err := os.Stat(job.File)
	if err != nil {
		return fmt.Errorf("upload: job %s: %w", job.ID, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("upload: job %s: %s is not a regular file", job.ID, job.File)
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.jobs[job.ID]; ok {
		return nil
	}
	now := time.Now()
	r := &record{Job: job, Created: now, Size: fi.Size()}
	// Saving under the lock keeps two concurrent Enqueues of one ID from
	// both writing; uploads are rare enough that the fsync does not matter.
	if err := q.store.save(r); err != nil {
		return err
	}
	e := &entry{rec: r}
	q.jobs[job.ID] = e
	q.m.pending.Inc()
	q.schedule(e, now)
	q.log.Info("upload queued", "recording_id", job.ID, "url", netguard.SecretURL(job.URL), "size", fi.Size())
	return nil
}

func (q *Queue) known(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.jobs[id]
	return ok
}

// Run uploads queued jobs (those loaded by New and those enqueued since)
// with Config.Workers workers, until ctx is cancelled or Drain is called.
// It first reports results decided but not acknowledged before a restart.
// It returns after every worker has exited; an attempt cut off by ctx is
// not counted and stays queued.
func (q *Queue) Run(ctx context.Context) error {
	return workpool.Run(ctx, q.life, q.cfg.Workers, q.dispatch, q.step, func() {
		// Idle keep-alive connections own goroutines; close them so nothing
		// outlives Run.
		q.http.CloseIdleConnections()
		q.s3.closeIdle()
	})
}

// Drain stops new attempts and waits, up to ctx, for the attempts in
// flight to finish (and their results to be reported). Jobs not started
// stay on disk for the next process. After Drain, Run returns.
func (q *Queue) Drain(ctx context.Context) { q.life.Drain(ctx) }

// dispatch hands due jobs to the workers, one at a time, until ctx is done
// or the queue drains. It is the only reader of the heap's head.
func (q *Queue) dispatch(ctx context.Context, work chan<- *entry) {
	workpool.Dispatch(ctx, q.life, &q.mu, &q.due, q.wake, time.Now, nil,
		func(e *entry) { q.schedule(e, time.Now()) }, work)
}

// schedule puts e in the heap at its next action, if it has one. Callers
// hold q.mu.
func (q *Queue) schedule(e *entry, now time.Time) {
	at, ok := q.nextAction(e.rec, now)
	if !ok {
		return
	}
	q.due.Push(at, e)
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// nextAction says when the job next needs a worker: an attempt, a report,
// deleting the file after Retention, or forgetting the record. Failed and
// reported jobs need nothing more: their record and file stay for the
// operator.
func (q *Queue) nextAction(r *record, now time.Time) (time.Time, bool) {
	switch {
	case r.State == statePending:
		return r.NextAttempt, true
	case !r.Acked:
		return now, true
	case r.State == stateSucceeded && !r.FileDeleted:
		return r.Decided.Add(q.cfg.Retention), true
	case r.State == stateSucceeded:
		return r.Decided.Add(q.cfg.Retention + q.cfg.KeepRecords), true
	}
	return time.Time{}, false
}

// step does every action of e that is due now (at most one attempt), then
// reschedules it.
func (q *Queue) step(ctx context.Context, e *entry) {
	r := e.rec
	log := q.log.With("recording_id", r.Job.ID, "url", netguard.SecretURL(r.Job.URL))
	attempted := false
	for ctx.Err() == nil {
		now := time.Now()
		at, ok := q.nextAction(r, now)
		if !ok || at.After(now) {
			break
		}
		if r.State == statePending && (attempted || q.life.IsDraining()) {
			break
		}
		var err error
		switch {
		case r.State == statePending:
			attempted = true
			err = q.attempt(ctx, r, log)
		case r.State == stateSucceeded && !r.FileDeleted && !r.Decided.Add(q.cfg.Retention).After(now):
			// Before the report, so that with no retention the file is gone
			// by the time anyone hears of the success.
			err = q.deleteFile(r, log)
		case !r.Acked:
			err = q.report(r)
		default:
			if err = q.store.remove(r.Job.ID); err == nil {
				q.mu.Lock()
				delete(q.jobs, r.Job.ID)
				q.mu.Unlock()
				return
			}
		}
		if err != nil {
			log.Error("upload: job state not saved, retrying", "error", err)
			q.mu.Lock()
			q.due.Push(now.Add(storeRetry), e)
			q.mu.Unlock()
			return
		}
	}
	q.mu.Lock()
	q.schedule(e, time.Now())
	q.mu.Unlock()
}

// attempt makes one upload attempt and records its outcome. The attempt is
// counted on disk before it starts, so a process that dies mid-upload
// still uses up attempts rather than retrying forever.
func (q *Queue) attempt(ctx context.Context, r *record, log *slog.Logger) error {
	r.Attempts++
	if err := q.store.save(r); err != nil {
		r.Attempts--
		return err
	}
	start := time.Now()
	q.m.inFlight.Inc()
	out := q.upload(ctx, r)
	q.m.inFlight.Dec()
	elapsed := time.Since(start)
	now := time.Now()

	if !out.ok && ctx.Err() != nil {
		// Shutdown, not the target's fault: the attempt does not count.
		r.Attempts--
		log.Info("upload interrupted by shutdown", "attempt", r.Attempts+1)
		return q.store.save(r)
	}
	r.Status = out.status
	outcome := "retry"
	switch {
	case out.ok:
		outcome = "success"
		r.State, r.Reason, r.Size, r.Decided = stateSucceeded, "", out.size, now
	case !out.retry:
		outcome = "failure"
		r.State, r.Reason, r.Decided = stateFailed, out.reason, now
	default:
		delay := max(backoff.Delay(r.Attempts, q.cfg.BaseBackoff, q.cfg.MaxBackoff, nil), out.retryAfter)
		switch {
		case r.Attempts >= q.cfg.MaxAttempts:
			outcome = "failure"
			r.State, r.Decided = stateFailed, now
			r.Reason = fmt.Sprintf("gave up after %d attempts: %s", r.Attempts, out.reason)
		case now.Add(delay).After(r.Created.Add(q.cfg.Deadline)):
			outcome = "failure"
			r.State, r.Decided = stateFailed, now
			r.Reason = fmt.Sprintf("deadline of %s reached after %d attempts: %s", q.cfg.Deadline, r.Attempts, out.reason)
		default:
			r.Reason, r.NextAttempt = out.reason, now.Add(delay)
		}
	}
	q.m.attempts.WithLabelValues(outcome).Inc()
	q.m.duration.WithLabelValues(outcome).Observe(elapsed.Seconds())
	if err := q.store.save(r); err != nil {
		return err
	}
	switch r.State {
	case stateSucceeded:
		q.m.pending.Dec()
		q.m.results.WithLabelValues("success").Inc()
		log.Info("upload succeeded", "attempt", r.Attempts, "status", r.Status, "size", r.Size, "duration", elapsed)
	case stateFailed:
		q.m.pending.Dec()
		q.m.results.WithLabelValues("failure").Inc()
		log.Warn("upload failed", "attempt", r.Attempts, "status", r.Status, "reason", r.Reason)
	default:
		log.Info("upload attempt failed, will retry", "attempt", r.Attempts, "status", r.Status,
			"reason", r.Reason, "retry_in", r.NextAttempt.Sub(now).Round(time.Millisecond))
	}
	return nil
}

// report hands the decision to OnResult and then records that it was
// acknowledged; a crash in between reports it again on the next Run.
func (q *Queue) report(r *record) error {
	if q.cfg.OnResult != nil {
		q.cfg.OnResult(r.result())
	}
	r.Acked = true
	return q.store.save(r)
}

// deleteFile removes the uploaded file once Retention has passed.
func (q *Queue) deleteFile(r *record, log *slog.Logger) error {
	if err := os.Remove(r.Job.File); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("upload: delete uploaded file: %w", err)
	}
	r.FileDeleted = true
	log.Debug("uploaded file deleted", "file", r.Job.File)
	return q.store.save(r)
}

// outcome is the result of one attempt.
type outcome struct {
	ok         bool
	retry      bool          // worth another attempt
	status     int           // HTTP status, 0 if none
	size       int64         // bytes uploaded, on success
	reason     string        // why it failed; never contains a query string
	retryAfter time.Duration // from a Retry-After header
}

func (q *Queue) upload(ctx context.Context, r *record) outcome {
	if strings.HasPrefix(r.Job.URL, "s3://") {
		return q.putS3(ctx, r)
	}
	return q.putHTTP(ctx, r)
}
