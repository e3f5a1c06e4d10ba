package rtm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// Type is the "type" field of an RTM message.
type Type string

// Client → server message types (and sdp_update / candidate in both directions).
const (
	TypeSessionStart          Type = "session_start"
	TypeSupervisorJoinSession Type = "supervisor_join_session"
	TypeSDPUpdate             Type = "sdp_update"
	TypeCandidate             Type = "candidate"
	TypeRecordingStart        Type = "recording_start"
	TypeRecordingStop         Type = "recording_stop"
	TypeRecordingPause        Type = "recording_pause"
	TypeRecordingResume       Type = "recording_resume"
	TypeSessionStop           Type = "session_stop"
	TypePing                  Type = "ping"
	// TypeTokenRefresh is an extension: the client replaces its connection's
	// token before it expires (docs/protocol.md, Authentication).
	TypeTokenRefresh Type = "token_refresh"
)

// Server → client message types.
const (
	TypeRecordingState Type = "recording_state"
	TypeSessionState   Type = "session_state"
	TypePong           Type = "pong"
	TypeError          Type = "error"
	// TypeTokenRefreshed answers a token_refresh that was accepted.
	TypeTokenRefreshed Type = "token_refreshed"
)

// Known reports whether t is a message type a client may send.
func (t Type) Known() bool {
	switch t {
	case TypeSessionStart, TypeSupervisorJoinSession, TypeSDPUpdate, TypeCandidate,
		TypeRecordingStart, TypeRecordingStop, TypeRecordingPause, TypeRecordingResume,
		TypeSessionStop, TypePing, TypeTokenRefresh:
		return true
	}
	return false
}

// Message is the envelope of every RTM message, in both directions.
type Message struct {
	Type      Type            `json:"type"`
	ClientID  string          `json:"client_id,omitempty"`
	SessionID string          `json:"session_id,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
}

// MaxIDLen bounds client_id and session_id: they are echoed, logged and used
// as file and map keys, so a client must not choose their size.
const MaxIDLen = 128

// Decode parses one WebSocket text frame into an envelope. It checks only what
// every message needs (a JSON object with a string type and well-formed ids);
// the data is decoded per type with DecodeData. Errors are *Error values with
// the code the client gets back.
func Decode(frame []byte) (Message, error) {
	var m Message
	if !json.Valid(frame) {
		return m, Errorf(CodeInvalidMessage, "message is not valid JSON")
	}
	// A frame that is valid JSON but not an object, or has mistyped envelope
	// fields, fails here.
	if err := json.Unmarshal(frame, &m); err != nil {
		return Message{}, Errorf(CodeInvalidMessage, "malformed envelope: %s", jsonProblem(err))
	}
	if m.Type == "" {
		return m, Errorf(CodeInvalidMessage, "message has no type")
	}
	if len(m.Type) > 64 {
		return m, Errorf(CodeInvalidMessage, "type is too long")
	}
	if len(m.ClientID) > MaxIDLen || len(m.SessionID) > MaxIDLen {
		m.ClientID, m.SessionID = truncate(m.ClientID), truncate(m.SessionID)
		return m, Errorf(CodeInvalidMessage, "client_id and session_id are limited to %d bytes", MaxIDLen)
	}
	if !validID(m.SessionID) || !validID(m.ClientID) {
		return m, Errorf(CodeInvalidMessage, "client_id and session_id may contain only printable characters")
	}
	if !m.Type.Known() {
		return m, Errorf(CodeUnknownType, "unknown message type %q", string(m.Type))
	}
	return m, nil
}

// DecodeData decodes the message's data into v and validates it when v has a
// Validate method. Missing data is decoded as an empty object so that
// Validate reports the missing fields by name.
func DecodeData(m Message, v interface{ Validate() error }) error {
	data := m.Data
	if len(bytes.TrimSpace(data)) == 0 || bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		data = []byte("{}")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return Errorf(CodeInvalidMessage, "%s data: %s", m.Type, jsonProblem(err))
	}
	if err := v.Validate(); err != nil {
		var e *Error
		if errors.As(err, &e) {
			return e
		}
		// A validator outside this package: its words are not the
		// protocol's.
		return Errorf(CodeInvalidMessage, "%s data is not valid", m.Type)
	}
	return nil
}

// jsonProblem turns a decoding error into a short message that names the
// field but never echoes the client's input back at length.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("field %q must be %s", te.Field, te.Type.String())
		}
		return fmt.Sprintf("expected %s", te.Type.String())
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at offset %d", se.Offset)
	}
	return "cannot decode"
}

func validID(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

func truncate(s string) string {
	if len(s) > MaxIDLen {
		return s[:MaxIDLen]
	}
	return s
}

// NewMessage builds a server message with data marshalled from v.
func NewMessage(t Type, clientID, sessionID string, v any) (Message, error) {
	m := Message{Type: t, ClientID: clientID, SessionID: sessionID}
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return m, fmt.Errorf("encode %s data: %w", t, err)
		}
		m.Data = b
	}
	return m, nil
}

// Encode builds a server message with data marshalled from v, as a frame.
func Encode(t Type, clientID, sessionID string, v any) ([]byte, error) {
	m, err := NewMessage(t, clientID, sessionID, v)
	if err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

// webhookBody is a webhook's payload (docs/webhooks.md): the WebSocket envelope
// plus the authenticated identity; the outbox adds id and timestamp.
type webhookBody struct {
	Type      Type            `json:"type"`
	ClientID  string          `json:"client_id"`
	SessionID string          `json:"session_id"`
	Data      json.RawMessage `json:"data"`
	Identity  string          `json:"identity,omitempty"`
}

// WebhookPayload is the webhook payload of a server message m sent on
// behalf of identity (the token's subject; empty without authentication).
func WebhookPayload(m Message, identity string) (json.RawMessage, error) {
	b, err := json.Marshal(webhookBody{Type: m.Type, ClientID: m.ClientID, SessionID: m.SessionID, Data: m.Data, Identity: identity})
	if err != nil {
		return nil, fmt.Errorf("encode %s webhook: %w", m.Type, err)
	}
	return b, nil
}
