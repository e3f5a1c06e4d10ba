// Package testclient is an RTM client built on pion: it opens the /rtm
// WebSocket, negotiates a send-only peer connection, trickles candidates,
// answers server offers, and streams real Opus and VP8 clips at real time.
// Tests and the load generator use it as a stand-in for a browser.
package testclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/rtm"
)

// Client is one /rtm WebSocket connection.
type Client struct {
	ws *websocket.Conn

	writeMu sync.Mutex

	mu       sync.Mutex
	cond     *sync.Cond
	inbox    []rtm.Message
	closed   bool
	peers    map[string]*webrtc.PeerConnection
	trickle  map[string]*trickler
	readDone chan struct{}
}

// Dial connects to an /rtm URL (ws:// or wss://).
func Dial(ctx context.Context, url string, header http.Header) (*Client, *http.Response, error) {
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, url, header)
	if err != nil {
		return nil, resp, fmt.Errorf("dial %s: %w", url, err)
	}
	c := &Client{ws: ws, peers: map[string]*webrtc.PeerConnection{}, trickle: map[string]*trickler{}, readDone: make(chan struct{})}
	c.cond = sync.NewCond(&c.mu)
	go c.readLoop()
	return c, resp, nil
}

// Close closes the WebSocket (without session_stop) and waits for the reader.
func (c *Client) Close() {
	_ = c.ws.Close()
	<-c.readDone
}

// CloseGracefully sends a close frame first.
func (c *Client) CloseGracefully() {
	c.writeMu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.writeMu.Unlock()
	select {
	case <-c.readDone:
	case <-time.After(2 * time.Second):
	}
	c.Close()
}

// Done is closed when the connection's reader ended.
func (c *Client) Done() <-chan struct{} { return c.readDone }

// Send sends a message with data marshalled from v.
func (c *Client) Send(t rtm.Type, clientID, sessionID string, v any) error {
	b, err := rtm.Encode(t, clientID, sessionID, v)
	if err != nil {
		return err
	}
	return c.SendRaw(websocket.TextMessage, b)
}

// SendRaw sends one frame as it is (tests of bad input).
func (c *Client) SendRaw(kind int, b []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	return c.ws.WriteMessage(kind, b)
}

func (c *Client) readLoop() {
	defer close(c.readDone)
	defer func() {
		c.mu.Lock()
		c.closed = true
		c.cond.Broadcast()
		c.mu.Unlock()
	}()
	for {
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			return
		}
		var m rtm.Message
		if err := json.Unmarshal(b, &m); err != nil {
			continue
		}
		c.handleSignal(m)
		c.mu.Lock()
		c.inbox = append(c.inbox, m)
		c.cond.Broadcast()
		c.mu.Unlock()
	}
}

// handleSignal applies the server's candidates and offers to the session's
// peer connection, as a browser client would.
func (c *Client) handleSignal(m rtm.Message) {
	c.mu.Lock()
	pc, tr := c.peers[m.SessionID], c.trickle[m.SessionID]
	c.mu.Unlock()
	if pc == nil {
		return
	}
	switch m.Type {
	case rtm.TypeCandidate:
		var d rtm.CandidateData
		if json.Unmarshal(m.Data, &d) == nil && d.Candidate != nil && d.Candidate.Candidate != "" {
			_ = pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: d.Candidate.Candidate, SDPMid: d.Candidate.SDPMid, SDPMLineIndex: d.Candidate.SDPMLineIndex})
		}
	case rtm.TypeSDPUpdate:
		var d rtm.SDPUpdate
		if json.Unmarshal(m.Data, &d) != nil || d.SDP == nil || d.SDP.Type != "offer" {
			return
		}
		// Answer server offers off the reader, which must keep reading.
		go func() {
			tr.negotiating.Lock()
			defer tr.negotiating.Unlock()
			if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: d.SDP.SDP}); err != nil {
				return
			}
			ans, err := pc.CreateAnswer(nil)
			if err != nil || pc.SetLocalDescription(ans) != nil {
				return
			}
			_ = c.Send(rtm.TypeSDPUpdate, m.ClientID, m.SessionID, rtm.SDPUpdate{SDP: &rtm.SessionDescription{Type: "answer", SDP: pc.LocalDescription().SDP}})
		}()
	}
}

// ErrClosed is returned by Wait when the connection ended first.
var ErrClosed = errors.New("connection closed")

// Wait returns the first message (received so far or later) that matches,
// and removes it from the inbox.
func (c *Client) Wait(ctx context.Context, match func(rtm.Message) bool) (rtm.Message, error) {
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		for i, m := range c.inbox {
			if match(m) {
				c.inbox = append(c.inbox[:i], c.inbox[i+1:]...)
				return m, nil
			}
		}
		if err := ctx.Err(); err != nil {
			return rtm.Message{}, fmt.Errorf("waiting for a message: %w (inbox: %s)", err, c.summary())
		}
		if c.closed {
			return rtm.Message{}, ErrClosed
		}
		c.cond.Wait()
	}
}

// Messages returns a copy of everything received and not yet taken by Wait.
func (c *Client) Messages() []rtm.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]rtm.Message(nil), c.inbox...)
}

func (c *Client) summary() string {
	s := ""
	for _, m := range c.inbox {
		s += string(m.Type) + ":" + string(m.Data) + " "
	}
	if len(s) > 2000 {
		s = s[:2000]
	}
	return s
}

// Is matches messages of a type for a session.
func Is(t rtm.Type, sessionID string) func(rtm.Message) bool {
	return func(m rtm.Message) bool { return m.Type == t && m.SessionID == sessionID }
}

// IsState matches a session_state with the given state.
func IsState(sessionID string, st rtm.State) func(rtm.Message) bool {
	return func(m rtm.Message) bool {
		if m.Type != rtm.TypeSessionState || m.SessionID != sessionID {
			return false
		}
		var d rtm.SessionState
		return json.Unmarshal(m.Data, &d) == nil && d.State == st
	}
}

// IsRecording matches a recording_state with the given state.
func IsRecording(sessionID string, st rtm.RecordingState) func(rtm.Message) bool {
	return func(m rtm.Message) bool {
		if m.Type != rtm.TypeRecordingState || m.SessionID != sessionID {
			return false
		}
		var d rtm.RecordingStateData
		return json.Unmarshal(m.Data, &d) == nil && d.State == st
	}
}

// IsError matches an error message with the given code.
func IsError(code rtm.Code) func(rtm.Message) bool {
	return func(m rtm.Message) bool {
		if m.Type != rtm.TypeError {
			return false
		}
		var d rtm.ErrorData
		return json.Unmarshal(m.Data, &d) == nil && d.Code == code
	}
}

// Data decodes a message's data.
func Data[T any](m rtm.Message) T {
	var v T
	_ = json.Unmarshal(m.Data, &v)
	return v
}
