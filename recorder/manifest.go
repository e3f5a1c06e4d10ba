package recorder

import (
	"time"
)

// Manifest states.
const (
	StateRecording = "recording" // from Start until Stop; what a crash leaves
	StateFinished  = "finished"  // after Stop
	StateRepaired  = "repaired"  // after Repair of what a crash left
)

// Manifest describes a recording file: what it holds and how it was made. The recorder fills
// it in; keeping it durable is the caller's business (package delivery keeps it in the
// recording's journey, from Start on, so that a crash loses none of it).
type Manifest struct {
	RecordingID string    `json:"recording_id"`
	SessionID   string    `json:"session_id"`
	ClientID    string    `json:"client_id"`
	Identity    string    `json:"identity,omitempty"`
	Format      Format    `json:"format"`
	ContentType string    `json:"content_type"`
	File        string    `json:"file"` // media file name, relative to the manifest's directory
	PauseMode   PauseMode `json:"pause_mode"`
	State       string    `json:"state"`
	// StartedAt and StoppedAt are wall-clock times on the clock Clock names: the sender's
	// (from its RTCP Sender Reports) when it sent any, else the server's.
	StartedAt time.Time  `json:"started_at"`
	StoppedAt *time.Time `json:"stopped_at,omitempty"`
	Clock     Clock      `json:"clock"`
	// SenderClockOffsetMS is the sender's clock minus the server's, as the Sender Reports
	// showed it (network delay included); absent when Clock is the server's.
	SenderClockOffsetMS *int64       `json:"sender_clock_offset_ms,omitempty"`
	DurationMS          int64        `json:"duration_ms"`
	SizeBytes           int64        `json:"size_bytes"`
	SHA256              string       `json:"sha256,omitempty"`
	Tracks              []TrackStats `json:"tracks"`
	Pauses              []PauseSpan  `json:"pauses"`
	Audit               []AuditEvent `json:"audit"`
	// PacketsDropped counts packets dropped because the write queue was full (all tracks).
	PacketsDropped uint64 `json:"packets_dropped"`

	// Path is the path of the media file (not serialized: File names it relative to the
	// data directory).
	Path string `json:"-"`
}

// Clock says whose clock a recording's wall-clock times are on.
type Clock string

// Clocks of Manifest.Clock.
const (
	ClockSender Clock = "sender" // the sender's, from its RTCP Sender Reports (RFC 3550 §6.4.1)
	ClockServer Clock = "server" // the server's: the sender sent no Sender Report
)

// TrackStats are the per-track counters and quality figures of a recording.
type TrackStats struct {
	ID     string `json:"id"`
	Kind   Kind   `json:"kind"`
	Codec  Codec  `json:"codec"`
	Number int    `json:"number"` // Matroska track number / Ogg stream index (1-based)
	TrackQuality
	Duplicates     uint64 `json:"duplicates"`      // re-sent or stray packets dropped before the timeline
	PacketsDropped uint64 `json:"packets_dropped"` // queue full
	FramesWritten  uint64 `json:"frames_written"`
	FramesDropped  uint64 `json:"frames_dropped"` // incomplete or waiting for a keyframe
	Width          int    `json:"width,omitempty"`
	Height         int    `json:"height,omitempty"`
	// Rotation is how many degrees clockwise a player turns the picture for display, as
	// the sender said (CVO) at the first keyframe and as the file's header says.
	Rotation int `json:"rotation,omitempty"`
	// RotationChanges are the sender's later turns, which the file's header cannot hold.
	RotationChanges []RotationChange `json:"rotation_changes,omitempty"`
}

// RotationChange is a turn of the sender's camera: from AtMS on the file timeline, the
// picture is turned Rotation degrees clockwise for display.
type RotationChange struct {
	AtMS     int64 `json:"at_ms"`
	Rotation int   `json:"rotation"`
}

// TrackQuality are the figures of a track that docs/evidence.md names (quality.go
// says how each is measured).
type TrackQuality struct {
	// PacketsReceived counts the RTP packets that arrived (duplicates and paused included).
	PacketsReceived uint64 `json:"packets_received"`
	// PacketsLost counts the packets the sender sent that never arrived (not while paused).
	PacketsLost uint64 `json:"packets_lost"`
	// LossPercent is PacketsLost over the packets the sender sent (received once, or lost).
	LossPercent float64 `json:"loss_percent"`
	// LongestGapMS is the longest stretch of lost media, on the sender's clock.
	LongestGapMS int64 `json:"longest_gap_ms"`
	// SilenceMS is audio the sender did not send (DTX) or sent as silent frames.
	SilenceMS int64 `json:"silence_ms"`
	// FirstKeyframeMS is when the first video frame is in the file (video only).
	FirstKeyframeMS *int64 `json:"first_keyframe_ms,omitempty"`
	// AVOffsetMS is the largest offset of this video track from the first audio track in
	// the file, positive when video is late, as measured by Sender Reports (video only).
	AVOffsetMS *int64 `json:"av_offset_ms,omitempty"`
	// JitterMS is the mean RFC 3550 §6.4.1 interarrival jitter.
	JitterMS float64 `json:"jitter_ms"`
	// Reanchors counts the times the track's timeline was anchored anew: a
	// new SSRC, or timestamps that jumped and were confirmed by the packets
	// after them (an extension; a browser call has none).
	Reanchors uint64 `json:"reanchors"`
}

// PauseSpan is one pause. StartMS/EndMS are on the file timeline (equal in PauseSkip mode,
// where the span is cut out); StartedAt/EndedAt are wall clock.
type PauseSpan struct {
	StartMS   int64      `json:"start_ms"`
	EndMS     int64      `json:"end_ms"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
}

// AuditEvent is an event the caller wants kept with the recording (supervisor joins/leaves).
type AuditEvent struct {
	Time      time.Time `json:"time"`
	Kind      string    `json:"kind"`
	SessionID string    `json:"session_id,omitempty"`
	Identity  string    `json:"identity,omitempty"`
}
