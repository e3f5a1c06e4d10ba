package compat

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"

	"github.com/gorilla/websocket"

	"github.com/rtmrec/rtmrec/internal/wsconn"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/session"
)

// MaxStreams bounds the publishes and plays of one connection (the
// session core's bound of sessions per /rtm connection).
const MaxStreams = 16

// eventQueue bounds what the core has said and the connection has not yet
// translated. The connection's goroutine never waits on anything, so a
// full queue means it is stuck: the client is then cut off.
const eventQueue = 256

// identity is who stands behind a connection once a token was accepted.
type identity struct {
	principal   session.Principal // nil: anonymous (no authentication)
	token       string            // the raw token that established it ("" without authentication)
	fromRequest bool              // established by the request's own token
}

// Conn is one client connection: its streams and their sessions. Its
// state is owned by one goroutine, which takes the client's frames and
// what the core says about the streams, in turn.
type Conn struct {
	ep    *Endpoint
	ws    *wsconn.Conn
	proto Protocol
	log   *slog.Logger

	who     *identity // nil until a token was accepted
	control *session.Link
	streams map[string]*Stream // by Key
	// open are the streams whose session's link is open, including a
	// stopping one whose key was taken by a new publish.
	open map[*Stream]struct{}
	// held counts, per session id, the publishes' links not yet closed: a
	// publish of an id whose earlier session is still ending waits for it.
	held map[string]int

	events  chan func()
	over    chan struct{} // closed when the goroutine stopped taking events
	closers sync.WaitGroup
}

func newConn(e *Endpoint, ws *wsconn.Conn, who *identity) *Conn {
	c := &Conn{
		ep: e, ws: ws, who: who,
		log:     e.cfg.Logger.With("endpoint", e.name, "remote", ws.RemoteAddr()),
		streams: map[string]*Stream{},
		held:    map[string]int{},
		open:    map[*Stream]struct{}{},
		events:  make(chan func(), eventQueue),
		over:    make(chan struct{}),
	}
	// The connection's own link carries no session: it counts the client's
	// frames against the message rate, and is how a server shutdown closes
	// the connection.
	c.control = e.cfg.Sessions.NewLink(nil, outlet{c: c}, session.LinkOptions{Remote: ws.RemoteAddr()})
	c.proto = e.newProtocol(c)
	return c
}

// frame is what the reader hands to the connection's goroutine.
type frame struct {
	kind int
	data []byte
	err  error
}

// serve runs the connection until the client or the server ends it, then
// ends its sessions (TERM_BY_DISCONNECT; their recordings are still
// finished and uploaded).
func (c *Conn) serve() {
	frames := make(chan frame)
	go func() {
		defer close(frames)
		for {
			kind, data, err := c.ws.Read()
			if err != nil && !errors.Is(err, wsconn.ErrTooLarge) {
				return
			}
			select {
			case frames <- frame{kind, data, err}:
			case <-c.ws.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for open := true; open; {
		select {
		case f, ok := <-frames:
			if !ok {
				open = false
				break
			}
			c.onFrame(f)
		case ev := <-c.events:
			ev()
		}
	}
	close(c.over)
	for st := range c.open {
		st.link.Close()
	}
	c.control.Close()
	c.closers.Wait()
	c.ws.Shut()
}

// post hands f to the connection's goroutine. It never blocks: the core
// calls it.
func (c *Conn) post(f func()) {
	select {
	case <-c.over:
		return
	default:
	}
	select {
	case c.events <- f:
	default:
		c.log.Warn("connection cannot keep up with its sessions' events; closing it")
		c.ws.CloseWith(websocket.CloseInternalServerErr, "overloaded")
	}
}

func (c *Conn) onFrame(f frame) {
	if !c.control.Allow() {
		var re *rtm.Error
		if errors.As(c.control.RateError(), &re) {
			c.proto.Refused(nil, re)
		}
		return
	}
	switch {
	case errors.Is(f.err, wsconn.ErrTooLarge):
		c.proto.Refused(nil, rtm.Errorf(rtm.CodeInvalidMessage, "frames are limited to %d bytes", session.MaxFrameBytes))
		c.ws.CloseWith(websocket.CloseMessageTooBig, "frame too large")
	case f.kind != websocket.TextMessage:
		c.proto.Refused(nil, rtm.Errorf(rtm.CodeInvalidMessage, "binary frames are not part of the protocol; send JSON text frames"))
	default:
		c.proto.Frame(f.data)
	}
}

// Send writes v as a JSON text frame to the client.
func (c *Conn) Send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		c.log.Error("encode message", "err", err)
		return
	}
	c.ws.Send(b)
}

// Close ends the connection after what was sent, with a WebSocket close
// code and reason.
func (c *Conn) Close(code int, reason string) { c.ws.CloseWith(code, reason) }

// Log is the connection's logger.
func (c *Conn) Log() *slog.Logger { return c.log }

// Recording reports whether publishes can be recorded on this server.
func (c *Conn) Recording() bool { return c.ep.Recording() }

// Authenticate accepts a token carried in the protocol (Ant Media's token
// of publish/play, WCS's custom.token of connection). A token on the
// request itself wins: the protocol's is then not consulted. Otherwise the
// first token accepted fixes the connection's identity, and another token
// later is refused: one connection, one identity. Without authentication
// on the server, tokens are ignored.
func (c *Conn) Authenticate(token string) *rtm.Error {
	switch {
	case c.who != nil && (c.who.fromRequest || c.ep.cfg.Tokens == nil || token == "" || token == c.who.token):
		return nil
	case c.who != nil:
		return rtm.Errorf(rtm.CodeUnauthorized, "this connection already carries another token; connect again to use a different one")
	case token == "":
		return rtm.Errorf(rtm.CodeUnauthorized, "a token is required (access_token parameter, Authorization header or the protocol's token field)")
	}
	p, err := c.ep.cfg.Tokens.Verify(token)
	if err != nil {
		return rtm.Errorf(rtm.CodeUnauthorized, "%v", err)
	}
	c.who = &identity{principal: p, token: token}
	return nil
}

// Stream returns the live stream with the protocol's key, or nil.
func (c *Conn) Stream(key string) *Stream { return c.streams[key] }

// Publish starts a publish: a client session whose id is name. Without an
// offer it waits for one (Describe). A refusal that needs no session is
// returned; the session's own is reported through Protocol.Ended.
func (c *Conn) Publish(key, name string, offer *rtm.SessionDescription, record bool) (*Stream, *rtm.Error) {
	if record && !c.Recording() {
		return nil, rtm.Errorf(rtm.CodeNotSupported, "recording is not configured on this server")
	}
	for _, other := range c.streams {
		if !other.Play && other.Name == name && !other.stopping {
			return nil, rtm.Errorf(rtm.CodeSessionExists, "stream %q is already being published on this connection", name)
		}
	}
	st, err := c.add(&Stream{Key: key, Name: name, Record: record, sessionID: name})
	if err != nil {
		return nil, err
	}
	if offer != nil {
		c.launch(st, offer)
	}
	return st, nil
}

// Play starts a play of the stream name: a supervisor session monitoring
// it. Without an offer the server makes one (Protocol.Description).
func (c *Conn) Play(key, name string, offer *rtm.SessionDescription) (*Stream, *rtm.Error) {
	st, err := c.add(&Stream{Key: key, Name: name, Play: true, sessionID: playSessionID(name)})
	if err != nil {
		return nil, err
	}
	c.launch(st, offer)
	return st, nil
}

func (c *Conn) add(st *Stream) (*Stream, *rtm.Error) {
	switch {
	case c.who == nil:
		return nil, rtm.Errorf(rtm.CodeUnauthorized, "a token is required (access_token parameter, Authorization header or the protocol's token field)")
	case !ValidStreamName(st.Name):
		return nil, ErrInvalidName
	case c.who.principal != nil && !st.Play && !c.who.principal.MayRecord():
		// The core refuses it too, but only once the offer came: say it now.
		return nil, rtm.Errorf(rtm.CodeUnauthorized, "this token may not publish")
	case c.who.principal != nil && st.Play && !c.who.principal.MaySupervise(st.Name):
		return nil, rtm.Errorf(rtm.CodeUnauthorized, "this token may not play stream %q", st.Name)
	case c.streams[st.Key] != nil && !c.streams[st.Key].stopping:
		// One that is stopping is on its way out; its end is still
		// reported, and a publish of its id waits for it (launch).
		return nil, rtm.Errorf(rtm.CodeSessionExists, "stream %q is already active on this connection", st.Key)
	case len(c.streams) >= MaxStreams:
		return nil, rtm.Errorf(rtm.CodeServerBusy, "at most %d streams per connection", MaxStreams)
	}
	c.streams[st.Key] = st
	return st, nil
}

// playSessionID names a play's supervisor session: the stream id it
// monitors, and a random part so that several plays of it can coexist.
func playSessionID(name string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return name + "~play-" + hex.EncodeToString(b[:])
}

// launch opens the stream's session, unless the previous session of the
// same id (a publish stopped and sent again, as Ant Media's SDK does when
// it hears no answer in time) is still being torn down: then it waits for
// it (resume).
func (c *Conn) launch(st *Stream, offer *rtm.SessionDescription) {
	st.offer = offer
	if !st.Play {
		if c.held[st.sessionID] > 0 {
			st.phase = waitTurn
			return
		}
		c.held[st.sessionID]++
	}
	st.phase = starting
	c.open[st] = struct{}{}
	// In a cluster the session may live on another node (a play of a
	// stream published there, a publish placed where there is room): the
	// token travels with it.
	st.link = c.ep.cfg.Sessions.Connect(c.who.principal, c.who.token, outlet{c: c, st: st}, session.LinkOptions{
		CompleteGathering: true, Remote: c.ws.RemoteAddr(), UploadURLTemplate: true,
	})
	var m rtm.Message
	if st.Play {
		m = c.message(rtm.TypeSupervisorJoinSession, st, rtm.SupervisorJoin{SDP: offer, SessionIDToMonitor: st.Name, WebhookURL: c.ep.cfg.WebhookURL})
	} else {
		m = c.message(rtm.TypeSessionStart, st, rtm.SessionStart{SDP: offer, WebhookURL: c.ep.cfg.WebhookURL})
	}
	st.link.Handle(m)
}

// resume launches the publishes that waited for the teardown of an earlier
// session with their id.
func (c *Conn) resume(sessionID string) {
	for _, st := range c.streams {
		if st.phase == waitTurn && st.sessionID == sessionID {
			c.launch(st, st.offer)
		}
	}
}

// Describe takes the client's offer (the first one of an Ant Media
// publish, or a renegotiation) or its answer to the server's offer.
func (c *Conn) Describe(st *Stream, d rtm.SessionDescription) *rtm.Error {
	if err := d.Validate(); err != nil {
		var re *rtm.Error
		errors.As(err, &re)
		return re
	}
	switch st.phase {
	case waitOffer:
		if d.Type != "offer" {
			return rtm.Errorf(rtm.CodeInvalidSDP, "the publish needs an offer first")
		}
		c.launch(st, &d)
	case waitTurn:
		if d.Type == "offer" {
			st.offer = &d
		}
	case ended:
		return rtm.Errorf(rtm.CodeSessionNotFound, "stream %q has ended", st.Key)
	default:
		st.link.Handle(c.message(rtm.TypeSDPUpdate, st, rtm.SDPUpdate{SDP: &d}))
	}
	return nil
}

// Candidate takes one of the client's ICE candidates. Candidates that
// come before the stream has a session are dropped: the server learns the
// client's address from its connectivity checks anyway.
func (c *Conn) Candidate(st *Stream, cand rtm.ICECandidate) {
	if st.link == nil || st.phase == ended {
		return
	}
	st.link.Handle(c.message(rtm.TypeCandidate, st, rtm.CandidateData{Candidate: &cand}))
}

// Stop ends the stream at the client's request; Protocol.Ended follows
// when its session has ended.
func (c *Conn) Stop(st *Stream) {
	switch {
	case st.phase == waitOffer || st.phase == waitTurn:
		c.finish(st, rtm.CauseClient, nil)
	case st.phase == ended || st.stopping:
	default:
		st.stopping = true
		st.link.Handle(c.message(rtm.TypeSessionStop, st, nil))
	}
}

func (c *Conn) message(t rtm.Type, st *Stream, data any) rtm.Message {
	m, err := rtm.NewMessage(t, c.ep.name, st.sessionID, data)
	if err != nil {
		// Our own types always encode.
		c.log.Error("encode request", "type", t, "err", err)
	}
	return m
}

// fromCore takes what the core said about a stream's session.
func (c *Conn) fromCore(st *Stream, m rtm.Message) {
	if st.phase == ended {
		c.log.Debug("message of an ended stream", "session_id", st.sessionID, "type", m.Type)
		return
	}
	switch m.Type {
	case rtm.TypeSDPUpdate:
		var d rtm.SDPUpdate
		if json.Unmarshal(m.Data, &d) == nil && d.SDP != nil && !st.stopping {
			c.proto.Description(st, *d.SDP)
		}
	case rtm.TypeSessionState:
		var d rtm.SessionState
		if json.Unmarshal(m.Data, &d) != nil {
			return
		}
		switch {
		case d.State == rtm.StateConnected && st.phase == starting:
			if st.Record {
				st.phase = recordStart
				st.link.Handle(c.message(rtm.TypeRecordingStart, st, rtm.RecordingStart{UploadURL: c.ep.cfg.UploadURL}))
				return
			}
			st.phase = live
			c.proto.Live(st)
		case d.State == rtm.StateTerminated:
			c.finish(st, d.TerminationCause, st.failure)
		}
	case rtm.TypeRecordingState:
		var d rtm.RecordingStateData
		if json.Unmarshal(m.Data, &d) != nil {
			return
		}
		if d.State == rtm.RecordingStarted && st.phase == recordStart {
			st.RecordingID, st.Format = d.RecordingID, d.Format
			st.phase = live
			c.proto.Live(st)
		}
	case rtm.TypeError:
		var d rtm.ErrorData
		if json.Unmarshal(m.Data, &d) != nil {
			return
		}
		err := &rtm.Error{Code: d.Code, Message: d.Message}
		switch d.RequestType {
		case rtm.TypeSessionStart, rtm.TypeSupervisorJoinSession:
			c.finish(st, "", err) // the session never began
		case rtm.TypeRecordingStart:
			// A publish that should record and cannot must not look
			// recorded: it ends, saying why.
			c.log.Warn("recording refused; ending the stream", "session_id", st.sessionID, "code", d.Code, "reason", d.Message)
			st.failure = err
			c.Stop(st)
		default:
			c.proto.Refused(st, err)
		}
	}
}

// finish ends a stream, tells the client, and closes its session's link
// in the background; a publish of the same id waits until that is done.
func (c *Conn) finish(st *Stream, cause rtm.Cause, err *rtm.Error) {
	st.phase = ended
	if c.streams[st.Key] == st {
		delete(c.streams, st.Key)
	}
	if st.stopping && cause == "" && err == nil {
		cause = rtm.CauseClient
	}
	c.proto.Ended(st, cause, err)
	if st.link == nil {
		return
	}
	delete(c.open, st)
	link := st.link
	if st.Play {
		c.closers.Go(link.Close)
		return
	}
	id := st.sessionID
	c.closers.Go(func() {
		link.Close()
		c.post(func() {
			if c.held[id]--; c.held[id] == 0 {
				delete(c.held, id)
				c.resume(id)
			}
		})
	})
}

// outlet is a stream's Outlet (or, without a stream, the connection's):
// what the core says is handed to the connection's goroutine, in order.
type outlet struct {
	c  *Conn
	st *Stream
}

func (o outlet) Send(m rtm.Message) {
	if o.st != nil {
		o.c.post(func() { o.c.fromCore(o.st, m) })
	}
}

// Close is the server's shutdown: it comes after the sessions' last
// messages, which are translated before the connection closes.
func (o outlet) Close() { o.c.post(o.c.ws.Close) }
