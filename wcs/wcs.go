// Package wcs speaks Flashphoner Web Call Server's raw WebSocket API (as
// its Web SDK uses it, on rtmrec's /wcs) for rtmrec's session core
// (docs/compatibility.md): a page built on that SDK points it at rtmrec and is
// recorded and monitored, unmodified.
//
// A publishStream is a client session whose session id is the stream's
// name, recorded when its record flag is set; a playStream is a supervisor
// session monitoring that stream. The client always offers and nothing
// trickles: the server's answer carries every server candidate.
//
//	C: connection                 S: getUserData (ESTABLISHED)
//	C: publishStream (offer)      S: setRemoteSDP [id, answer, true]
//	                              S: notifyStreamStatusEvent PUBLISHING
//	C: unPublishStream            S: notifyStreamStatusEvent UNPUBLISHED
//	C: playStream (offer)         S: setRemoteSDP, then PLAYING
//	C: stopStream                 S: STOPPED
//
// A stream that cannot be served gets FAILED with the reason as info; a
// problem with no stream gets fail. The server sends ping every few
// seconds; every server message carries a data array.
package wcs

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/rtmrec/rtmrec/compat"
	"github.com/rtmrec/rtmrec/rtm"
)

// DefaultPingInterval is how often the server pings WCS clients (a page
// that counts missing pings gives up after a few of its own intervals).
const DefaultPingInterval = 5 * time.Second

// Config configures the endpoint.
type Config struct {
	compat.Config
	// PingInterval is how often the server sends ping (zero:
	// DefaultPingInterval).
	PingInterval time.Duration
}

// New returns the endpoint's handler, for GET /wcs.
func New(cfg Config) http.Handler {
	every := cfg.PingInterval
	if every <= 0 {
		every = DefaultPingInterval
	}
	ping := []byte(`{"message":"ping","data":[]}`)
	return compat.NewEndpoint(cfg.Config, "wcs", compat.Keepalive{Frame: ping, Interval: every}, func(c *compat.Conn) compat.Protocol {
		return &conn{c: c}
	})
}

// conn is the WCS half of one connection.
type conn struct {
	c *compat.Conn
}

// Frame takes one message.
func (w *conn) Frame(frame []byte) {
	m, err := Decode(frame)
	if err != nil {
		w.Refused(nil, asRTM(err))
		return
	}
	switch m.Message {
	case MsgConnection:
		w.connect(m)
	case MsgPublishStream, MsgPlayStream:
		w.begin(m)
	case MsgUnPublishStream, MsgStopStream:
		r, err := DecodeStream(m)
		if err != nil {
			w.failRequest(r, asRTM(err))
			return
		}
		if st := w.c.Stream(r.MediaSessionID); st != nil {
			w.c.Stop(st)
			return
		}
		w.status(r, StatusFailed, "Stream not found", "")
	default:
		w.c.Log().Debug("message ignored", "message", m.Message)
	}
}

// connect answers connection with getUserData, once its token (if the
// request brought none) is accepted. A connection refused is told why and
// closed.
func (w *conn) connect(m Message) {
	cn, err := DecodeConnection(m)
	if err != nil {
		w.Refused(nil, asRTM(err))
		return
	}
	if err := w.c.Authenticate(cn.Custom.Token); err != nil {
		w.c.Send(envelope{Message: "fail", Data: []any{failure{Info: err.Message, APIMethod: MsgConnection}}})
		w.c.Close(websocket.ClosePolicyViolation, "unauthorized")
		return
	}
	var id [12]byte
	_, _ = rand.Read(id[:])
	w.c.Send(envelope{Message: "getUserData", Data: []any{userData{
		AuthToken: hex.EncodeToString(id[:]), Status: "ESTABLISHED", MediaProviders: []string{"WebRTC"},
	}}})
}

// begin takes publishStream and playStream.
func (w *conn) begin(m Message) {
	r, err := DecodeStream(m)
	if err != nil {
		w.failRequest(r, asRTM(err))
		return
	}
	play := m.Message == MsgPlayStream
	var refusal *rtm.Error
	switch {
	case r.MediaProvider != "" && r.MediaProvider != "WebRTC":
		refusal = rtm.Errorf(rtm.CodeNotSupported, "mediaProvider %s is not supported; use WebRTC", truncate(r.MediaProvider))
	case r.SDP == "":
		refusal = rtm.Errorf(rtm.CodeInvalidMessage, "sdp is required")
	default:
		offer := &rtm.SessionDescription{Type: "offer", SDP: r.SDP}
		var st *compat.Stream
		if play {
			st, refusal = w.c.Play(r.MediaSessionID, r.Name, offer)
		} else {
			st, refusal = w.c.Publish(r.MediaSessionID, r.Name, offer, r.Record)
		}
		if st != nil {
			st.Data = r
		}
	}
	if refusal != nil {
		w.failRequest(r, refusal)
	}
}

// failRequest answers a stream request that failed: FAILED for the stream
// when its mediaSessionId is known, fail otherwise.
func (w *conn) failRequest(r StreamRequest, err *rtm.Error) {
	if r.MediaSessionID == "" {
		w.Refused(nil, err)
		return
	}
	w.status(r, StatusFailed, info(err), "")
}

// Refused answers a request that was not taken.
func (w *conn) Refused(st *compat.Stream, err *rtm.Error) {
	if st == nil {
		w.c.Send(envelope{Message: "fail", Data: []any{failure{Info: info(err)}}})
		return
	}
	w.c.Send(envelope{Message: "fail", Data: []any{failure{Info: info(err), APIMethod: "StreamStatusEvent"}}})
}

// Description sends the server's answer as setRemoteSDP. A server offer
// (a track the played stream gained later) is not sent: the SDK would
// apply it and never answer, and the play goes on with what it has.
func (w *conn) Description(st *compat.Stream, d rtm.SessionDescription) {
	if d.Type != "answer" {
		w.c.Log().Info("a track the stream gained is not offered to the WCS player", "session_id", st.SessionID())
		return
	}
	w.c.Send(envelope{Message: "setRemoteSDP", Data: []any{st.Key, d.SDP, true}})
}

// Live sends PUBLISHING (with the recording's name when it records) or
// PLAYING.
func (w *conn) Live(st *compat.Stream) {
	r := request(st)
	if st.Play {
		w.status(r, StatusPlaying, "", "")
		return
	}
	name := ""
	if st.Record {
		name = st.RecordingID + "." + st.Format
	}
	w.status(r, StatusPublishing, "", name)
}

// Ended sends UNPUBLISHED or STOPPED for an end the client asked for (or,
// for a play, the publisher's end), FAILED with the reason otherwise.
func (w *conn) Ended(st *compat.Stream, cause rtm.Cause, err *rtm.Error) {
	r := request(st)
	switch {
	case err != nil && cause != "":
		w.status(r, StatusFailed, "Recording failed: "+err.Message, "")
	case err != nil:
		w.status(r, StatusFailed, info(err), "")
	case cause == rtm.CauseClient && st.Play:
		w.status(r, StatusStopped, "Stopped by user", "")
	case cause == rtm.CauseClient:
		w.status(r, StatusUnpublished, "Stopped by publisher stop", "")
	case cause == rtm.CauseMonitoredSessionEnd:
		w.status(r, StatusStopped, "Stopped by publisher stop", "")
	default:
		w.status(r, StatusFailed, causeInfo(cause), "")
	}
}

func (w *conn) status(r StreamRequest, status, info, recordName string) {
	w.c.Send(envelope{Message: "notifyStreamStatusEvent", Data: []any{streamStatus{
		MediaSessionID: r.MediaSessionID, Name: r.Name, Published: r.Published,
		HasVideo: r.HasVideo, HasAudio: r.HasAudio, Status: status, Info: info,
		Record: r.Record, RecordName: recordName, MediaProvider: "WebRTC",
	}}})
}

// request is what the client said of a stream, echoed in its statuses.
func request(st *compat.Stream) StreamRequest {
	if r, ok := st.Data.(StreamRequest); ok {
		return r
	}
	return StreamRequest{MediaSessionID: st.Key, Name: st.Name, Published: !st.Play}
}

// info words a refusal for FAILED's info (and getInfo() in the page).
func info(err *rtm.Error) string {
	switch err.Code {
	case rtm.CodeSessionNotFound:
		return "Stream not found: " + err.Message
	case rtm.CodeUnauthorized:
		return "Unauthorized: " + err.Message
	}
	return err.Message
}

// causeInfo words a session's end that nobody asked for.
func causeInfo(cause rtm.Cause) string {
	switch cause {
	case rtm.CauseConnectTimeout:
		return "Media did not connect in time (" + string(cause) + ")"
	case rtm.CauseMediaTimeout:
		return "Media connection lost (" + string(cause) + ")"
	case rtm.CauseServerShutdown:
		return "Server is shutting down (" + string(cause) + ")"
	case rtm.CauseMaxDuration:
		return "Maximum duration reached (" + string(cause) + ")"
	}
	return "Stream ended (" + string(cause) + ")"
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32]
	}
	return s
}

func asRTM(err error) *rtm.Error {
	if re, ok := err.(*rtm.Error); ok {
		return re
	}
	return rtm.Errorf(rtm.CodeInvalidMessage, "malformed message")
}
