package rtm

import "strings"

// The vocabulary a customer's code can match on, in one place for the docs
// (docs/protocol.md, Session lifecycle, §4): error codes, termination causes, and the failures
// that start a FAILED recording's reason. The words after a code are for
// people; they name no Go package and carry no URL query string (package
// internal/wording holds that rule, and the tests of every producer apply
// it).

// Failure is what went wrong with a recording, at the start of a FAILED
// recording_state's reason: "<failure>: <detail>".
type Failure string

// The failures of a recording.
const (
	// FailureUploadRefused: the upload target refused the file (a 4xx other
	// than 429, a redirect, a URL the server's policy no longer allows);
	// sending it again to the same URL would not help. The file is kept on
	// the server. Example: "upload_refused: HTTP 403 Forbidden".
	FailureUploadRefused Failure = "upload_refused"
	// FailureUploadUnreachable: every attempt failed on the network, timed
	// out, or got 429/5xx, until the attempts or the deadline ran out.
	// Example: "upload_unreachable: connection refused after 10 attempts
	// over 2m10s".
	FailureUploadUnreachable Failure = "upload_unreachable"
	// FailureRecordingUnrepairable: the server stopped while recording and
	// what reached the disk cannot be made into a playable file.
	FailureRecordingUnrepairable Failure = "recording_unrepairable"
	// FailureRecordingMissing: the recording's file is gone from the
	// server's data directory.
	FailureRecordingMissing Failure = "recording_missing"
	// FailureRecordingEmpty: no audio and no video keyframe arrived before
	// the recording stopped.
	FailureRecordingEmpty Failure = "recording_empty"
	// FailureRecordingFailed: the server could not write the file (a disk
	// error); what was written is kept.
	FailureRecordingFailed Failure = "recording_failed"
)

// Failures lists every Failure.
var Failures = []Failure{
	FailureUploadRefused, FailureUploadUnreachable, FailureRecordingUnrepairable,
	FailureRecordingMissing, FailureRecordingEmpty, FailureRecordingFailed,
}

// Reason is the reason of a FAILED recording that failed with f.
func (f Failure) Reason(detail string) string { return string(f) + ": " + detail }

// FailureOf returns the failure a FAILED reason starts with, if it is one
// of Failures.
func FailureOf(reason string) (Failure, bool) {
	code, _, ok := strings.Cut(reason, ": ")
	for _, f := range Failures {
		if ok && Failure(code) == f {
			return f, true
		}
	}
	return "", false
}

// Codes lists every error Code.
var Codes = []Code{
	CodeInvalidMessage, CodeUnknownType, CodeInvalidSDP, CodeSessionExists, CodeSessionNotFound,
	CodeRecordingActive, CodeNoActiveRecording, CodeInvalidURL, CodeUnauthorized, CodeServerBusy,
	CodeNotSupported, CodeInternal,
}

// Causes lists every termination Cause.
var Causes = []Cause{
	CauseClient, CauseDisconnect, CauseConnectTimeout, CauseMediaTimeout, CauseMonitoredSessionEnd,
	CauseServerShutdown, CauseMaxDuration, CauseError, CauseTokenExpired,
}
