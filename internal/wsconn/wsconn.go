// Package wsconn runs the server side of one WebSocket for a front end
// whose sessions must never wait for a client: frames to send are queued
// and written by one goroutine, with a deadline per write and WebSocket
// pings; a peer that stops answering them, or stops reading, is cut off.
// Frames read are bounded in size.
package wsconn

import (
	"errors"
	"io"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Defaults for Config fields left at zero.
const (
	DefaultPingInterval = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultMaxFrame     = 1 << 20
	DefaultQueue        = 256
)

// Config tunes a Conn.
type Config struct {
	// PingInterval is how often WebSocket pings are sent; a peer that
	// answers none for two intervals is dropped.
	PingInterval time.Duration
	// WriteTimeout bounds one write.
	WriteTimeout time.Duration
	// MaxFrame bounds a frame read (docs/protocol.md, Framing: 1 MiB).
	MaxFrame int64
	// Queue bounds the frames waiting to be written. A peer that lets it
	// fill up is not reading and is disconnected.
	Queue int
	// Keepalive, when set, is written as a text frame every
	// KeepaliveInterval: the application-level ping of protocols whose
	// clients expect one.
	Keepalive         []byte
	KeepaliveInterval time.Duration
}

// ErrTooLarge is returned by Read for a frame over MaxFrame. The rest of
// the frame is not read: the caller should say why and close with
// websocket.CloseMessageTooBig.
var ErrTooLarge = errors.New("frame too large")

// Conn is one WebSocket. Read is for one goroutine; Send and Close are
// safe from any.
type Conn struct {
	ws  *websocket.Conn
	cfg Config

	out       chan []byte
	closeOnce sync.Once
	closing   chan struct{} // closed when the connection is to end
	closeMsg  []byte        // the close frame the writer sends last
	done      chan struct{} // closed when the writer is gone
}

// New takes over an upgraded WebSocket and starts its writer.
func New(ws *websocket.Conn, cfg Config) *Conn {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = DefaultMaxFrame
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultQueue
	}
	c := &Conn{
		ws: ws, cfg: cfg,
		out:     make(chan []byte, cfg.Queue),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	deadline := 2*cfg.PingInterval + cfg.WriteTimeout
	_ = ws.SetReadDeadline(time.Now().Add(deadline))
	ws.SetPongHandler(func(string) error {
		return ws.SetReadDeadline(time.Now().Add(deadline))
	})
	go c.writeLoop()
	return c
}

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() string { return c.ws.RemoteAddr().String() }

// Read returns the next frame. An error other than ErrTooLarge means the
// connection is over.
func (c *Conn) Read() (kind int, frame []byte, err error) {
	kind, r, err := c.ws.NextReader()
	if err != nil {
		return 0, nil, err
	}
	frame, err = io.ReadAll(io.LimitReader(r, c.cfg.MaxFrame+1))
	if err != nil {
		return 0, nil, err
	}
	if int64(len(frame)) > c.cfg.MaxFrame {
		return kind, nil, ErrTooLarge
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(2*c.cfg.PingInterval + c.cfg.WriteTimeout))
	return kind, frame, nil
}

// Send queues a text frame. It never blocks: a peer that does not read
// what it is sent is disconnected. It reports whether the frame was
// queued.
func (c *Conn) Send(b []byte) bool {
	select {
	case <-c.closing:
		return false
	default:
	}
	select {
	case c.out <- b:
		return true
	default:
		c.CloseWith(websocket.ClosePolicyViolation, "client too slow")
		return false
	}
}

// Close says goodbye after what is queued (the server is going away, or
// the reader ended).
func (c *Conn) Close() { c.CloseWith(websocket.CloseGoingAway, "server shutting down") }

// CloseWith has the writer send what is queued, then a close frame with
// code and text, and stop; the reader then fails on the closed socket.
// The first call wins.
func (c *Conn) CloseWith(code int, text string) {
	c.closeOnce.Do(func() {
		c.closeMsg = websocket.FormatCloseMessage(code, text)
		close(c.closing)
	})
}

// Done is closed when the writer has stopped.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Shut ends the connection from the reader's side: it closes (if nobody
// did), waits for the writer and releases the socket.
func (c *Conn) Shut() {
	c.Close()
	<-c.done
	_ = c.ws.Close()
}

func (c *Conn) writeLoop() {
	defer close(c.done)
	ping := time.NewTicker(c.cfg.PingInterval)
	defer ping.Stop()
	var keepalive <-chan time.Time
	if len(c.cfg.Keepalive) > 0 && c.cfg.KeepaliveInterval > 0 {
		t := time.NewTicker(c.cfg.KeepaliveInterval)
		defer t.Stop()
		keepalive = t.C
	}
	write := func(b []byte) error {
		_ = c.ws.SetWriteDeadline(time.Now().Add(c.cfg.WriteTimeout))
		return c.ws.WriteMessage(websocket.TextMessage, b)
	}
	fail := func() {
		c.CloseWith(websocket.CloseAbnormalClosure, "")
		_ = c.ws.Close()
	}
	for {
		select {
		case b := <-c.out:
			if write(b) != nil {
				fail()
				return
			}
		case <-keepalive:
			if write(c.cfg.Keepalive) != nil {
				fail()
				return
			}
		case <-ping.C:
			if c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.cfg.WriteTimeout)) != nil {
				fail()
				return
			}
		case <-c.closing:
			// Flush what was queued before the end, then say goodbye. This
			// goroutine is the queue's only reader, so its length cannot
			// shrink under us.
			for len(c.out) > 0 {
				if write(<-c.out) != nil {
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
