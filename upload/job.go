package upload

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rtmrec/rtmrec/internal/durable"
)

// Job is one file to upload.
type Job struct {
	// ID identifies the job (the recording id); Enqueue is idempotent per ID.
	ID string `json:"id"`
	// File is the absolute path of the finished file.
	File string `json:"file"`
	// ContentType is sent as the Content-Type of the upload.
	ContentType string `json:"content_type"`
	// URL is an https (or http) pre-signed PUT URL, or s3://bucket/key. Its
	// query string is a secret: it is logged only through netguard.Redact.
	URL string `json:"url"`
	// Meta is opaque to the queue and handed back in Result (session and
	// client ids, webhook URL, ...).
	Meta json.RawMessage `json:"meta,omitempty"`
}

// Result is the final outcome of a job, given to Config.OnResult.
type Result struct {
	Job Job
	// OK is true when the target accepted the file.
	OK bool
	// Status is the last HTTP status seen (0 if none, e.g. network errors).
	Status int
	// Reason says why the job failed; empty on success.
	Reason string
	// Attempts is the number of upload attempts made.
	Attempts int
	// Size is the size of the uploaded file in bytes.
	Size int64
}

// state is where a job is in its life; the zero value is pending.
type state string

const (
	statePending   state = ""
	stateSucceeded state = "succeeded"
	stateFailed    state = "failed"
)

// record is a job's durable state, one JSON file per job in Config.Dir.
// Every transition is written atomically before it takes effect, so that
// after a crash a succeeded upload is never repeated and a decided result
// is reported again until OnResult has returned once (Acked).
type record struct {
	Job         Job       `json:"job"`
	State       state     `json:"state,omitempty"`
	Created     time.Time `json:"created"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Status      int       `json:"status,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	Size        int64     `json:"size,omitempty"`
	Decided     time.Time `json:"decided,omitzero"`
	Acked       bool      `json:"acked,omitempty"`
	FileDeleted bool      `json:"file_deleted,omitempty"`
}

func (r *record) result() Result {
	return Result{
		Job: r.Job, OK: r.State == stateSucceeded, Status: r.Status,
		Reason: r.Reason, Attempts: r.Attempts, Size: r.Size,
	}
}

// store keeps records as files named by a hash of the job id, so any id
// (however long, whatever characters) maps to one safe file name.
type store struct{ dir string }

const recordExt = ".job"

func (s store) path(id string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(s.dir, hex.EncodeToString(sum[:16])+recordExt)
}

func (s store) save(r *record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("upload: encode job %s: %w", r.Job.ID, err)
	}
	if err := durable.WriteFile(s.path(r.Job.ID), data); err != nil {
		return fmt.Errorf("upload: save job %s: %w", r.Job.ID, err)
	}
	return nil
}

func (s store) remove(id string) error {
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("upload: remove job %s: %w", id, err)
	}
	return durable.SyncDir(s.dir)
}

// load reads every record in the directory. Leftover temp files of an
// interrupted write are removed; unreadable records are renamed aside
// (never deleted) and reported in bad.
func (s store) load() (recs []*record, bad []string, err error) {
	recs, bad, err = durable.LoadJSON(s.dir, recordExt, func(r *record) error {
		if r.Job.ID == "" {
			return errors.New("no job id")
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("upload: read job dir: %w", err)
	}
	return recs, bad, nil
}
