// Package antmedia speaks Ant Media Server's WebSocket signaling (its
// `/{app}/websocket` endpoint, as its WebRTCAdaptor JavaScript SDK uses it)
// for rtmrec's session core (docs/compatibility.md): a page built on that SDK points
// it at rtmrec and is recorded and monitored, unmodified.
//
// A publish is a client session whose session id is the stream id; it is
// recorded from the moment it is established until its stop when the
// server has an upload URL template. A play is a supervisor session
// monitoring that stream; the server makes its offer.
//
//	C: publish            S: start
//	C: takeConfiguration (offer)        C: takeCandidate ...
//	S: takeConfiguration (answer, with every server candidate)
//	S: notification publish_started   (connected, and recording)
//	C: stop               S: notification publish_finished
//
//	C: play               S: takeConfiguration (offer, idMapping {})
//	C: takeConfiguration (answer)       S: notification play_started
//	C: stop               S: notification play_finished
//
// ping gets pong; getIceServerConfig gets the server's first TURN (else
// STUN) server; other commands are ignored. The server trickles no
// candidates: its SDP carries them all. Refusals are error messages with
// the definitions of Ant Media's catalogue (the Def constants) and, in
// "message", the reason in words.
package antmedia

import (
	"net/http"
	"strings"

	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/compat"
	"github.com/rtmrec/rtmrec/rtm"
)

// Error definitions sent in error messages. Those of Ant Media's catalogue
// mean what they mean there; DefInvalidMessage and DefRecordingFailed are
// rtmrec's, and a refusal the catalogue has no word for carries its RTM
// error code (internal, ...).
const (
	DefNoStreamNameSpecified   = "noStreamNameSpecified"          // a command without streamId
	DefInvalidStreamName       = "invalidStreamName"              // characters other than letters, digits, ._-
	DefNoStreamExist           = "no_stream_exist"                // play of a stream that is not live; a command for an unknown stream
	DefStreamIDInUse           = "streamIdInUse"                  // publish of a stream id already live
	DefAlreadyPlaying          = "already_playing"                // play of a stream this connection already plays
	DefUnauthorizedAccess      = "unauthorized_access"            // no, a bad, or the wrong role's token
	DefHighResourceUsage       = "highResourceUsage"              // a limit reached (sessions, recordings, disk, message rate)
	DefNotSetRemoteDescription = "notSetRemoteDescription"        // an SDP that cannot be applied
	DefNoCodecEnabled          = "no_codec_enabled_in_the_server" // an offer with nothing rtmrec can record
	DefPublishTimeoutError     = "publishTimeoutError"            // the publish never connected
	DefInvalidMessage          = "invalid_message"                // rtmrec: a frame that is not a command
	DefRecordingFailed         = "recording_failed"               // rtmrec: the publish could not be recorded, so it ended
)

// errNoStreamID refuses a command that needs a streamId and has none.
var errNoStreamID = rtm.Errorf(rtm.CodeInvalidMessage, "streamId is required")

// Notification definitions.
const (
	NotePublishStarted  = "publish_started"
	NotePublishFinished = "publish_finished"
	NotePlayStarted     = "play_started"
	NotePlayFinished    = "play_finished"
)

// Config configures the endpoint.
type Config struct {
	compat.Config
	// ICEServers are the server's STUN/TURN servers, offered to clients
	// that ask with getIceServerConfig.
	ICEServers []webrtc.ICEServer
}

// New returns the endpoint's handler, for GET /{app}/websocket (see
// IsPath; the query string, such as the SDK's ?target=origin, is
// ignored).
func New(cfg Config) http.Handler {
	ice := iceServerConfigFor(cfg.ICEServers)
	return compat.NewEndpoint(cfg.Config, "antmedia", compat.Keepalive{}, func(c *compat.Conn) compat.Protocol {
		return &conn{c: c, ice: ice}
	})
}

// IsPath reports whether an HTTP path is Ant Media's WebSocket endpoint,
// /{app}/websocket for any one-segment app.
func IsPath(path string) bool {
	app, rest, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	return ok && app != "" && rest == "websocket"
}

// iceServerConfigFor picks what the SDK can take: one TURN URI (with its
// credentials), else one STUN URI, else none.
func iceServerConfigFor(servers []webrtc.ICEServer) iceServerConfig {
	out := iceServerConfig{Command: "iceServerConfig"}
	for _, prefix := range []string{"turn:", "stun:"} {
		for _, s := range servers {
			for _, u := range s.URLs {
				if strings.HasPrefix(u, prefix) {
					out.StunServerURI = u
					if prefix == "turn:" {
						out.TurnServerUsername = s.Username
						out.TurnServerCredential, _ = s.Credential.(string)
					}
					return out
				}
			}
		}
	}
	return out
}

// conn is the Ant Media half of one connection.
type conn struct {
	c   *compat.Conn
	ice iceServerConfig
}

// Frame takes one command.
func (a *conn) Frame(frame []byte) {
	cmd, err := Decode(frame)
	if err != nil {
		a.refuse(cmd.StreamID, false, asRTM(err))
		return
	}
	switch cmd.Command {
	case CmdPing:
		a.c.Send(pong{Command: "pong"})
	case CmdGetIceServerConfig:
		a.c.Send(a.ice)
	case CmdPublish, CmdPlay:
		a.begin(cmd)
	case CmdTakeConfiguration:
		if st := a.stream(cmd); st != nil {
			if err := a.c.Describe(st, rtm.SessionDescription{Type: cmd.Type, SDP: cmd.SDP}); err != nil {
				a.Refused(st, err)
			}
		}
	case CmdTakeCandidate:
		if st := a.stream(cmd); st != nil && cmd.Candidate != "" {
			cand := rtm.ICECandidate{Candidate: cmd.Candidate}
			if cmd.ID != "" {
				cand.SDPMid = &cmd.ID
			}
			if cmd.Label.Set {
				cand.SDPMLineIndex = &cmd.Label.Index
			}
			a.c.Candidate(st, cand)
		}
	case CmdStop:
		// Stopping what is not there is not an error: the SDK stops before
		// each retry, also streams the server refused.
		if st := a.c.Stream(cmd.StreamID); st != nil {
			a.c.Stop(st)
		}
	default:
		a.c.Log().Debug("command ignored", "command", cmd.Command)
	}
}

// begin takes publish and play.
func (a *conn) begin(cmd Command) {
	play := cmd.Command == CmdPlay
	id := cmd.StreamID
	if id == "" {
		a.refuse("", play, errNoStreamID)
		return
	}
	if !compat.ValidStreamName(id) {
		a.refuse(id, play, compat.ErrInvalidName)
		return
	}
	if err := a.c.Authenticate(cmd.Token); err != nil {
		a.refuse(id, play, err)
		return
	}
	if play {
		if _, err := a.c.Play(id, id, nil); err != nil {
			a.refuse(id, play, err)
		}
		return
	}
	if _, err := a.c.Publish(id, id, nil, a.c.Recording()); err != nil {
		a.refuse(id, play, err)
		return
	}
	a.c.Send(start{Command: "start", StreamID: id})
}

// stream finds the stream a command names, or answers no_stream_exist.
func (a *conn) stream(cmd Command) *compat.Stream {
	if cmd.StreamID == "" {
		a.refuse("", false, errNoStreamID)
		return nil
	}
	st := a.c.Stream(cmd.StreamID)
	if st == nil {
		a.refuse(cmd.StreamID, false, rtm.Errorf(rtm.CodeSessionNotFound, "no stream %q on this connection", cmd.StreamID))
	}
	return st
}

// Refused answers a request about st (or, with st nil, a frame).
func (a *conn) Refused(st *compat.Stream, err *rtm.Error) {
	if st == nil {
		a.refuse("", false, err)
		return
	}
	a.refuse(st.Key, st.Play, err)
}

func (a *conn) refuse(streamID string, play bool, err *rtm.Error) {
	a.c.Send(errorMessage{Command: "error", Definition: Definition(err, play), StreamID: streamID, Message: err.Message})
}

// Description sends the server's answer (publish) or offer (play).
func (a *conn) Description(st *compat.Stream, d rtm.SessionDescription) {
	a.c.Send(takeConfiguration{Command: CmdTakeConfiguration, StreamID: st.Key, Type: d.Type, SDP: d.SDP, IDMapping: map[string]string{}})
}

// Live sends publish_started or play_started.
func (a *conn) Live(st *compat.Stream) {
	def := NotePublishStarted
	if st.Play {
		def = NotePlayStarted
	}
	a.c.Send(notification{Command: "notification", Definition: def, StreamID: st.Key})
}

// Ended says why the stream failed, if it did, then (if it had begun)
// publish_finished or play_finished.
func (a *conn) Ended(st *compat.Stream, cause rtm.Cause, err *rtm.Error) {
	switch {
	case err != nil && cause == "":
		a.refuse(st.Key, st.Play, err)
		return // it never began
	case err != nil:
		// It began, and ended because its recording could not start.
		def := DefRecordingFailed
		if err.Code == rtm.CodeServerBusy {
			def = DefHighResourceUsage
		}
		a.c.Send(errorMessage{Command: "error", Definition: def, StreamID: st.Key, Message: err.Message})
	case cause == rtm.CauseConnectTimeout && !st.Play:
		a.c.Send(errorMessage{Command: "error", Definition: DefPublishTimeoutError, StreamID: st.Key, Message: "the publish did not connect in time"})
	}
	def := NotePublishFinished
	if st.Play {
		def = NotePlayFinished
	}
	a.c.Send(notification{Command: "notification", Definition: def, StreamID: st.Key})
}

// Definition is the error definition of a refusal of a request about a
// play or a publish (or a frame).
func Definition(err *rtm.Error, play bool) string {
	switch err.Code {
	case rtm.CodeInvalidMessage:
		switch err {
		case compat.ErrInvalidName:
			return DefInvalidStreamName
		case errNoStreamID:
			return DefNoStreamNameSpecified
		}
		return DefInvalidMessage
	case rtm.CodeSessionExists:
		if play {
			return DefAlreadyPlaying
		}
		return DefStreamIDInUse
	case rtm.CodeSessionNotFound:
		return DefNoStreamExist
	case rtm.CodeUnauthorized:
		return DefUnauthorizedAccess
	case rtm.CodeServerBusy:
		return DefHighResourceUsage
	case rtm.CodeInvalidSDP:
		return DefNotSetRemoteDescription
	case rtm.CodeNotSupported:
		if play {
			return DefNoStreamExist // e.g. the stream id is a supervisor's
		}
		return DefNoCodecEnabled
	}
	return string(err.Code)
}

func asRTM(err error) *rtm.Error {
	if re, ok := err.(*rtm.Error); ok {
		return re
	}
	return rtm.Errorf(rtm.CodeInvalidMessage, "malformed command")
}
