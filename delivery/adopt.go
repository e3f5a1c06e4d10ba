package delivery

import (
	"errors"
	"fmt"
	"time"

	"github.com/rtmrec/rtmrec/internal/ledger"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
)

// Handed is where a recording handed over by an earlier release stands.
type Handed int

// The states of a Handover.
const (
	// HandedCut: the earlier release was writing the file when it died; the
	// file is repaired, then uploaded, like a recording of this release
	// that a crash cut off.
	HandedCut Handed = iota
	// HandedQueued: the file is final and waits for its upload.
	HandedQueued
	// HandedUploaded: the upload target took the file.
	HandedUploaded
	// HandedFailed: the recording failed; its file is kept for the operator.
	HandedFailed
)

// Handover is a recording an earlier release of rtmrec left in the data
// directory (package upgrade reads it from that release's files).
type Handover struct {
	Route Route
	// Manifest describes the file; its File names the media file in
	// Config.Dir.
	Manifest *recorder.Manifest
	State    Handed
	// Reported is set when the outcome of an uploaded or failed recording
	// was already reported (its STOPPED or FAILED is queued or sent).
	Reported bool
	// Reason is why a failed recording failed, or why the last upload
	// attempt of a queued one failed.
	Reason   string
	Status   int
	Attempts int
	// Since is when the file became final (queued: the upload deadline
	// runs from it) or when the outcome was decided.
	Since time.Time
}

// Adopt writes the journey of h into tx, where the next Journeys (New)
// finds and resumes it like any journey: a cut file is repaired and
// uploaded, a queued one uploaded, an uploaded one removed after the
// retention. An outcome not yet reported gets its STOPPED or FAILED,
// staged in tx. A recording that already has a journey is left alone.
// after must be called once tx is committed. Call Adopt before New: New
// moves aside the media files no journey knows.
func Adopt(tx *ledger.Tx, out Outbox, h Handover) (after func(), err error) {
	none := func() {}
	if h.Manifest == nil || h.Manifest.RecordingID == "" {
		return nil, errors.New("delivery: adopt: no recording id")
	}
	jr, err := loadJourney(tx, h.Manifest.RecordingID)
	if err != nil || jr != nil {
		return none, err
	}
	jr = &journey{
		ID: h.Manifest.RecordingID, Route: h.Route, Manifest: h.Manifest,
		Attempts: h.Attempts, Status: h.Status, Reason: h.Reason,
	}
	switch h.State {
	case HandedCut:
		jr.State = stateRecording
	case HandedQueued:
		jr.State, jr.Finished = stateFinished, h.Since
	case HandedUploaded, HandedFailed:
		jr.State, jr.Finished, jr.Decided = stateUploaded, h.Since, h.Since
		if h.State == HandedFailed {
			jr.State = stateFailed
		}
	default:
		return nil, fmt.Errorf("delivery: adopt %s: unknown state %d", jr.ID, h.State)
	}
	if err := saveJourney(tx, jr); err != nil {
		return nil, err
	}
	if h.Reported || (h.State != HandedUploaded && h.State != HandedFailed) {
		return none, nil
	}
	rs := rtm.RecordingStopped
	if h.State == HandedFailed {
		rs = rtm.RecordingFailed
	}
	_, ev, err := recordingEvent(jr, rs, 0)
	if err != nil {
		return nil, err
	}
	return out.Stage(tx, ev)
}
