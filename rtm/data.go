package rtm

import (
	"fmt"
	"strings"
	"time"
)

// MaxSDPLen bounds an SDP: real browser offers with many m-lines stay well
// under 64 KiB; the limit keeps a hostile client from making the server parse
// megabytes.
const MaxSDPLen = 128 << 10

// MaxCandidateLen bounds one ICE candidate line (RFC 8839 lines are ~100 bytes).
const MaxCandidateLen = 1024

// SessionDescription mirrors the browser's RTCSessionDescription.
type SessionDescription struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

// Validate checks the description's type and size.
func (d *SessionDescription) Validate() error {
	switch d.Type {
	case "offer", "answer":
	case "":
		return Errorf(CodeInvalidMessage, "sdp.type is required")
	default:
		return Errorf(CodeInvalidSDP, "sdp.type must be offer or answer, not %q", truncate(d.Type))
	}
	if strings.TrimSpace(d.SDP) == "" {
		return Errorf(CodeInvalidMessage, "sdp.sdp is required")
	}
	if len(d.SDP) > MaxSDPLen {
		return Errorf(CodeInvalidSDP, "sdp is larger than %d bytes", MaxSDPLen)
	}
	return nil
}

// SessionStart is the data of session_start.
type SessionStart struct {
	SDP        *SessionDescription `json:"sdp"`
	WebhookURL string              `json:"webhook_url,omitempty"`
}

// Validate checks that an offer is present.
func (s *SessionStart) Validate() error { return requireOffer(s.SDP) }

// SupervisorJoin is the data of supervisor_join_session. SDP may be left
// out (extension): the server then makes the offer, as an sdp_update the
// client answers; protocols whose players never offer (Ant Media's play)
// need that.
type SupervisorJoin struct {
	SDP                *SessionDescription `json:"sdp,omitempty"`
	SessionIDToMonitor string              `json:"session_id_to_monitor"`
	WebhookURL         string              `json:"webhook_url,omitempty"`
}

// Validate checks the offer, when there is one, and the monitored session id.
func (s *SupervisorJoin) Validate() error {
	if s.SDP != nil {
		if err := requireOffer(s.SDP); err != nil {
			return err
		}
	}
	if s.SessionIDToMonitor == "" {
		return Errorf(CodeInvalidMessage, "session_id_to_monitor is required")
	}
	if len(s.SessionIDToMonitor) > MaxIDLen {
		return Errorf(CodeInvalidMessage, "session_id_to_monitor is limited to %d bytes", MaxIDLen)
	}
	return nil
}

func requireOffer(d *SessionDescription) error {
	if d == nil {
		return Errorf(CodeInvalidMessage, "sdp is required")
	}
	if err := d.Validate(); err != nil {
		return err
	}
	if d.Type != "offer" {
		return Errorf(CodeInvalidSDP, "sdp must be an offer, got %q", d.Type)
	}
	return nil
}

// SDPUpdate is the data of sdp_update, in both directions.
type SDPUpdate struct {
	SDP *SessionDescription `json:"sdp"`
}

// Validate checks that a description is present.
func (s *SDPUpdate) Validate() error {
	if s.SDP == nil {
		return Errorf(CodeInvalidMessage, "sdp is required")
	}
	return s.SDP.Validate()
}

// ICECandidate mirrors the browser's RTCIceCandidate (its JSON form).
type ICECandidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// CandidateData is the data of candidate, in both directions. An empty
// candidate.candidate means end of candidates.
type CandidateData struct {
	Candidate *ICECandidate `json:"candidate"`
}

// Validate checks presence and size.
func (c *CandidateData) Validate() error {
	if c.Candidate == nil {
		return Errorf(CodeInvalidMessage, "candidate is required")
	}
	if len(c.Candidate.Candidate) > MaxCandidateLen {
		return Errorf(CodeInvalidMessage, "candidate is longer than %d bytes", MaxCandidateLen)
	}
	return nil
}

// MaxURLLen bounds upload and webhook URLs (pre-signed S3 URLs are ~1.5 KiB).
const MaxURLLen = 8 << 10

// RecordingStart is the data of recording_start.
type RecordingStart struct {
	UploadURL  string `json:"upload_url"`
	WebhookURL string `json:"webhook_url,omitempty"`
	// Format is an extension: auto (default), ogg, webm, mkv.
	Format string `json:"format,omitempty"`
	// PauseMode is an extension: silence (default) keeps paused spans in the
	// timeline, skip cuts them out.
	PauseMode string `json:"pause_mode,omitempty"`
	// ManifestURL is an extension: where the signed manifest is PUT (a
	// pre-signed URL) when the server signs manifests.
	ManifestURL string `json:"manifest_url,omitempty"`
}

// Validate checks the required upload URL and the enumerations.
func (r *RecordingStart) Validate() error {
	if r.UploadURL == "" {
		return Errorf(CodeInvalidMessage, "upload_url is required")
	}
	if len(r.UploadURL) > MaxURLLen || len(r.WebhookURL) > MaxURLLen || len(r.ManifestURL) > MaxURLLen {
		return Errorf(CodeInvalidURL, "URLs are limited to %d bytes", MaxURLLen)
	}
	switch r.Format {
	case "", "auto", "ogg", "webm", "mkv":
	default:
		return Errorf(CodeInvalidMessage, "format must be auto, ogg, webm or mkv")
	}
	switch r.PauseMode {
	case "", "silence", "skip":
	default:
		return Errorf(CodeInvalidMessage, "pause_mode must be silence or skip")
	}
	return nil
}

// MaxTokenLen bounds the token of a token_refresh, as the verifier bounds
// the one of the upgrade.
const MaxTokenLen = 8 << 10

// TokenRefresh is the data of token_refresh (an extension): a new token
// for the connection, with the same sub, tenant and role as the old one.
type TokenRefresh struct {
	Token string `json:"token"`
}

// Validate checks presence and size.
func (t *TokenRefresh) Validate() error {
	if t.Token == "" {
		return Errorf(CodeInvalidMessage, "token is required")
	}
	if len(t.Token) > MaxTokenLen {
		return Errorf(CodeUnauthorized, "token is longer than %d bytes", MaxTokenLen)
	}
	return nil
}

// TokenRefreshed is the data of token_refreshed: until when the server now
// honours the connection's token (its exp plus the server's clock-skew
// leeway), RFC 3339 in UTC.
type TokenRefreshed struct {
	ExpiresAt time.Time `json:"expires_at"`
}

// Empty is the data of messages that carry none (recording_stop,
// recording_pause, recording_resume, session_stop, ping).
type Empty struct{}

// Validate accepts anything: unknown fields are ignored by contract.
func (Empty) Validate() error { return nil }

// SessionState is the data of session_state.
type SessionState struct {
	State            State  `json:"state"`
	TerminationCause Cause  `json:"termination_cause,omitempty"`
	Reason           string `json:"reason,omitempty"`
}

// RecordingStateData is the data of recording_state.
type RecordingStateData struct {
	RecordingID string         `json:"recording_id"`
	State       RecordingState `json:"state"`
	Format      string         `json:"format,omitempty"`
	DurationMS  *int64         `json:"duration_ms,omitempty"`
	SizeBytes   *int64         `json:"size_bytes,omitempty"`
	Reason      string         `json:"reason,omitempty"`
}

// ErrorData is the data of error.
type ErrorData struct {
	Code        Code   `json:"code"`
	Message     string `json:"message"`
	RequestType Type   `json:"request_type,omitempty"`
}

// String gives a compact form for logs.
func (e ErrorData) String() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }
