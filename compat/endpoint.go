// Package compat is what rtmrec's compatibility endpoints (docs/compatibility.md)
// share: a WebSocket of another media server's signaling protocol whose
// publishes and plays are RTM sessions of the session core. A publish is a
// client session whose session id is the stream id; a play is a supervisor
// session monitoring that stream. Lifecycle, limits, recordings, manifests
// and webhooks are therefore exactly those of /rtm sessions.
//
// A recorded publish starts its recording when its session is CONNECTED
// (no media flows before) and is reported live to the client once the
// recording runs: a publish the SDK abandons before it connects (and sends
// again) leaves no empty recording behind, and a client never hears
// "publishing" of a publish that is not being recorded. One that cannot be
// recorded is ended, with the reason.
//
// A protocol package (antmedia, wcs) decodes the client's frames into calls
// on a Conn and encodes what the Conn reports back (a Protocol).
// Authentication, the streams' sessions, their recordings and the order of
// it all are kept here, once for both protocols.
package compat

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/internal/wsconn"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/session"
)

// Verifier checks a raw token (from the request or carried in the
// protocol) and says who it stands for.
type Verifier interface {
	Verify(token string) (session.Principal, error)
}

// Config is what the compatibility endpoints need from the server.
type Config struct {
	// Sessions is the session core.
	Sessions *session.Server
	// Tokens verifies tokens; nil when the server runs without
	// authentication.
	Tokens Verifier
	// UploadURL is the operator's upload URL template
	// (-compat-upload-url, see session.ExpandUploadURL); empty means these
	// streams cannot be recorded.
	UploadURL string
	// WebhookURL receives the events of these sessions and recordings
	// (-compat-webhook-url); empty sends none.
	WebhookURL string
	// Logger is required.
	Logger *slog.Logger
	// PingInterval and WriteTimeout tune the WebSocket (zero: the
	// defaults of /rtm).
	PingInterval, WriteTimeout time.Duration
}

// Protocol is one wire protocol's half of a connection: the Conn calls it
// with the client's frames and with what became of the streams. Its
// methods run on the connection's goroutine, one at a time; they answer
// the client with Conn.Send.
type Protocol interface {
	// Frame takes one text frame from the client.
	Frame(frame []byte)
	// Refused answers a request that was not taken: st is the stream it
	// concerns, or nil for the connection (a frame refused unread, a
	// malformed one, a flood).
	Refused(st *Stream, err *rtm.Error)
	// Description passes the server's answer to the client's offer, or the
	// server's own offer.
	Description(st *Stream, d rtm.SessionDescription)
	// Live says the stream is established: its session is CONNECTED and,
	// if it records, its recording has started.
	Live(st *Stream)
	// Ended says the stream is over. cause is its session's termination
	// cause (TERM_BY_CLIENT after the client's stop), or empty when the
	// session never began (err then says why). An err with a cause is a
	// recording that could not start: the stream was ended for it.
	Ended(st *Stream, cause rtm.Cause, err *rtm.Error)
}

// Endpoint serves one protocol's WebSocket.
type Endpoint struct {
	cfg         Config
	name        string
	ws          wsconn.Config
	upgrader    websocket.Upgrader
	newProtocol func(*Conn) Protocol
}

// Keepalive is an application-level ping a protocol's clients expect from
// the server.
type Keepalive struct {
	Frame    []byte
	Interval time.Duration
}

// NewEndpoint builds the endpoint of a protocol. name is the client_id of
// its sessions, so webhooks and listings tell which endpoint they came
// through; newProtocol makes the protocol's half of each connection.
func NewEndpoint(cfg Config, name string, keepalive Keepalive, newProtocol func(*Conn) Protocol) *Endpoint {
	e := &Endpoint{
		cfg: cfg, name: name, newProtocol: newProtocol,
		ws: wsconn.Config{
			PingInterval: cfg.PingInterval, WriteTimeout: cfg.WriteTimeout,
			MaxFrame: session.MaxFrameBytes, Queue: outboxSize,
			Keepalive: keepalive.Frame, KeepaliveInterval: keepalive.Interval,
		},
	}
	e.upgrader = websocket.Upgrader{ReadBufferSize: 4096, WriteBufferSize: 4096, CheckOrigin: cfg.Sessions.CheckOrigin}
	return e
}

// Recording reports whether publishes can be recorded (an upload URL
// template is configured).
func (e *Endpoint) Recording() bool { return e.cfg.UploadURL != "" }

// outboxSize bounds the frames queued for one client, as on /rtm.
const outboxSize = 256

// ServeHTTP takes the principal a gate in front attached to the request
// or else authenticates the request's own token, if it has one (a bad one
// gets HTTP 401 and no WebSocket; without one, the protocol's token is
// needed); then it upgrades and runs the connection until it ends.
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	done, ok := e.cfg.Sessions.Admit()
	if !ok {
		http.Error(w, "server is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer done()
	var who *identity
	if p, ok := session.PrincipalFrom(r.Context()); ok {
		// Verified in front (the server's gate).
		who = &identity{principal: p, token: session.TokenFrom(r.Context()), fromRequest: true}
	} else if e.cfg.Tokens == nil {
		who = &identity{} // no authentication: anonymous, may do everything
	} else if tok := auth.TokenFromRequest(r); tok != "" {
		p, err := e.cfg.Tokens.Verify(tok)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rtmrec", error="invalid_token"`)
			http.Error(w, "unauthorized: "+err.Error(), http.StatusUnauthorized)
			return
		}
		who = &identity{principal: p, token: tok, fromRequest: true}
	}
	ws, err := e.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered
	}
	c := newConn(e, wsconn.New(ws, e.ws), who)
	c.serve()
}
