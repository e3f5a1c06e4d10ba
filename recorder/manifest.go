package recorder

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rtmrec/rtmrec/internal/durable"
)

// Manifest states.
const (
	StateRecording = "recording" // written at Start; left behind by a crash
	StateFinished  = "finished"  // written by Stop
	StateRepaired  = "repaired"  // written by Repair after a crash
)

// Manifest describes a recording file. It is stored as <RecordingID>.json next to the media
// file and always replaced atomically, so a reader sees either the old or the new version.
type Manifest struct {
	RecordingID string       `json:"recording_id"`
	SessionID   string       `json:"session_id"`
	ClientID    string       `json:"client_id"`
	Identity    string       `json:"identity,omitempty"`
	Format      Format       `json:"format"`
	ContentType string       `json:"content_type"`
	File        string       `json:"file"` // media file name, relative to the manifest's directory
	PauseMode   PauseMode    `json:"pause_mode"`
	State       string       `json:"state"`
	StartedAt   time.Time    `json:"started_at"`
	StoppedAt   *time.Time   `json:"stopped_at,omitempty"`
	DurationMS  int64        `json:"duration_ms"`
	SizeBytes   int64        `json:"size_bytes"`
	SHA256      string       `json:"sha256,omitempty"`
	Tracks      []TrackStats `json:"tracks"`
	Pauses      []PauseSpan  `json:"pauses"`
	Audit       []AuditEvent `json:"audit"`
	// PacketsDropped counts packets dropped because the write queue was full (all tracks).
	PacketsDropped uint64 `json:"packets_dropped"`
	// Delivery is the caller's opaque delivery data (upload/webhook URLs). The recorder stores
	// it and never logs it.
	Delivery json.RawMessage `json:"delivery,omitempty"`

	// Path is the absolute path of the media file (not serialized).
	Path string `json:"-"`
	// ManifestPath is the path of the manifest file (not serialized).
	ManifestPath string `json:"-"`
}

// TrackStats are the per-track counters of a recording.
type TrackStats struct {
	ID              string `json:"id"`
	Kind            Kind   `json:"kind"`
	Codec           Codec  `json:"codec"`
	Number          int    `json:"number"` // Matroska track number / Ogg stream index (1-based)
	PacketsReceived uint64 `json:"packets_received"`
	PacketsLost     uint64 `json:"packets_lost"`
	Duplicates      uint64 `json:"duplicates"`      // re-sent or stray packets dropped before the timeline
	Reanchors       uint64 `json:"reanchors"`       // timeline re-anchors (new SSRC, confirmed timestamp jump)
	PacketsDropped  uint64 `json:"packets_dropped"` // queue full
	FramesWritten   uint64 `json:"frames_written"`
	FramesDropped   uint64 `json:"frames_dropped"` // incomplete or waiting for a keyframe
	Width           int    `json:"width,omitempty"`
	Height          int    `json:"height,omitempty"`
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

// ReadManifest reads a manifest file.
func ReadManifest(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("recorder: read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("recorder: parse manifest %s: %w", path, err)
	}
	m.ManifestPath = path
	if m.File != "" {
		m.Path = filepath.Join(filepath.Dir(path), filepath.Base(m.File))
	}
	return &m, nil
}

// writeManifest replaces the manifest atomically, so a crash leaves either
// the old or the new manifest, never a torn one.
func writeManifest(path string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("recorder: encode manifest: %w", err)
	}
	if err := durable.WriteFile(path, append(b, '\n')); err != nil {
		return fmt.Errorf("recorder: write manifest: %w", err)
	}
	return nil
}
