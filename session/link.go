package session

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rtmrec/rtmrec/internal/limits"
	"github.com/rtmrec/rtmrec/rtm"
)

// Outlet receives what the core says to one client connection, as RTM
// server messages: sdp_update (an answer, or a server offer), candidate,
// session_state, recording_state, error and pong. Front ends (the /rtm
// WebSocket, the Ant Media and WCS endpoints, the cluster relay) translate
// them into their wire protocol. Send must not block: it queues and
// returns. It is called from several goroutines, but the messages of one
// session come in the order the core produced them.
type Outlet interface {
	Send(m rtm.Message)
}

// Closer is implemented by outlets whose connection the server must close
// itself when it shuts down (a hijacked WebSocket outlives http.Server's
// Shutdown).
type Closer interface {
	Close()
}

// LinkOptions adapt the core to a front end.
type LinkOptions struct {
	// CompleteGathering makes every answer and offer the core sends carry
	// all of the server's ICE candidates (it waits for gathering to
	// complete, bounded), for protocols without trickle (WCS, Ant Media's
	// answer); candidates are then not trickled.
	CompleteGathering bool
	// Remote is the client's address (after trusted proxies), for logs.
	Remote string
	// UploadURLTemplate makes the upload_url of recording_start a template
	// (see ExpandUploadURL), for front ends whose protocol carries no URL
	// and which send the operator's instead: the recording's id and format
	// are only known once the core has chosen them.
	UploadURLTemplate bool
}

// gatherWait bounds how long an answer or offer waits for the server's
// candidates: host candidates take milliseconds; a slow STUN server must
// not hold the answer hostage. A trickling client gets the rest later.
const (
	gatherWaitTrickle  = 150 * time.Millisecond
	gatherWaitComplete = 2 * time.Second
)

// Link is one client connection's view of the core: the sessions it
// started, its principal (authentication, tenant, role) and its message
// rate. A front end opens one per connection with Server.NewLink, feeds it
// with Handle from one goroutine, and ends it with Close.
type Link struct {
	srv     *Server
	out     Outlet
	opts    LinkOptions
	log     *slog.Logger
	limiter *limits.TokenBucket
	// grant is the link's principal; token_refresh replaces it while the
	// sessions read it.
	grant atomic.Pointer[grant]
	// carry takes a token token_refresh accepted to the connection's
	// sessions on other nodes (a cluster's TokenCarrier); nil otherwise.
	carry func(token string)

	mu       sync.Mutex
	sessions map[string]*Session
	closed   bool
}

// NewLink opens a client connection's view of the core.
func (s *Server) NewLink(p Principal, out Outlet, opts LinkOptions) *Link {
	if p == nil {
		p = anonymous{}
	}
	l := &Link{
		srv: s, out: out, opts: opts,
		log:      s.log.With("remote", opts.Remote),
		limiter:  limits.NewTokenBucket(s.cfg.MessageRate, s.cfg.MessageBurst, time.Now),
		sessions: map[string]*Session{},
	}
	l.grant.Store(&grant{p: p, until: p.ExpiresAt()})
	s.mu.Lock()
	s.links[l] = struct{}{}
	s.mu.Unlock()
	return l
}

// Allow counts one frame from the client against the link's message rate
// (docs/configuration.md). Front ends call it for every frame they read, malformed
// ones included, and drop a frame it refuses (answering RateError).
func (l *Link) Allow() bool { return l.limiter.Allow() }

// RateError is what a client hears when Allow refused its frame.
func (l *Link) RateError() error {
	l.srv.metrics.limits.WithLabelValues(limitMessageRate).Inc()
	return rtm.Errorf(rtm.CodeServerBusy, "too many messages: at most %.0f per second", l.srv.cfg.MessageRate)
}

// Handle takes one client message. It never waits for disk, DNS or
// another session: a session's work happens on its own goroutine, and
// replies and errors come back through the Outlet.
func (l *Link) Handle(m rtm.Message) {
	l.srv.metrics.messages.WithLabelValues(string(m.Type)).Inc()
	if err := l.dispatch(m); err != nil {
		l.SendError(m, err)
	}
}

// dispatch routes one message; an error is answered to the client.
func (l *Link) dispatch(m rtm.Message) error {
	switch m.Type {
	case rtm.TypeSessionStart, rtm.TypeSupervisorJoinSession, rtm.TypeRecordingStart:
		// What starts something needs a token that is still valid; what
		// keeps a running session going does not (see Session.run).
		if err := l.unexpired(time.Now()); err != nil {
			return err
		}
	}
	switch m.Type {
	case rtm.TypePing:
		l.sendMessage(rtm.TypePong, m.ClientID, m.SessionID, nil)
		return nil
	case rtm.TypeTokenRefresh:
		return l.refresh(m)
	case rtm.TypeSessionStart:
		var d rtm.SessionStart
		if err := rtm.DecodeData(m, &d); err != nil {
			return err
		}
		return l.startSession(m, d.SDP, d.WebhookURL, nil)
	case rtm.TypeSupervisorJoinSession:
		var d rtm.SupervisorJoin
		if err := rtm.DecodeData(m, &d); err != nil {
			return err
		}
		return l.joinSession(m, d)
	}
	ss := l.session(m.SessionID)
	if ss == nil {
		if m.SessionID == "" {
			return rtm.Errorf(rtm.CodeSessionNotFound, "session_id is required")
		}
		return rtm.Errorf(rtm.CodeSessionNotFound, "no session %q on this connection", m.SessionID)
	}
	return ss.handle(m)
}

// session is the live session id of this link, or nil.
func (l *Link) session(id string) *Session {
	l.mu.Lock()
	defer l.mu.Unlock()
	ss := l.sessions[id]
	if ss == nil || ss.isEnded() {
		return nil
	}
	return ss
}

// add reserves a place for a new session on the link.
func (l *Link) add(ss *Session) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return rtm.Errorf(rtm.CodeSessionNotFound, "the connection is closing")
	}
	for id, other := range l.sessions {
		if other.isEnded() {
			delete(l.sessions, id)
		}
	}
	if len(l.sessions) >= l.srv.cfg.MaxSessionsPerConn {
		l.srv.metrics.limits.WithLabelValues(limitSessionsPerConn).Inc()
		return rtm.Errorf(rtm.CodeServerBusy, "at most %d sessions per connection", l.srv.cfg.MaxSessionsPerConn)
	}
	if other := l.sessions[ss.id]; other != nil {
		return rtm.Errorf(rtm.CodeSessionExists, "session %q already exists", ss.id)
	}
	l.sessions[ss.id] = ss
	return nil
}

func (l *Link) remove(ss *Session) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sessions[ss.id] == ss {
		delete(l.sessions, ss.id)
	}
}

// Close ends every session of the link (TERM_BY_DISCONNECT; their
// recordings are still finished and uploaded) and returns when they are
// torn down. Safe to call more than once.
func (l *Link) Close() {
	l.mu.Lock()
	l.closed = true
	list := make([]*Session, 0, len(l.sessions))
	for _, ss := range l.sessions {
		list = append(list, ss)
	}
	l.mu.Unlock()
	for _, ss := range list {
		ss.stop(rtm.CauseDisconnect)
	}
	for _, ss := range list {
		<-ss.ended
	}
	l.srv.mu.Lock()
	delete(l.srv.links, l)
	for id, wl := range l.srv.waiting {
		if wl == l {
			delete(l.srv.waiting, id)
		}
	}
	l.srv.mu.Unlock()
}

// send gives a message to the front end.
func (l *Link) send(m rtm.Message) { l.out.Send(m) }

func (l *Link) sendMessage(t rtm.Type, clientID, sessionID string, data any) {
	m, err := rtm.NewMessage(t, clientID, sessionID, data)
	if err != nil {
		l.log.Error("encode message", "type", t, "err", err)
		return
	}
	l.send(m)
}

// SendError answers request m with err through the Outlet: its RTM code
// and message, or internal for anything that is not an *rtm.Error (logged,
// not shown). Front ends use it for frames they cannot decode.
func (l *Link) SendError(m rtm.Message, err error) {
	var re *rtm.Error
	if !errors.As(err, &re) {
		l.log.Error("request failed", "session_id", m.SessionID, "type", m.Type, "err", err)
		re = rtm.Errorf(rtm.CodeInternal, "internal error")
	}
	l.srv.metrics.errors.WithLabelValues(string(re.Code)).Inc()
	l.sendMessage(rtm.TypeError, m.ClientID, m.SessionID, rtm.ErrorData{Code: re.Code, Message: re.Message, RequestType: m.Type})
}

// gatherWait is how long answers and offers wait for the server's
// candidates on this link.
func (l *Link) gatherWait() time.Duration {
	if l.opts.CompleteGathering {
		return gatherWaitComplete
	}
	return gatherWaitTrickle
}
