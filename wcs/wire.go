package wcs

import (
	"encoding/json"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/compat"
	"github.com/rtmrec/rtmrec/rtm"
)

// Client messages rtmrec acts on; every other one (pong, availableStream,
// sendData, ...) is ignored.
const (
	MsgConnection      = "connection"
	MsgPublishStream   = "publishStream"
	MsgPlayStream      = "playStream"
	MsgUnPublishStream = "unPublishStream"
	MsgStopStream      = "stopStream"
)

// Stream statuses of notifyStreamStatusEvent.
const (
	StatusPublishing  = "PUBLISHING"
	StatusPlaying     = "PLAYING"
	StatusUnpublished = "UNPUBLISHED"
	StatusStopped     = "STOPPED"
	StatusFailed      = "FAILED"
)

// Message is the envelope of every message, both ways: the SDK reads
// data[0] of each server message unconditionally, so data is always an
// array.
type Message struct {
	Message string            `json:"message"`
	Data    []json.RawMessage `json:"data"`
}

// Connection is data[0] of connection: rtmrec reads only the token a page
// passes as custom.token (other custom fields may be anything).
type Connection struct {
	Custom struct {
		Token string `json:"token"`
	} `json:"custom"`
}

// StreamRequest is data[0] of publishStream, playStream, unPublishStream
// and stopStream: the fields rtmrec reads.
type StreamRequest struct {
	MediaSessionID string `json:"mediaSessionId"`
	Name           string `json:"name"`
	Published      bool   `json:"published"`
	HasVideo       bool   `json:"hasVideo"`
	HasAudio       bool   `json:"hasAudio"`
	Record         bool   `json:"record"`
	MediaProvider  string `json:"mediaProvider"`
	SDP            string `json:"sdp"`
}

// Decode parses one client frame's envelope. Errors are *rtm.Error
// (invalid_message) that name what is wrong without echoing the input.
func Decode(frame []byte) (Message, error) {
	var m Message
	if !json.Valid(frame) {
		return m, rtm.Errorf(rtm.CodeInvalidMessage, "message is not valid JSON")
	}
	if err := json.Unmarshal(frame, &m); err != nil {
		return Message{}, rtm.Errorf(rtm.CodeInvalidMessage, "malformed message: %s", compat.DecodeProblem(err))
	}
	switch {
	case m.Message == "":
		return m, rtm.Errorf(rtm.CodeInvalidMessage, "message has no name")
	case len(m.Message) > 64:
		return Message{}, rtm.Errorf(rtm.CodeInvalidMessage, "message name is too long")
	}
	return m, nil
}

// DecodeConnection decodes connection's data[0]; a connection without
// data is one without a token.
func DecodeConnection(m Message) (Connection, error) {
	var c Connection
	if len(m.Data) == 0 || string(m.Data[0]) == "null" {
		return c, nil
	}
	var raw struct {
		Custom json.RawMessage `json:"custom"`
	}
	if err := json.Unmarshal(m.Data[0], &raw); err != nil {
		return c, rtm.Errorf(rtm.CodeInvalidMessage, "malformed connection: %s", compat.DecodeProblem(err))
	}
	// custom belongs to the page: only a token in it is rtmrec's business.
	if len(raw.Custom) > 0 && raw.Custom[0] == '{' {
		if err := json.Unmarshal(raw.Custom, &c.Custom); err != nil {
			return c, rtm.Errorf(rtm.CodeInvalidMessage, "malformed connection: custom.token must be a string")
		}
	}
	if len(c.Custom.Token) > auth.MaxTokenLen {
		return Connection{}, rtm.Errorf(rtm.CodeInvalidMessage, "token is longer than %d bytes", auth.MaxTokenLen)
	}
	return c, nil
}

// DecodeStream decodes a stream message's data[0]. A request whose
// mediaSessionId could be read carries it even when the rest is wrong, so
// the stream can be told it failed.
func DecodeStream(m Message) (StreamRequest, error) {
	var r StreamRequest
	if len(m.Data) == 0 {
		return r, rtm.Errorf(rtm.CodeInvalidMessage, "%s has no data", m.Message)
	}
	if err := json.Unmarshal(m.Data[0], &r); err != nil {
		var id struct {
			MediaSessionID string `json:"mediaSessionId"`
		}
		_ = json.Unmarshal(m.Data[0], &id)
		if len(id.MediaSessionID) > rtm.MaxIDLen || !printable(id.MediaSessionID) {
			id.MediaSessionID = ""
		}
		return StreamRequest{MediaSessionID: id.MediaSessionID}, rtm.Errorf(rtm.CodeInvalidMessage, "malformed %s: %s", m.Message, compat.DecodeProblem(err))
	}
	switch {
	case len(r.MediaSessionID) > rtm.MaxIDLen || !printable(r.MediaSessionID):
		return StreamRequest{}, rtm.Errorf(rtm.CodeInvalidMessage, "mediaSessionId must be at most %d printable characters", rtm.MaxIDLen)
	case r.MediaSessionID == "":
		return r, rtm.Errorf(rtm.CodeInvalidMessage, "mediaSessionId is required")
	case len(r.SDP) > rtm.MaxSDPLen:
		return r, rtm.Errorf(rtm.CodeInvalidSDP, "sdp is larger than %d bytes", rtm.MaxSDPLen)
	}
	return r, nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// Server messages.

// envelope is a server message; data is never null.
type envelope struct {
	Message string `json:"message"`
	Data    []any  `json:"data"`
}

// userData is data[0] of getUserData, which establishes the session.
type userData struct {
	AuthToken                 string   `json:"authToken"`
	Status                    string   `json:"status"`
	MediaProviders            []string `json:"mediaProviders"`
	UseWsTunnel               bool     `json:"useWsTunnel"`
	UseWsTunnelPacketization2 bool     `json:"useWsTunnelPacketization2"`
	UseBase64BinaryEncoding   bool     `json:"useBase64BinaryEncoding"`
	KeepAlive                 bool     `json:"keepAlive"`
}

// streamStatus is data[0] of notifyStreamStatusEvent.
type streamStatus struct {
	MediaSessionID string `json:"mediaSessionId"`
	Name           string `json:"name"`
	Published      bool   `json:"published"`
	HasVideo       bool   `json:"hasVideo"`
	HasAudio       bool   `json:"hasAudio"`
	Status         string `json:"status"`
	Info           string `json:"info,omitempty"`
	Record         bool   `json:"record"`
	RecordName     string `json:"recordName,omitempty"`
	MediaProvider  string `json:"mediaProvider"`
}

// failure is data[0] of fail: a problem that concerns no stream.
type failure struct {
	Info      string `json:"info"`
	APIMethod string `json:"apiMethod,omitempty"`
}
