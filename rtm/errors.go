package rtm

import "fmt"

// Code is an error code of the documented error table (docs/protocol.md, Errors).
type Code string

// The error codes a client can receive.
const (
	CodeInvalidMessage    Code = "invalid_message"
	CodeUnknownType       Code = "unknown_type"
	CodeInvalidSDP        Code = "invalid_sdp"
	CodeSessionExists     Code = "session_exists"
	CodeSessionNotFound   Code = "session_not_found"
	CodeRecordingActive   Code = "recording_active"
	CodeNoActiveRecording Code = "no_active_recording"
	CodeInvalidURL        Code = "invalid_url"
	CodeUnauthorized      Code = "unauthorized"
	CodeServerBusy        Code = "server_busy"
	CodeNotSupported      Code = "not_supported"
	CodeInternal          Code = "internal"
)

// Error is an error that travels to the client as an error message. Every
// failure of a request is either an *Error or is answered as CodeInternal.
type Error struct {
	Code    Code
	Message string
}

// Errorf builds an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }
