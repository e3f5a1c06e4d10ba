package compat

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/session"
)

// Stream is one publish or play of a connection.
type Stream struct {
	// Key is the protocol's handle for the stream (Ant Media's stream id,
	// WCS's media session id).
	Key string
	// Name is the stream id: the session id of the publish, or the one a
	// play monitors.
	Name string
	// Play is set for a play (a supervisor session).
	Play bool
	// Record is set for a publish that is recorded.
	Record bool
	// RecordingID and Format (ogg, webm, mkv) describe the recording once
	// the stream is live.
	RecordingID, Format string
	// Data is the protocol's own state for the stream.
	Data any

	sessionID string
	phase     phase
	offer     *rtm.SessionDescription // waiting for its turn
	link      *session.Conn           // the session's way into the core, on this node or another
	stopping  bool
	failure   *rtm.Error // why a stopping stream failed
}

// SessionID is the id of the stream's RTM session.
func (st *Stream) SessionID() string { return st.sessionID }

// phase is where a stream is in its life.
type phase int

const (
	waitOffer   phase = iota // a publish waiting for the client's offer
	waitTurn                 // an earlier session with its id is still ending
	starting                 // the session is being set up and connected
	recordStart              // connected; its recording is being started
	live                     // reported live to the client
	ended
)

// ErrInvalidName refuses a stream id that is empty, too long, or has
// characters other than letters, digits and "._-" (they are session ids,
// file names and URL path segments; "~" is left for plays' session ids).
var ErrInvalidName = rtm.Errorf(rtm.CodeInvalidMessage, "invalid stream name: use 1 to %d letters, digits and ._-", maxNameLen)

// maxNameLen keeps a play's session id (the name and a suffix) within
// rtm.MaxIDLen.
const maxNameLen = 100

// ValidStreamName reports whether a stream id is acceptable.
func ValidStreamName(name string) bool {
	if name == "" || len(name) > maxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch b := name[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '.', b == '_', b == '-':
		default:
			return false
		}
	}
	return true
}

// DecodeProblem says what in a client's message failed to decode, naming
// the field, never the value (errors must not echo the client's input).
func DecodeProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return "field " + strconv.Quote(te.Field) + " has the wrong type"
	}
	return "not an object of the expected fields"
}
