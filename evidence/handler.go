package evidence

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/rtmrec/rtmrec/internal/durable"
)

// ErrUnknownRecording is what Recordings returns for a recording it does not have.
var ErrUnknownRecording = errors.New("no such recording in the data directory")

// Recordings finds the recordings still in the data directory.
type Recordings interface {
	// Recording returns the path of a recording's media file and its signed manifest
	// (nil if it has none), or ErrUnknownRecording.
	Recording(ctx context.Context, id string) (media string, manifest []byte, err error)
}

// RedactHandler is the operators' redaction API (POST, JSON body
// {"recording_id", "from_ms", "to_ms"}). It redacts a recording still in the data
// directory into a new file beside it, <media>.redacted-<unix ms>.<ext>, writes that
// file's signed manifest beside it as <file>.manifest.json, and answers
// {"file", "manifest_file", "manifest", "redaction"}. The original is not changed.
// Authentication is the caller's: Identity names who asks, and that name is recorded.
type RedactHandler struct {
	Recordings Recordings
	Key        ed25519.PrivateKey // signs the new manifests; required
	// Identity returns the authenticated operator of a request, or an error to refuse it
	// (403, with the error's text).
	Identity func(*http.Request) (string, error)
	Now      func() time.Time // default time.Now
	Logger   *slog.Logger     // default: discard
}

// redactBody is the request.
type redactBody struct {
	RecordingID string `json:"recording_id"`
	FromMS      *int64 `json:"from_ms"`
	ToMS        *int64 `json:"to_ms"`
}

// RedactResponse is the answer of RedactHandler.
type RedactResponse struct {
	File         string          `json:"file"`
	ManifestFile string          `json:"manifest_file"`
	Manifest     json.RawMessage `json:"manifest"`
	Redaction    struct {
		FromMS         int64 `json:"from_ms"`
		ToMS           int64 `json:"to_ms"`
		SilencedFromMS int64 `json:"silenced_from_ms"`
		SilencedToMS   int64 `json:"silenced_to_ms"`
		AudioPackets   int   `json:"audio_packets"`
		VideoFrames    int   `json:"video_frames"`
	} `json:"redaction"`
}

func (h *RedactHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fail := func(code int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fail(http.StatusMethodNotAllowed, "use POST")
		return
	}
	if h.Identity == nil || h.Key == nil || h.Recordings == nil {
		fail(http.StatusInternalServerError, "redaction is not configured")
		return
	}
	by, err := h.Identity(r)
	if err != nil {
		fail(http.StatusForbidden, err.Error())
		return
	}
	var body redactBody
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	if err := dec.Decode(&body); err != nil {
		fail(http.StatusBadRequest, "the body must be JSON: {\"recording_id\", \"from_ms\", \"to_ms\"}")
		return
	}
	if body.RecordingID == "" || body.FromMS == nil || body.ToMS == nil || *body.FromMS < 0 || *body.ToMS <= *body.FromMS {
		fail(http.StatusBadRequest, "recording_id, from_ms and to_ms are required, with 0 <= from_ms < to_ms")
		return
	}
	log = log.With("recording_id", body.RecordingID)
	media, manifest, err := h.Recordings.Recording(r.Context(), body.RecordingID)
	switch {
	case errors.Is(err, ErrUnknownRecording):
		fail(http.StatusNotFound, ErrUnknownRecording.Error())
		return
	case err != nil:
		log.Error("redaction: looking up the recording", "err", err)
		fail(http.StatusInternalServerError, "the recording could not be read")
		return
	}
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	ext := filepath.Ext(media)
	out := fmt.Sprintf("%s.redacted-%d%s", strings.TrimSuffix(media, ext), now().UnixMilli(), ext)
	res, err := Redact(RedactRequest{
		In: media, Out: out, From: time.Duration(*body.FromMS) * time.Millisecond, To: time.Duration(*body.ToMS) * time.Millisecond,
		By: by, Manifest: manifest, Key: h.Key, Now: now,
	})
	if err != nil {
		log.Error("redaction failed", "by", by, "err", err)
		fail(http.StatusUnprocessableEntity, "the redaction failed: "+err.Error())
		return
	}
	mpath := out + ".manifest.json"
	if err := durable.WriteFile(mpath, res.Manifest); err != nil {
		log.Error("redaction: writing the manifest", "err", err)
		fail(http.StatusInternalServerError, "the manifest could not be written")
		return
	}
	log.Info("recording redacted", "by", by, "from_ms", *body.FromMS, "to_ms", *body.ToMS, "file", filepath.Base(out))
	resp := RedactResponse{File: filepath.Base(out), ManifestFile: filepath.Base(mpath), Manifest: res.Manifest}
	red := &resp.Redaction
	red.FromMS, red.ToMS = *body.FromMS, *body.ToMS
	red.SilencedFromMS, red.SilencedToMS = res.Redaction.SilencedFrom.Milliseconds(), res.Redaction.SilencedTo.Milliseconds()
	red.AudioPackets, red.VideoFrames = res.Redaction.AudioPackets, res.Redaction.VideoFrames
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}
