package session

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/rtmrec/rtmrec/internal/clientaddr"
	"github.com/rtmrec/rtmrec/rtm"
)

// outboxSize bounds the messages queued for one WebSocket. A client that
// does not read them is cut off rather than allowed to grow server memory.
const outboxSize = 256

// ServeHTTP is the /rtm front end: it upgrades to a WebSocket, decodes RTM
// frames for a Link, and writes what the core sends back. Authentication
// and per-IP limits happen before, in middleware.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	draining := s.draining
	if !draining {
		s.work.Add(1)
	}
	s.mu.Unlock()
	if draining {
		http.Error(w, "server is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.work.Done()

	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader already answered
	}
	remote := clientAddr(r, ws)
	c := &wsConn{
		ws:      ws,
		log:     s.log.With("remote", remote),
		out:     make(chan []byte, outboxSize),
		closing: make(chan struct{}),
		cfg:     s.cfg,
	}
	s.metrics.connections.Inc()
	defer s.metrics.connections.Dec()
	conn := s.Connect(principalFrom(r.Context()), TokenFrom(r.Context()), c, LinkOptions{Remote: remote})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	c.readLoop(conn)
	c.Close()
	conn.Close()
	<-writerDone
	_ = ws.Close()
}

// clientAddr is the client's address for logs and audit: the one the gate
// found behind trusted proxies, or else the peer's.
func clientAddr(r *http.Request, ws *websocket.Conn) string {
	if a, ok := clientaddr.FromContext(r.Context()); ok && a.IsValid() {
		return a.String()
	}
	return ws.RemoteAddr().String()
}

// wsConn is one /rtm WebSocket: the Outlet of its Link. Its reader runs in
// the HTTP handler's goroutine; its writer goroutine is the only one to
// write to the socket.
type wsConn struct {
	ws  *websocket.Conn
	log *slog.Logger
	cfg Config

	out       chan []byte
	closeOnce sync.Once
	closing   chan struct{} // closed when the connection is to end
	closeMsg  []byte        // the close frame the writer sends last
}

// Send queues a message for the client. It never blocks: the sessions
// call it, and one stalled client must not stall them.
func (c *wsConn) Send(m rtm.Message) {
	b, err := json.Marshal(m)
	if err != nil {
		c.log.Error("encode message", "type", m.Type, "err", err)
		return
	}
	select {
	case <-c.closing:
		return
	default:
	}
	select {
	case c.out <- b:
	default:
		c.log.Warn("client is not reading its messages; closing the connection")
		c.closeWith(websocket.ClosePolicyViolation, "client too slow")
	}
}

// Close asks the writer to say goodbye and stop (server shutdown, or the
// reader ended).
func (c *wsConn) Close() { c.closeWith(websocket.CloseGoingAway, "server shutting down") }

// closeWith asks the writer to send a close frame and stop; the reader
// then fails on the closed socket. Safe from any goroutine, any number of
// times: the first reason wins.
func (c *wsConn) closeWith(code int, text string) {
	c.closeOnce.Do(func() {
		c.closeMsg = websocket.FormatCloseMessage(code, text)
		close(c.closing)
	})
}

func (c *wsConn) writeLoop() {
	ping := time.NewTicker(c.cfg.PingInterval)
	defer ping.Stop()
	write := func(kind int, b []byte) error {
		_ = c.ws.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
		return c.ws.WriteMessage(kind, b)
	}
	for {
		select {
		case b := <-c.out:
			if err := write(websocket.TextMessage, b); err != nil {
				c.closeWith(websocket.CloseAbnormalClosure, "")
				_ = c.ws.Close()
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.WriteTimeout)); err != nil {
				c.closeWith(websocket.CloseAbnormalClosure, "")
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

// readLoop decodes frames for conn until the connection ends.
func (c *wsConn) readLoop(conn *Conn) {
	c.ws.SetReadLimit(MaxFrameBytes)
	deadline := 2*c.cfg.PingInterval + c.cfg.WriteTimeout
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
		if !conn.Allow() {
			conn.SendError(rtm.Message{}, conn.RateError())
			continue
		}
		if kind != websocket.TextMessage {
			conn.SendError(rtm.Message{}, rtm.Errorf(rtm.CodeInvalidMessage, "binary frames are not part of the protocol; send JSON text frames"))
			continue
		}
		m, err := rtm.Decode(frame)
		if err != nil {
			conn.SendError(m, err)
			continue
		}
		conn.Handle(m)
	}
}
