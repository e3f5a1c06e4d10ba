package evidence

import (
	"time"

	"github.com/rtmrec/rtmrec/recorder"
)

// Version is the evidence_version of the manifests this package signs.
const Version = 1

// Evidence is what the final recording_state (STOPPED, and FAILED as far as it is known)
// carries about a recording, with the field names docs/evidence.md documents. All
// times are on the clock Clock names.
type Evidence struct {
	// SHA256 is the hex SHA-256 of the media file, as uploaded.
	SHA256    string    `json:"sha256,omitempty"`
	StartedAt time.Time `json:"started_at"`
	StoppedAt time.Time `json:"stopped_at,omitzero"`
	// Clock is "sender" when the times come from the sender's RTCP Sender Reports,
	// "server" otherwise.
	Clock       string       `json:"clock"`
	Tracks      []Track      `json:"tracks"`
	Pauses      []Pause      `json:"pauses"`
	Supervisors []Supervisor `json:"supervisors"`
}

// Track is the quality of one track (recorder.TrackQuality says what each figure is).
type Track struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	Codec string `json:"codec"`
	recorder.TrackQuality
}

// Pause is a paused span on the file's timeline (equal ends: cut out, PauseSkip).
type Pause struct {
	StartMS int64 `json:"start_ms"`
	EndMS   int64 `json:"end_ms"`
}

// Supervisor is one supervisor's visit during the recording. A supervisor already
// listening when the recording started joined at its start; one still listening when it
// stopped left at its end.
type Supervisor struct {
	Identity  string    `json:"identity"`
	SessionID string    `json:"session_id"`
	JoinedAt  time.Time `json:"joined_at"`
	LeftAt    time.Time `json:"left_at"`
}

// Redaction records one redaction of the media: what file it was applied to, the span
// silenced/cut on the timeline, when and by whom.
type Redaction struct {
	OriginalSHA256 string `json:"original_sha256"`
	// OriginalManifestSHA256 is the SHA-256 of the manifest of the original file, as
	// given to the redaction (absent when none was).
	OriginalManifestSHA256 string    `json:"original_manifest_sha256,omitempty"`
	FromMS                 int64     `json:"from_ms"`
	ToMS                   int64     `json:"to_ms"`
	At                     time.Time `json:"at"`
	By                     string    `json:"by"`
}

// Facts is everything a signed manifest states: the recording, its media file, its
// evidence, and the redactions made to the file since it was recorded.
type Facts struct {
	Version     int    `json:"evidence_version"`
	RecordingID string `json:"recording_id"`
	SessionID   string `json:"session_id,omitempty"`
	ClientID    string `json:"client_id,omitempty"`
	// Identity is the authenticated identity (JWT sub) of the recorded client.
	Identity    string `json:"identity,omitempty"`
	Format      string `json:"format"`
	ContentType string `json:"content_type"`
	SizeBytes   int64  `json:"size_bytes"`
	DurationMS  int64  `json:"duration_ms"`
	// State is "finished", or "repaired" for a recording a crash interrupted.
	State string `json:"state,omitempty"`
	Evidence
	Redactions []Redaction `json:"redactions,omitempty"`
}

// FromManifest collects the facts of a finished or repaired recording.
func FromManifest(m *recorder.Manifest) Facts {
	f := Facts{
		Version: Version, RecordingID: m.RecordingID, SessionID: m.SessionID, ClientID: m.ClientID,
		Identity: m.Identity, Format: m.Format.String(), ContentType: m.ContentType,
		SizeBytes: m.SizeBytes, DurationMS: m.DurationMS, State: m.State,
		Evidence: EvidenceOf(m),
	}
	return f
}

// EvidenceOf is the evidence part of a recording's manifest, for the final
// recording_state event.
func EvidenceOf(m *recorder.Manifest) Evidence {
	// Supervisor visits are noted on the server's clock; they follow the sender's clock
	// when the recording's times do.
	var shift time.Duration
	if m.Clock == recorder.ClockSender && m.SenderClockOffsetMS != nil {
		shift = time.Duration(*m.SenderClockOffsetMS) * time.Millisecond
	}
	ms := func(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }
	e := Evidence{
		SHA256: m.SHA256, StartedAt: ms(m.StartedAt), Clock: string(m.Clock),
		Tracks: []Track{}, Pauses: []Pause{}, Supervisors: []Supervisor{},
	}
	if e.Clock == "" {
		e.Clock = string(recorder.ClockServer)
	}
	if m.StoppedAt != nil {
		e.StoppedAt = ms(*m.StoppedAt)
	}
	for _, t := range m.Tracks {
		e.Tracks = append(e.Tracks, Track{ID: t.ID, Kind: t.Kind.String(), Codec: t.Codec.String(), TrackQuality: t.TrackQuality})
	}
	for _, p := range m.Pauses {
		e.Pauses = append(e.Pauses, Pause{StartMS: p.StartMS, EndMS: p.EndMS})
	}
	open := map[string]int{} // supervisor session id -> index of its open visit
	for _, a := range m.Audit {
		at := ms(a.Time.Add(shift))
		switch a.Kind {
		case "supervisor_joined", "supervisor_present":
			if _, ok := open[a.SessionID]; ok {
				continue
			}
			if a.Kind == "supervisor_present" {
				at = e.StartedAt
			}
			open[a.SessionID] = len(e.Supervisors)
			e.Supervisors = append(e.Supervisors, Supervisor{Identity: a.Identity, SessionID: a.SessionID, JoinedAt: at})
		case "supervisor_left":
			if i, ok := open[a.SessionID]; ok {
				e.Supervisors[i].LeftAt = at
				delete(open, a.SessionID)
			}
		}
	}
	for _, i := range open {
		e.Supervisors[i].LeftAt = e.StoppedAt
	}
	return e
}
