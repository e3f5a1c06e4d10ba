// Package upgrade hands what rtmrec's first release left in a data
// directory over to this release, once, at start: its queued uploads
// become recording journeys (package delivery), its undelivered webhook
// events go into the ledger's outbox (package webhook) with their ids and
// bodies, its dead letters among the outbox's, and the recordings a crash
// cut off are repaired and delivered like this release's.
//
// The first release kept its work in files: uploads/<hash>.job,
// webhooks/<seq>.evt (dead letters in webhooks/dead) and
// recordings/<recording_id>.json. Each file is removed only after what
// replaces it is committed, together with a marker in the ledger; a start
// after a crash in between finds the marker and only removes the file. So
// a kill -9 at any point neither loses nor doubles anything, and a start
// with nothing left to hand over does nothing.
package upgrade

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rtmrec/rtmrec/delivery"
	"github.com/rtmrec/rtmrec/internal/ledger"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/webhook"
)

// bucketDone holds a marker for everything handed over, committed with it.
var bucketDone = []byte("upgrade_first_release")

// Config says where the first release's files are and what takes them.
type Config struct {
	// DataDir is the data directory both releases use.
	DataDir string
	// Ledger, Outbox: this release's, open on DataDir. Run must come
	// before delivery.New (which moves aside media files no journey knows)
	// and before Outbox.Run.
	Ledger *ledger.Ledger
	Outbox *webhook.Outbox
	// Logger gets one line with the counts when something was handed over,
	// and every file set aside; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// AfterCommit, if set, is called after the n-th hand-over is committed
	// and before its old file is removed: a test seam to stop the process
	// at the worst moment (rtmrec sets it only from
	// RTMREC_TEST_UPGRADE_KILL_AFTER, see cmd/rtmrec).
	AfterCommit func(n int)
}

// Report counts what Run handed over.
type Report struct {
	// Events are webhook events moved into the outbox, DeadLetters those
	// the first release had given up on, now among the outbox's.
	Events, DeadLetters int
	// Uploads are recordings whose queued upload is now a journey's.
	Uploads int
	// Outcomes are decided recordings: reported now (STOPPED or FAILED
	// staged) or already reported and kept (a failed file, an uploaded one
	// within its retention).
	Outcomes int
	// Repairs are recordings a crash cut off, repaired and uploaded next.
	Repairs int
	// SetAside are unreadable files renamed to *.corrupt.
	SetAside int
}

// nothing says whether nothing was handed over.
func (r Report) nothing() bool { return r == Report{} }

// Run hands everything the first release left in cfg.DataDir over to the
// ledger. Its error is a ledger or file-system failure: the files not yet
// handed over are still in place for the next start, and the caller must
// not go on (delivery.New would move their media files aside).
func Run(cfg Config) (Report, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	u := &upgrader{cfg: cfg, log: cfg.Logger}
	err := u.run()
	if !u.report.nothing() {
		u.log.Info("upgrade: the first release's queued work is now in the ledger",
			"webhook_events", u.report.Events, "dead_letters", u.report.DeadLetters, "uploads", u.report.Uploads, "outcomes", u.report.Outcomes,
			"repairs", u.report.Repairs, "set_aside", u.report.SetAside)
	}
	if err != nil {
		return u.report, fmt.Errorf("upgrade from the first release: %w", err)
	}
	return u.report, nil
}

type upgrader struct {
	cfg       Config
	log       *slog.Logger
	report    Report
	committed int
}

func (u *upgrader) dir(name string) string { return filepath.Join(u.cfg.DataDir, name) }

func (u *upgrader) run() error {
	// Events first: a session's old events go ahead of what its
	// recordings report now.
	if err := u.events(); err != nil {
		return err
	}
	manifests, err := u.manifests()
	if err != nil {
		return err
	}
	if err := u.uploads(manifests); err != nil {
		return err
	}
	if err := u.leftovers(manifests); err != nil {
		return err
	}
	for _, d := range []string{dirUploads, filepath.Join(dirWebhooks, dirDead), dirWebhooks} {
		removeTemps(u.dir(d))
		_ = os.Remove(u.dir(d)) // only once empty: set-aside files stay
	}
	return nil
}

// aside logs the unreadable files a reader set aside.
func (u *upgrader) aside(bad []error) {
	for _, err := range bad {
		u.report.SetAside++
		u.log.Error("upgrade: unreadable file of the first release set aside (renamed *.corrupt); what it held is not handed over", "error", err)
	}
}

// handOver commits stage (with marker) unless marker is already there,
// then removes the old files: what replaces them is durable by then.
// done says whether stage ran (false: an earlier start did it).
func (u *upgrader) handOver(marker string, stage func(tx *ledger.Tx) (after func(), err error), old ...string) (done bool, err error) {
	var afters []func()
	err = u.cfg.Ledger.Update(func(tx *ledger.Tx) error {
		afters, done = nil, false
		b, err := ledger.Bucket(tx, bucketDone)
		if err != nil {
			return err
		}
		if b.Get([]byte(marker)) != nil {
			return nil
		}
		after, err := stage(tx)
		if err != nil {
			return err
		}
		afters, done = append(afters, after), true
		return b.Put([]byte(marker), []byte(u.cfg.Now().UTC().Format(time.RFC3339Nano)))
	})
	if err != nil {
		return false, err
	}
	for _, f := range afters {
		f()
	}
	if done {
		u.committed++
		if u.cfg.AfterCommit != nil {
			u.cfg.AfterCommit(u.committed)
		}
	}
	for _, path := range old {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return done, fmt.Errorf("remove %s: %w", path, err)
		}
	}
	return done, nil
}

// events moves the undelivered webhook events into the outbox, in the
// order the first release queued them, and its dead letters among this
// release's (where /admin/dead-letters lists and replays them).
func (u *upgrader) events() error {
	for _, dead := range []bool{false, true} {
		dir := u.dir(dirWebhooks)
		if dead {
			dir = filepath.Join(dir, dirDead)
		}
		evs, bad, err := readDir(dir, eventExt, all, parseEvent)
		u.aside(bad)
		if err != nil {
			return err
		}
		sort.SliceStable(evs, func(i, k int) bool { return evs[i].v.Seq < evs[k].v.Seq })
		for _, f := range evs {
			ev := f.v
			done, err := u.handOver("event/"+ev.ID, func(tx *ledger.Tx) (func(), error) {
				return u.cfg.Outbox.Import(tx, webhook.Queued{
					ID: ev.ID, Key: ev.Key, URL: ev.URL, Body: ev.Body, Created: ev.Created, Attempts: ev.Attempts,
					Dead: dead, LastError: ev.LastError,
				})
			}, f.path)
			if err != nil {
				return fmt.Errorf("webhook event %s: %w", ev.ID, err)
			}
			switch {
			case done && dead:
				u.report.DeadLetters++
			case done:
				u.report.Events++
			}
		}
	}
	return nil
}

// manifests reads the first release's manifests, by recording id.
func (u *upgrader) manifests() (map[string]file[firstManifest], error) {
	notSigned := func(name string) bool { return !strings.HasSuffix(name, signedExt) }
	list, bad, err := readDir(u.dir(dirRecordings), manifestExt, notSigned, parseManifest)
	u.aside(bad)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]file[firstManifest], len(list))
	for _, f := range list {
		byID[f.v.RecordingID] = f
	}
	return byID, nil
}

// uploads hands every upload job over: pending ones to be uploaded,
// decided ones with their outcome (reported now if it never was).
func (u *upgrader) uploads(manifests map[string]file[firstManifest]) error {
	jobs, bad, err := readDir(u.dir(dirUploads), jobExt, all, parseJob)
	u.aside(bad)
	if err != nil {
		return err
	}
	for _, f := range jobs {
		j := f.v
		old := []string{f.path}
		var m *recorder.Manifest
		if fm, ok := manifests[j.Job.ID]; ok {
			m = &fm.v.Manifest
			old = append(old, fm.path)
			delete(manifests, j.Job.ID)
		}
		h := handoverOf(j, m)
		media := filepath.Join(u.dir(dirRecordings), h.Manifest.File)
		if h.State == delivery.HandedUploaded && h.Reported && !exists(media) {
			// Uploaded, reported, file gone: nothing is left to do.
			if _, err := u.handOver("recording/"+j.Job.ID, noop, old...); err != nil {
				return fmt.Errorf("upload of %s: %w", j.Job.ID, err)
			}
			continue
		}
		done, err := u.handOver("recording/"+j.Job.ID, func(tx *ledger.Tx) (func(), error) {
			return delivery.Adopt(tx, u.cfg.Outbox, h)
		}, old...)
		if err != nil {
			return fmt.Errorf("upload of %s: %w", j.Job.ID, err)
		}
		switch {
		case done && h.State == delivery.HandedQueued:
			u.report.Uploads++
		case done:
			u.report.Outcomes++
		}
	}
	return nil
}

// leftovers hands over the recordings that have a manifest but no upload
// job: those a crash cut off (repaired, and their session, which died with
// the process, gets its TERMINATED), and finished ones that were never
// queued. The first release reported those FAILED when it could not queue
// them, or died just before it could: either way they are FAILED now (the
// customer may hear it twice, never a STOPPED after a FAILED), and the
// file stays for the operator. A finished one whose file is gone was
// delivered.
func (u *upgrader) leftovers(manifests map[string]file[firstManifest]) error {
	ids := make([]string, 0, len(manifests))
	for id := range manifests {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		f := manifests[id]
		m := f.v
		h := delivery.Handover{Route: m.route.route(), Manifest: &m.Manifest, State: delivery.HandedCut}
		if m.State != recorder.StateRecording {
			if !exists(filepath.Join(u.dir(dirRecordings), m.File)) {
				continue // uploaded and removed by the first release
			}
			if job := filepath.Join(u.dir(dirUploads), jobName(id)); exists(job + asideExt) {
				// Its job was unreadable: whether it was uploaded is unknown.
				continue
			}
			h.State, h.Since, h.Reason = delivery.HandedFailed, u.cfg.Now(), reasonNeverQueued
			if m.StoppedAt != nil {
				h.Since = *m.StoppedAt
			}
		}
		done, err := u.handOver("recording/"+id, func(tx *ledger.Tx) (func(), error) {
			after, err := delivery.Adopt(tx, u.cfg.Outbox, h)
			if err != nil || h.State != delivery.HandedCut {
				return after, err
			}
			lost, err := u.sessionLost(tx, h.Route)
			if err != nil {
				return nil, err
			}
			return func() { after(); lost() }, nil
		}, f.path)
		if err != nil {
			return fmt.Errorf("recording %s: %w", id, err)
		}
		switch {
		case done && h.State == delivery.HandedCut:
			u.report.Repairs++
		case done:
			u.report.Outcomes++
			u.log.Warn("upgrade: a finished recording of the first release was never queued for upload; reported FAILED, its file is kept",
				"recording_id", id, "session_id", m.route.SessionID, "file", filepath.Join(u.dir(dirRecordings), m.File))
		}
	}
	return nil
}

// sessionLost stages, once per session, the TERMINATED (TERM_BY_ERROR) the
// webhook of a session that died with the first release never got, ahead
// of its recordings' outcomes, as this release does for its own crashes.
func (u *upgrader) sessionLost(tx *ledger.Tx, r delivery.Route) (after func(), err error) {
	none := func() {}
	if r.WebhookURL == "" {
		return none, nil
	}
	b, err := ledger.Bucket(tx, bucketDone)
	if err != nil {
		return nil, err
	}
	marker := []byte("session/" + r.OrderKey)
	if b.Get(marker) != nil {
		return none, nil
	}
	m, err := rtm.NewMessage(rtm.TypeSessionState, r.ClientID, r.SessionID, rtm.SessionState{
		State: rtm.StateTerminated, TerminationCause: rtm.CauseError,
		Reason: "the server stopped unexpectedly; a recording of the session is finished after its restart",
	})
	if err != nil {
		return nil, err
	}
	payload, err := rtm.WebhookPayload(m, r.Identity)
	if err != nil {
		return nil, err
	}
	after, err = u.cfg.Outbox.Stage(tx, webhook.Event{
		ID:  webhook.EventID("upgrade", "session", r.OrderKey, string(rtm.StateTerminated)),
		Key: r.OrderKey, URL: r.WebhookURL, Payload: payload,
	})
	if err != nil {
		return nil, err
	}
	return after, b.Put(marker, []byte{1})
}

// reasonNeverQueued is the FAILED reason of a finished recording the first
// release never queued for upload.
var reasonNeverQueued = rtm.FailureRecordingFailed.Reason("the server finished the file but never queued its upload (it stopped in between, or could not queue it); the file is kept on the server")

// handoverOf is the hand-over of an upload job; m is its manifest, if the
// first release's manifest file is still there.
func handoverOf(j *firstJob, m *recorder.Manifest) delivery.Handover {
	r := j.meta.Route
	r.UploadURL = j.Job.URL
	if m == nil {
		m = &recorder.Manifest{
			RecordingID: j.Job.ID, SessionID: r.SessionID, ClientID: r.ClientID, Identity: r.Identity,
			Format: recorder.Format(j.meta.Format), ContentType: j.Job.ContentType,
			File: filepath.Base(j.Job.File), State: recorder.StateFinished,
			DurationMS: j.meta.DurationMS, SizeBytes: j.meta.SizeBytes,
		}
	}
	h := delivery.Handover{
		Route: r.route(), Manifest: m, Reported: j.Acked,
		Attempts: j.Attempts, Status: j.Status, Reason: j.Reason,
	}
	switch j.State {
	case "succeeded":
		h.State, h.Since, h.Reason = delivery.HandedUploaded, j.Decided, ""
	case "failed":
		h.State, h.Since, h.Reason = delivery.HandedFailed, j.Decided, failureReason(j.Reason)
	default:
		h.State, h.Since, h.Reported = delivery.HandedQueued, j.Created, false
	}
	return h
}

// failureReason words a first-release upload failure as this release's
// FAILED reasons are worded (a failure code first).
func failureReason(reason string) string {
	switch {
	case strings.Contains(reason, "gave up after") || strings.Contains(reason, "deadline of"):
		return rtm.FailureUploadUnreachable.Reason(reason)
	case strings.Contains(reason, "no such file") || strings.Contains(reason, "missing"):
		return rtm.FailureRecordingMissing.Reason(reason)
	}
	return rtm.FailureUploadRefused.Reason(reason)
}

func noop(*ledger.Tx) (func(), error) { return func() {}, nil }

func all(string) bool { return true }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// removeTemps removes what an interrupted write of the first release left
// (".<name>.tmp…"): the file it was replacing is intact.
func removeTemps(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if n := e.Name(); strings.HasPrefix(n, ".") && strings.Contains(n, ".tmp") {
			_ = os.Remove(filepath.Join(dir, n))
		}
	}
}
