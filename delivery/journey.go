// Package delivery owns a recording's journey from its first packet to its
// last webhook: one durable record per recording that moves through
// recording → finished → uploaded or failed, each state committed to the
// ledger before the step that follows it acts, and the final event
// (STOPPED or FAILED) committed in the same transaction as the outcome it
// reports. Whatever dies in between, the next start resumes every journey
// from its state, each on its own: a recording that cannot be resumed ends
// FAILED with a reason and its original ids, its file kept, and never
// holds up the others.
package delivery

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rtmrec/rtmrec/evidence"
	"github.com/rtmrec/rtmrec/internal/ledger"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/webhook"
)

// bucketJourneys holds one journey per recording id.
var bucketJourneys = []byte("recordings")

// Route is where a recording goes and whom its outcome concerns.
type Route struct {
	Tenant    string `json:"tenant,omitempty"`
	SessionID string `json:"session_id"`
	ClientID  string `json:"client_id,omitempty"`
	Identity  string `json:"identity,omitempty"`
	UploadURL string `json:"upload_url"`
	// ManifestURL, if set, receives the signed manifest (a PUT like the
	// upload); for an s3:// upload it defaults to <key>.manifest.json.
	ManifestURL string `json:"manifest_url,omitempty"`
	WebhookURL  string `json:"webhook_url,omitempty"`
	// OrderKey is the webhook order key of the recording's session, so the
	// recording's events keep their place among the session's (see OrderKey).
	OrderKey string `json:"order_key"`
}

// OrderKey is a session's webhook order key: its tenant and id, unambiguous
// whatever either contains. Sessions and the upgrade of a first-release data
// directory must agree on it, or a session's events lose their order.
func OrderKey(tenant, sessionID string) string {
	return strconv.Itoa(len(tenant)) + ":" + tenant + "/" + sessionID
}

// state is where a journey is.
type state string

const (
	// stateRecording: the recorder is writing the file. Found at start,
	// it is what a crash left: the file is repaired.
	stateRecording state = "recording"
	// stateFinished: the file is final; it is being uploaded.
	stateFinished state = "finished"
	// stateUploaded: the upload target took the file and STOPPED is
	// queued; the file waits for the retention to pass.
	stateUploaded state = "uploaded"
	// stateFailed: FAILED is queued; the file stays for the operator.
	stateFailed state = "failed"
)

// journey is a recording's durable record.
type journey struct {
	ID       string             `json:"id"`
	Route    Route              `json:"route"`
	State    state              `json:"state"`
	Manifest *recorder.Manifest `json:"manifest"`
	// Repaired is set when the file was finished by a repair after a crash.
	Repaired bool `json:"repaired,omitempty"`
	// Signed is the signed manifest (when the server signs), made once the
	// file is final, so that every retry sends the same bytes.
	Signed json.RawMessage `json:"signed,omitempty"`
	// MediaDone is set once the media file is uploaded (the manifest, if
	// any, goes next).
	MediaDone bool `json:"media_done,omitempty"`
	// Finished is when the file became final; the upload deadline runs
	// from it.
	Finished    time.Time `json:"finished,omitzero"`
	Attempts    int       `json:"attempts,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Status      int       `json:"status,omitempty"`
	// Reason says why the last attempt failed, or why the journey failed.
	Reason      string    `json:"reason,omitempty"`
	Decided     time.Time `json:"decided,omitzero"`
	FileDeleted bool      `json:"file_deleted,omitempty"`
}

func (j *journey) clone() *journey {
	c := *j
	if j.Manifest != nil {
		m := *j.Manifest
		c.Manifest = &m
	}
	return &c
}

// manifestTarget is where the signed manifest goes: the client's
// manifest_url, or beside an s3:// upload; "" for nowhere.
func (j *journey) manifestTarget() string {
	switch {
	case len(j.Signed) == 0:
		return ""
	case j.Route.ManifestURL != "":
		return j.Route.ManifestURL
	case strings.HasPrefix(j.Route.UploadURL, "s3://"):
		return j.Route.UploadURL + ".manifest.json"
	}
	return ""
}

func loadJourney(tx *ledger.Tx, id string) (*journey, error) {
	b := tx.Bucket(bucketJourneys)
	if b == nil {
		return nil, nil
	}
	v := b.Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	j := new(journey)
	if err := json.Unmarshal(v, j); err != nil {
		return nil, fmt.Errorf("delivery: journey %s: %w", id, err)
	}
	return j, nil
}

func saveJourney(tx *ledger.Tx, j *journey) error {
	b, err := ledger.Bucket(tx, bucketJourneys)
	if err != nil {
		return err
	}
	v, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("delivery: encode journey %s: %w", j.ID, err)
	}
	return b.Put([]byte(j.ID), v)
}

func deleteJourney(tx *ledger.Tx, id string) error {
	b, err := ledger.Bucket(tx, bucketJourneys)
	if err != nil {
		return err
	}
	return b.Delete([]byte(id))
}

// finalData is the data of STOPPED and FAILED: the recording's state with
// the evidence its manifest holds (docs/evidence.md), and the signed
// manifest when there is one.
type finalData struct {
	rtm.RecordingStateData
	evidence.Evidence
	Manifest json.RawMessage `json:"manifest,omitempty"`
}

// recordingEvent is the recording_state message of j in state st, with
// what the manifest knows, and the webhook event that carries it. The id
// depends only on the recording, the state and n (the n-th pause or
// resume), so the same event keeps its id whichever process sends it.
func recordingEvent(j *journey, st rtm.RecordingState, n int) (rtm.Message, webhook.Event, error) {
	d := rtm.RecordingStateData{RecordingID: j.ID, State: st, Reason: j.Reason}
	var data any = d
	if m := j.Manifest; m != nil {
		d.Format = string(m.Format)
		if st == rtm.RecordingStopped || st == rtm.RecordingFailed {
			dur, size := m.DurationMS, m.SizeBytes
			d.DurationMS, d.SizeBytes = &dur, &size
			data = finalData{RecordingStateData: d, Evidence: evidence.EvidenceOf(m), Manifest: j.Signed}
		} else {
			data = d
		}
	}
	msg, err := rtm.NewMessage(rtm.TypeRecordingState, j.Route.ClientID, j.Route.SessionID, data)
	if err != nil {
		return msg, webhook.Event{}, err
	}
	payload, err := rtm.WebhookPayload(msg, j.Route.Identity)
	if err != nil {
		return msg, webhook.Event{}, err
	}
	ev := webhook.Event{
		ID:  webhook.EventID("recording", j.ID, string(st), fmt.Sprint(n)),
		Key: j.Route.OrderKey, URL: j.Route.WebhookURL, Payload: payload,
	}
	return msg, ev, nil
}
