package upgrade

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rtmrec/rtmrec/delivery"
	"github.com/rtmrec/rtmrec/recorder"
)

// The first release's files, as its packages upload, webhook and recorder
// wrote them (commit ac102c5). Only what the upgrade needs is read.

// Directories of the first release inside the data directory.
const (
	dirUploads    = "uploads"    // one <hash>.job per upload
	dirWebhooks   = "webhooks"   // one <seq>.evt per undelivered event
	dirDead       = "dead"       // in webhooks/: the events given up on, in the same format
	dirRecordings = "recordings" // media files and their <recording_id>.json manifests
)

const (
	jobExt      = ".job"
	eventExt    = ".evt"
	manifestExt = ".json"
	// signedExt ends this release's signed manifests, which are not the
	// first release's.
	signedExt = ".manifest.json"
	// asideExt is added to an unreadable file's name (the first release
	// used it for the files it could not read).
	asideExt = ".corrupt"
)

// firstRoute is the first release's session.Route: where a recording goes
// and whom its outcome concerns.
type firstRoute struct {
	Tenant     string `json:"tenant,omitempty"`
	SessionID  string `json:"session_id"`
	ClientID   string `json:"client_id,omitempty"`
	Identity   string `json:"identity,omitempty"`
	UploadURL  string `json:"upload_url"`
	WebhookURL string `json:"webhook_url,omitempty"`
}

// route is r as this release's delivery knows it.
func (r firstRoute) route() delivery.Route {
	return delivery.Route{
		Tenant: r.Tenant, SessionID: r.SessionID, ClientID: r.ClientID, Identity: r.Identity,
		UploadURL: r.UploadURL, WebhookURL: r.WebhookURL, OrderKey: delivery.OrderKey(r.Tenant, r.SessionID),
	}
}

// firstJob is one upload of the first release's queue: upload.record with
// its upload.Job, and the job's Meta as cmd/rtmrec's delivery wrote it.
type firstJob struct {
	Job struct {
		ID          string          `json:"id"`
		File        string          `json:"file"`
		ContentType string          `json:"content_type"`
		URL         string          `json:"url"`
		Meta        json.RawMessage `json:"meta,omitempty"`
	} `json:"job"`
	State       string    `json:"state,omitempty"` // "" (pending), "succeeded" or "failed"
	Created     time.Time `json:"created"`
	Attempts    int       `json:"attempts"`
	Status      int       `json:"status,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	Size        int64     `json:"size,omitempty"`
	Decided     time.Time `json:"decided,omitzero"`
	Acked       bool      `json:"acked,omitempty"`
	FileDeleted bool      `json:"file_deleted,omitempty"`

	meta firstJobMeta
}

// firstJobMeta is what an upload job carried so that a later process could
// report its result.
type firstJobMeta struct {
	Route      firstRoute `json:"route"`
	Format     string     `json:"format"`
	DurationMS int64      `json:"duration_ms"`
	SizeBytes  int64      `json:"size_bytes"`
}

// parseJob reads a job file's content.
func parseJob(data []byte) (*firstJob, error) {
	j := new(firstJob)
	if err := json.Unmarshal(data, j); err != nil {
		return nil, fmt.Errorf("not an upload job: %w", err)
	}
	switch {
	case j.Job.ID == "":
		return nil, errors.New("the job has no recording id")
	case j.Job.URL == "":
		return nil, errors.New("the job has no upload URL")
	case filepath.Base(j.Job.File) == "." || filepath.Base(j.Job.File) == string(filepath.Separator):
		return nil, errors.New("the job names no file")
	case j.State != "" && j.State != "succeeded" && j.State != "failed":
		return nil, fmt.Errorf("the job is in an unknown state %q", j.State)
	}
	if err := json.Unmarshal(j.Job.Meta, &j.meta); err != nil || j.meta.Route.SessionID == "" {
		return nil, errors.New("the job does not say which session it belongs to")
	}
	return j, nil
}

// jobName is the name of the first release's job file for a recording.
func jobName(recordingID string) string {
	sum := sha256.Sum256([]byte(recordingID))
	return hex.EncodeToString(sum[:16]) + jobExt
}

// firstEvent is one undelivered event of the first release's outbox. Body
// is exactly what it sent (id and timestamp included).
type firstEvent struct {
	Seq       uint64    `json:"seq"`
	ID        string    `json:"id"`
	Key       string    `json:"key"`
	URL       string    `json:"url"`
	Body      string    `json:"body"`
	Created   time.Time `json:"created"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
}

// parseEvent reads an event file's content.
func parseEvent(data []byte) (*firstEvent, error) {
	ev := new(firstEvent)
	if err := json.Unmarshal(data, ev); err != nil {
		return nil, fmt.Errorf("not a webhook event: %w", err)
	}
	if ev.ID == "" || ev.Seq == 0 || ev.Key == "" || ev.URL == "" {
		return nil, errors.New("the event has no id, sequence number, order key or URL")
	}
	return ev, nil
}

// firstManifest is a recording's manifest as the first release's recorder
// wrote it beside the media file, with the route it kept in Delivery.
type firstManifest struct {
	recorder.Manifest
	Delivery json.RawMessage `json:"delivery,omitempty"`

	route firstRoute
}

// parseManifest reads a manifest file's content.
func parseManifest(data []byte) (*firstManifest, error) {
	m := new(firstManifest)
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("not a recording manifest: %w", err)
	}
	switch m.State {
	case recorder.StateRecording, recorder.StateFinished, recorder.StateRepaired:
	default:
		return nil, fmt.Errorf("the manifest is in an unknown state %q", m.State)
	}
	if m.RecordingID == "" || m.File == "" || m.File != filepath.Base(m.File) {
		return nil, errors.New("the manifest names no recording or no media file")
	}
	if err := json.Unmarshal(m.Delivery, &m.route); err != nil || m.route.SessionID == "" || m.route.UploadURL == "" {
		return nil, errors.New("the manifest does not say where the recording goes")
	}
	return m, nil
}

// file is one of the first release's files: its path and what it held.
type file[T any] struct {
	path string
	v    *T
}

// readDir reads the files of dir whose names end in ext (and pass keep),
// in name order. Unreadable ones are set aside and reported in bad; a
// missing dir holds nothing.
func readDir[T any](dir, ext string, keep func(name string) bool, parse func([]byte) (*T, error)) (good []file[T], bad []error, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("upgrade: read %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ext) || strings.HasPrefix(name, ".") || !keep(name) {
			continue
		}
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		var v *T
		if err == nil {
			v, err = parse(data)
		}
		if err != nil {
			bad = append(bad, setAside(path, err))
			continue
		}
		good = append(good, file[T]{path: path, v: v})
	}
	sort.Slice(good, func(i, k int) bool { return good[i].path < good[k].path })
	return good, bad, nil
}

// setAside renames an unreadable file so that it is never read again, and
// returns what to log.
func setAside(path string, why error) error {
	err := fmt.Errorf("%s: %w", path, why)
	if rerr := os.Rename(path, path+asideExt); rerr != nil {
		return errors.Join(err, fmt.Errorf("and it could not be set aside: %w", rerr))
	}
	return err
}
