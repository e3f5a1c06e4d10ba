package antmedia

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/compat"
	"github.com/rtmrec/rtmrec/rtm"
)

// Client commands rtmrec acts on. Every other command (join, joinRoom,
// getStreamInfo, toggleVideo, ...) is ignored.
const (
	CmdPublish            = "publish"
	CmdPlay               = "play"
	CmdTakeConfiguration  = "takeConfiguration"
	CmdTakeCandidate      = "takeCandidate"
	CmdStop               = "stop"
	CmdPing               = "ping"
	CmdGetIceServerConfig = "getIceServerConfig"
)

// Command is a client message: the fields rtmrec reads of any command.
// Fields it does not read (subscriberId, video, audio, trackList, ...) may
// have any type.
type Command struct {
	Command  string `json:"command"`
	StreamID string `json:"streamId"`
	// Token is the stream token of publish and play.
	Token string `json:"token"`
	// Type and SDP are takeConfiguration's description.
	Type string `json:"type"`
	SDP  string `json:"sdp"`
	// Label (the m-line index), ID (the mid) and Candidate are
	// takeCandidate's.
	Label     Label  `json:"label"`
	ID        string `json:"id"`
	Candidate string `json:"candidate"`
}

// Label is takeCandidate's m-line index. The SDK sends a number; the
// protocol's documents show it quoted, so a numeric string is taken too.
type Label struct {
	Index uint16
	Set   bool
}

// UnmarshalJSON takes a number or a numeric string; null leaves it unset.
func (l *Label) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*l = Label{}
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s == "" {
			*l = Label{}
			return nil
		}
		b = []byte(s)
	}
	n, err := strconv.ParseUint(string(b), 10, 16)
	if err != nil {
		return &json.UnmarshalTypeError{Value: "label", Type: reflect.TypeFor[uint16](), Field: "label"}
	}
	*l = Label{Index: uint16(n), Set: true}
	return nil
}

// MarshalJSON writes the index as a number (the SDK needs one), or null.
func (l Label) MarshalJSON() ([]byte, error) {
	if !l.Set {
		return []byte("null"), nil
	}
	return strconv.AppendUint(nil, uint64(l.Index), 10), nil
}

// Decode parses one client frame. The error (a *rtm.Error, code
// invalid_message) names what is wrong without echoing the input back; a
// command whose stream id could be read carries it, so the refusal can
// name the stream.
func Decode(frame []byte) (Command, error) {
	var c Command
	if !json.Valid(frame) {
		return c, rtm.Errorf(rtm.CodeInvalidMessage, "message is not valid JSON")
	}
	if err := json.Unmarshal(frame, &c); err != nil {
		// Keep the stream id if it alone decodes, for the error.
		var id struct {
			StreamID string `json:"streamId"`
		}
		_ = json.Unmarshal(frame, &id)
		return Command{StreamID: truncate(id.StreamID)}, rtm.Errorf(rtm.CodeInvalidMessage, "malformed command: %s", compat.DecodeProblem(err))
	}
	switch {
	case len(c.StreamID) > rtm.MaxIDLen:
		return Command{Command: c.Command, StreamID: truncate(c.StreamID)}, rtm.Errorf(rtm.CodeInvalidMessage, "streamId is longer than %d bytes", rtm.MaxIDLen)
	case c.Command == "":
		return c, rtm.Errorf(rtm.CodeInvalidMessage, "message has no command")
	case len(c.Command) > 64:
		return c, rtm.Errorf(rtm.CodeInvalidMessage, "command is too long")
	case len(c.Token) > auth.MaxTokenLen:
		return c, rtm.Errorf(rtm.CodeInvalidMessage, "token is longer than %d bytes", auth.MaxTokenLen)
	case len(c.SDP) > rtm.MaxSDPLen:
		return c, rtm.Errorf(rtm.CodeInvalidSDP, "sdp is larger than %d bytes", rtm.MaxSDPLen)
	case len(c.Candidate) > rtm.MaxCandidateLen || len(c.ID) > rtm.MaxIDLen:
		return c, rtm.Errorf(rtm.CodeInvalidMessage, "candidate is longer than %d bytes", rtm.MaxCandidateLen)
	}
	return c, nil
}

// truncate keeps an echoed stream id short: the refusal of a malformed
// one must not send megabytes back.
func truncate(s string) string {
	if len(s) > rtm.MaxIDLen {
		return s[:rtm.MaxIDLen]
	}
	return s
}

// Server messages.

type start struct {
	Command  string `json:"command"`
	StreamID string `json:"streamId"`
}

// takeConfiguration carries the server's answer or offer. idMapping is
// always there: without it the SDK's play cannot find its tracks.
type takeConfiguration struct {
	Command   string            `json:"command"`
	StreamID  string            `json:"streamId"`
	Type      string            `json:"type"`
	SDP       string            `json:"sdp"`
	IDMapping map[string]string `json:"idMapping"`
}

type notification struct {
	Command    string `json:"command"`
	Definition string `json:"definition"`
	StreamID   string `json:"streamId,omitempty"`
}

type errorMessage struct {
	Command    string `json:"command"`
	Definition string `json:"definition"`
	StreamID   string `json:"streamId,omitempty"`
	// Message says in words what Definition says in code (rtmrec's
	// addition; the SDK hands the whole object to the page).
	Message string `json:"message,omitempty"`
}

type pong struct {
	Command string `json:"command"`
}

// iceServerConfig answers getIceServerConfig: the SDK takes one STUN or
// TURN URI (a TURN one with credentials).
type iceServerConfig struct {
	Command              string `json:"command"`
	StunServerURI        string `json:"stunServerUri"`
	TurnServerUsername   string `json:"turnServerUsername"`
	TurnServerCredential string `json:"turnServerCredential"`
}
