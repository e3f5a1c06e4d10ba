// Package compattest helps test the compatibility endpoints (packages
// antmedia and wcs): a real session core on 127.0.0.1 with an endpoint
// mounted, a JSON WebSocket client, and tokens that stand for principals.
package compattest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/rtmrec/rtmrec/compat"
	"github.com/rtmrec/rtmrec/session"
)

// Server is a session core with one endpoint mounted on every path.
type Server struct {
	Sessions *session.Server
	// Base is ws://127.0.0.1:PORT.
	Base string
}

// NewServer starts a session core (no recordings unless mutate gives it
// Journeys) and serves the handler that mount builds from cfg. Everything
// is stopped at the end of the test.
func NewServer(t *testing.T, cfg compat.Config, mutate func(*session.Config, *session.Deps), mount func(compat.Config) http.Handler) *Server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	wrtc, err := session.NewWebRTC(session.ICEConfig{DisconnectedTimeout: time.Second, FailedTimeout: 5 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	scfg := session.Config{DataDir: t.TempDir(), ConnectTimeout: 5 * time.Second, DisconnectTimeout: time.Second}
	deps := session.Deps{WebRTC: wrtc, Logger: log}
	if mutate != nil {
		mutate(&scfg, &deps)
	}
	srv, err := session.New(scfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Sessions, cfg.Logger = srv, log
	hs := httptest.NewServer(mount(cfg))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := errors.Join(srv.Shutdown(ctx), srv.CloseConnections(ctx)); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.CloseClientConnections()
		hs.Close()
		_ = wrtc.Close()
	})
	return &Server{Sessions: srv, Base: "ws" + strings.TrimPrefix(hs.URL, "http")}
}

// Live reports whether a session with the id is listed.
func (s *Server) Live(id string) bool {
	for _, info := range s.Sessions.Sessions() {
		if info.SessionID == id {
			return true
		}
	}
	return false
}

// WaitMedia waits until the session has received packets on n tracks: a
// play needs media to be offered.
func (s *Server) WaitMedia(t *testing.T, id string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, info := range s.Sessions.Sessions() {
			got := 0
			for _, tr := range info.Tracks {
				if tr.Packets > 0 {
					got++
				}
			}
			if info.SessionID == id && got >= n {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("session %s has not received media on %d tracks: %+v", id, n, s.Sessions.Sessions())
}

// Msg is a message received, decoded as JSON.
type Msg map[string]any

// Str returns a string field ("" if absent).
func (m Msg) Str(key string) string {
	s, _ := m[key].(string)
	return s
}

// Client is a JSON WebSocket client that keeps what it receives.
type Client struct {
	t  *testing.T
	ws *websocket.Conn

	writeMu sync.Mutex
	mu      sync.Mutex
	cond    *sync.Cond
	inbox   []Msg
	answer  []responder
	closed  bool
	code    int // the close frame's code, once closed
	done    chan struct{}
}

// Dial connects; the connection is closed at the end of the test.
func Dial(t *testing.T, url string, header http.Header) (*Client, *http.Response, error) {
	t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(url, header)
	if err != nil {
		return nil, resp, err
	}
	c := &Client{t: t, ws: ws, done: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	go c.read()
	t.Cleanup(c.Close)
	return c, resp, nil
}

// MustDial is Dial that fails the test on error.
func MustDial(t *testing.T, url string) *Client {
	t.Helper()
	c, _, err := Dial(t, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *Client) read() {
	defer close(c.done)
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.closed = true
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				c.code = ce.Code
			}
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		var m Msg
		if err := json.Unmarshal(b, &m); err != nil {
			m = Msg{"unparsable": string(b)}
		}
		c.mu.Lock()
		for _, r := range c.answer {
			if r.match(m) {
				go r.do(m)
			}
		}
		c.inbox = append(c.inbox, m)
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

// responder answers messages as they come, the way an SDK answers the
// server's offers.
type responder struct {
	match func(Msg) bool
	do    func(Msg)
}

// Answer has do called (on a goroutine of its own) for every message that
// matches from now on; the messages stay in the inbox.
func (c *Client) Answer(match func(Msg) bool, do func(Msg)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.answer = append(c.answer, responder{match, do})
}

// Close closes the connection and waits for the reader.
func (c *Client) Close() {
	_ = c.ws.Close()
	<-c.done
}

// Send sends v as a JSON text frame.
func (c *Client) Send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.SendRaw(websocket.TextMessage, b)
}

// SendRaw sends one frame as it is.
func (c *Client) SendRaw(kind int, b []byte) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.ws.WriteMessage(kind, b)
}

// Wait returns (and takes from the inbox) the first message that matches,
// failing the test after 10 s.
func (c *Client) Wait(match func(Msg) bool) Msg {
	c.t.Helper()
	m, err := c.wait(match, 10*time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

func (c *Client) wait(match func(Msg) bool, d time.Duration) (Msg, error) {
	timer := time.AfterFunc(d, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(d)
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for i, m := range c.inbox {
			if match(m) {
				c.inbox = append(c.inbox[:i], c.inbox[i+1:]...)
				return m, nil
			}
		}
		if c.closed {
			return nil, fmt.Errorf("connection closed (code %d) before the message; inbox %v", c.code, c.inbox)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no matching message in %v; inbox %v", d, c.inbox)
		}
		c.cond.Wait()
	}
}

// None fails the test if a matching message arrives within d.
func (c *Client) None(match func(Msg) bool, d time.Duration) {
	c.t.Helper()
	if m, err := c.wait(match, d); err == nil {
		c.t.Fatalf("unexpected message %v", m)
	}
}

// Closed waits for the server to close the connection and returns the
// close code.
func (c *Client) Closed() int {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.t.Fatal("the server did not close the connection")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code
}

// Principal is a principal for tests: a client records, a supervisor
// monitors any session.
type Principal struct {
	Subject    string
	Supervisor bool
}

// Identity implements session.Principal.
func (p Principal) Identity() string { return p.Subject }

// Tenant implements session.Principal.
func (p Principal) Tenant() string { return "" }

// MayRecord implements session.Principal.
func (p Principal) MayRecord() bool { return !p.Supervisor }

// MaySupervise implements session.Principal.
func (p Principal) MaySupervise(string) bool { return p.Supervisor }

// AllowsUploadURL implements session.Principal.
func (p Principal) AllowsUploadURL(string) bool { return true }

// AllowsWebhookURL implements session.Principal.
func (p Principal) AllowsWebhookURL(string) bool { return true }

// Role is the token's role.
func (p Principal) Role() string {
	if p.Supervisor {
		return "supervisor"
	}
	return "client"
}

// ExpiresAt is zero: these test tokens never expire.
func (p Principal) ExpiresAt() time.Time { return time.Time{} }

// Tokens is a compat.Verifier that knows a fixed set of tokens.
type Tokens map[string]Principal

// Verify implements compat.Verifier.
func (ts Tokens) Verify(token string) (session.Principal, error) {
	p, ok := ts[token]
	if !ok {
		return nil, errors.New("invalid token")
	}
	return p, nil
}
