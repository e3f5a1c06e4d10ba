package session

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/rtmrec/rtmrec/internal/limits"
	"github.com/rtmrec/rtmrec/rtm"
)

// outboxSize bounds the messages queued for one WebSocket. A client that
// does not read them is cut off rather than allowed to grow server memory.
const outboxSize = 256

// conn is one /rtm WebSocket. Its reader runs in the HTTP handler's
// goroutine and is the only one to touch sessions; its writer goroutine is
// the only one to write to the socket.
type conn struct {
	srv       *Server
	ws        *websocket.Conn
	principal Principal
	log       *slog.Logger

	out       chan []byte
	closeOnce sync.Once
	closing   chan struct{} // closed when the connection is to end
	closeMsg  []byte        // the close frame the writer sends last

	// sessions are the sessions started on this connection; only the reader
	// goroutine touches the map.
	sessions map[string]*Session
	limiter  *limits.TokenBucket
}

func newConn(s *Server, ws *websocket.Conn, p Principal) *conn {
	return &conn{
		srv:       s,
		ws:        ws,
		principal: p,
		log:       s.log.With("remote", ws.RemoteAddr().String()),
		out:       make(chan []byte, outboxSize),
		closing:   make(chan struct{}),
		sessions:  map[string]*Session{},
		limiter:   limits.NewTokenBucket(s.cfg.MessageRate, s.cfg.MessageBurst, time.Now),
	}
}

// run reads until the connection ends, then ends its sessions (their
// recordings are still finished and uploaded) and waits for the writer.
func (c *conn) run() {
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	c.readLoop()
	c.close(websocket.CloseNormalClosure, "")
	for _, ss := range c.sessions {
		ss.stop(rtm.CauseDisconnect)
	}
	for _, ss := range c.sessions {
		<-ss.ended
	}
	<-writerDone
	_ = c.ws.Close()
}

// close asks the writer to send a close frame and stop; the reader then
// fails on the closed socket. Safe from any goroutine, any number of times.
func (c *conn) close(code int, text string) {
	c.closeOnce.Do(func() {
		c.closeMsg = websocket.FormatCloseMessage(code, text)
		close(c.closing)
	})
}

// send queues a message for the client. It never blocks: the session loops
// call it, and one stalled client must not stall them.
func (c *conn) send(msg []byte) {
	select {
	case <-c.closing:
		return
	default:
	}
	select {
	case c.out <- msg:
	default:
		c.log.Warn("client is not reading its messages; closing the connection")
		c.close(websocket.ClosePolicyViolation, "client too slow")
	}
}

func (c *conn) sendMessage(t rtm.Type, clientID, sessionID string, data any) {
	b, err := rtm.Encode(t, clientID, sessionID, data)
	if err != nil {
		c.log.Error("encode message", "type", t, "err", err)
		return
	}
	c.send(b)
}

func (c *conn) sendError(m rtm.Message, err error) {
	var re *rtm.Error
	if !errors.As(err, &re) {
		c.log.Error("request failed", "session_id", m.SessionID, "type", m.Type, "err", err)
		re = rtm.Errorf(rtm.CodeInternal, "internal error")
	}
	c.srv.metrics.errors.WithLabelValues(string(re.Code)).Inc()
	c.sendMessage(rtm.TypeError, m.ClientID, m.SessionID, rtm.ErrorData{Code: re.Code, Message: re.Message, RequestType: m.Type})
}

func (c *conn) writeLoop() {
	ping := time.NewTicker(c.srv.cfg.PingInterval)
	defer ping.Stop()
	write := func(kind int, b []byte) error {
		_ = c.ws.SetWriteDeadline(time.Now().Add(c.srv.cfg.WriteTimeout))
		return c.ws.WriteMessage(kind, b)
	}
	for {
		select {
		case b := <-c.out:
			if err := write(websocket.TextMessage, b); err != nil {
				c.close(websocket.CloseAbnormalClosure, "")
				_ = c.ws.Close()
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.srv.cfg.WriteTimeout)); err != nil {
				c.close(websocket.CloseAbnormalClosure, "")
				_ = c.ws.Close()
				return
			}
		case <-c.closing:
			// Flush what the sessions queued before the end (their
			// TERMINATED), then say goodbye. This goroutine is the queue's
			// only reader, so its length cannot shrink under us.
			for len(c.out) > 0 {
				if write(websocket.TextMessage, <-c.out) != nil {
					_ = c.ws.Close()
					return
				}
			}
			_ = c.ws.WriteControl(websocket.CloseMessage, c.closeMsg, time.Now().Add(time.Second))
			// Unblock the reader if the peer never answers the close.
			_ = c.ws.SetReadDeadline(time.Now().Add(2 * time.Second))
			return
		}
	}
}

func (c *conn) readLoop() {
	c.ws.SetReadLimit(MaxFrameBytes)
	deadline := 2*c.srv.cfg.PingInterval + c.srv.cfg.WriteTimeout
	_ = c.ws.SetReadDeadline(time.Now().Add(deadline))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(deadline))
	})
	for {
		kind, frame, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(deadline))
		select {
		case <-c.closing:
			return
		default:
		}
		if !c.limiter.Allow() {
			c.sendError(rtm.Message{}, rtm.Errorf(rtm.CodeServerBusy, "too many messages: at most %.0f per second", c.srv.cfg.MessageRate))
			continue
		}
		if kind != websocket.TextMessage {
			c.sendError(rtm.Message{}, rtm.Errorf(rtm.CodeInvalidMessage, "binary frames are not part of the protocol; send JSON text frames"))
			continue
		}
		m, err := rtm.Decode(frame)
		if err != nil {
			c.sendError(m, err)
			continue
		}
		c.srv.metrics.messages.WithLabelValues(string(m.Type)).Inc()
		if err := c.dispatch(m); err != nil {
			c.sendError(m, err)
		}
	}
}

// dispatch routes one decoded message. Errors are answered to the client.
func (c *conn) dispatch(m rtm.Message) error {
	switch m.Type {
	case rtm.TypePing:
		c.sendMessage(rtm.TypePong, m.ClientID, m.SessionID, nil)
		return nil
	case rtm.TypeSessionStart:
		var d rtm.SessionStart
		if err := rtm.DecodeData(m, &d); err != nil {
			return err
		}
		return c.startSession(m, d.SDP, d.WebhookURL, nil)
	case rtm.TypeSupervisorJoinSession:
		var d rtm.SupervisorJoin
		if err := rtm.DecodeData(m, &d); err != nil {
			return err
		}
		return c.joinSession(m, d)
	}
	ss := c.sessions[m.SessionID]
	if ss == nil || ss.isEnded() {
		if m.SessionID == "" {
			return rtm.Errorf(rtm.CodeSessionNotFound, "session_id is required")
		}
		return rtm.Errorf(rtm.CodeSessionNotFound, "no session %q on this connection", m.SessionID)
	}
	return ss.handle(m)
}

// pruneEnded drops ended sessions from the connection's routing table; the
// reader calls it lazily when the next session starts.
func (c *conn) pruneEnded() {
	for id, ss := range c.sessions {
		if ss.isEnded() {
			delete(c.sessions, id)
		}
	}
}
