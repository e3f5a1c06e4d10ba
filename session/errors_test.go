package session_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/session"
)

// offerSDP makes a real offer with one Opus track.
func offerSDP(t *testing.T) string {
	t.Helper()
	api, err := testclient.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	p, err := testclient.NewPeer(api, testclient.Tone)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	o, err := p.PC.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

func TestErrorsAreAnsweredAndNothingBreaks(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial()
	h.start(c, "live", testclient.Tone)
	offer := offerSDP(t)
	raw := func(s string) func(*testclient.Client) error {
		return func(c *testclient.Client) error { return c.SendRaw(websocket.TextMessage, []byte(s)) }
	}
	msg := func(typ rtm.Type, id string, data any) func(*testclient.Client) error {
		return func(c *testclient.Client) error { return c.Send(typ, "c", id, data) }
	}
	tests := []struct {
		name string
		send func(*testclient.Client) error
		code rtm.Code
	}{
		{"not json", raw(`{"type":`), rtm.CodeInvalidMessage},
		{"json but not an object", raw(`[1,2]`), rtm.CodeInvalidMessage},
		{"no type", raw(`{"session_id":"x"}`), rtm.CodeInvalidMessage},
		{"mistyped envelope", raw(`{"type":"ping","session_id":7}`), rtm.CodeInvalidMessage},
		{"binary frame", func(c *testclient.Client) error { return c.SendRaw(websocket.BinaryMessage, []byte{1, 2, 3}) }, rtm.CodeInvalidMessage},
		{"unknown type", raw(`{"type":"launch_rockets"}`), rtm.CodeUnknownType},
		{"session_start without sdp", msg(rtm.TypeSessionStart, "n1", map[string]any{}), rtm.CodeInvalidMessage},
		{"session_start with mistyped sdp", msg(rtm.TypeSessionStart, "n2", map[string]any{"sdp": "v=0"}), rtm.CodeInvalidMessage},
		{"session_start with an answer", msg(rtm.TypeSessionStart, "n3", rtm.SessionStart{SDP: &rtm.SessionDescription{Type: "answer", SDP: offer}}), rtm.CodeInvalidSDP},
		{"unparsable sdp", msg(rtm.TypeSessionStart, "n4", rtm.SessionStart{SDP: &rtm.SessionDescription{Type: "offer", SDP: "v=0\r\nnonsense"}}), rtm.CodeInvalidSDP},
		{"oversized sdp", msg(rtm.TypeSessionStart, "n5", rtm.SessionStart{SDP: &rtm.SessionDescription{Type: "offer", SDP: strings.Repeat("a", rtm.MaxSDPLen+1)}}), rtm.CodeInvalidSDP},
		{"offer with nothing recordable", msg(rtm.TypeSessionStart, "n6", rtm.SessionStart{SDP: &rtm.SessionDescription{Type: "offer", SDP: dataChannelOnlyOffer(t)}}), rtm.CodeNotSupported},
		{"duplicate session id", msg(rtm.TypeSessionStart, "live", rtm.SessionStart{SDP: &rtm.SessionDescription{Type: "offer", SDP: offer}}), rtm.CodeSessionExists},
		{"candidate for an unknown session", msg(rtm.TypeCandidate, "nope", rtm.CandidateData{Candidate: &rtm.ICECandidate{Candidate: "candidate:1 1 udp 1 127.0.0.1 9 typ host"}}), rtm.CodeSessionNotFound},
		{"message without a session", msg(rtm.TypeSessionStop, "", nil), rtm.CodeSessionNotFound},
		{"answer where an offer belongs", msg(rtm.TypeSDPUpdate, "live", rtm.SDPUpdate{SDP: &rtm.SessionDescription{Type: "answer", SDP: offer}}), rtm.CodeInvalidSDP},
		{"bad candidate", msg(rtm.TypeCandidate, "live", rtm.CandidateData{Candidate: &rtm.ICECandidate{Candidate: "candidate:garbage"}}), rtm.CodeInvalidMessage},
		{"recording_stop without recording", msg(rtm.TypeRecordingStop, "live", nil), rtm.CodeNoActiveRecording},
		{"recording_pause without recording", msg(rtm.TypeRecordingPause, "live", nil), rtm.CodeNoActiveRecording},
		{"recording_start without upload_url", msg(rtm.TypeRecordingStart, "live", map[string]any{}), rtm.CodeInvalidMessage},
		{"recording_start with a bad format", msg(rtm.TypeRecordingStart, "live", rtm.RecordingStart{UploadURL: "https://u.example.com/x", Format: "avi"}), rtm.CodeInvalidMessage},
		{"recording_start to ftp", msg(rtm.TypeRecordingStart, "live", rtm.RecordingStart{UploadURL: "ftp://u.example.com/x"}), rtm.CodeInvalidURL},
		{"recording_start with ogg for video", msg(rtm.TypeRecordingStart, "live", rtm.RecordingStart{UploadURL: "https://u.example.com/x", Format: "ogg"}), ""},
		{"supervisor for an unknown session", msg(rtm.TypeSupervisorJoinSession, "sup", rtm.SupervisorJoin{SDP: &rtm.SessionDescription{Type: "offer", SDP: offer}, SessionIDToMonitor: "nope"}), rtm.CodeSessionNotFound},
	}
	for _, tt := range tests {
		if tt.code == "" {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.send(c); err != nil {
				t.Fatal(err)
			}
			m := h.wait(c, func(m rtm.Message) bool { return m.Type == rtm.TypeError })
			d := testclient.Data[rtm.ErrorData](m)
			if d.Code != tt.code || d.Message == "" {
				t.Fatalf("error = %+v, want code %s with a message", d, tt.code)
			}
		})
	}
	// The live session survived all of it.
	h.waitPackets("live", 1, 100)
	if err := c.Send(rtm.TypePing, "c", "live", nil); err != nil {
		t.Fatal(err)
	}
	pong := h.wait(c, testclient.Is(rtm.TypePong, "live"))
	if pong.ClientID != "c" {
		t.Fatalf("pong client_id = %q", pong.ClientID)
	}
}

func dataChannelOnlyOffer(t *testing.T) string {
	t.Helper()
	api, _ := testclient.NewAPI()
	p, err := testclient.NewPeer(api)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.PC.CreateDataChannel("x", nil); err != nil {
		t.Fatal(err)
	}
	o, err := p.PC.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

func TestOversizedFrameClosesWith1009(t *testing.T) {
	h := newHarness(t, nil)
	ws, _, err := websocket.DefaultDialer.Dial(h.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	big := `{"type":"ping","data":"` + strings.Repeat("x", session.MaxFrameBytes) + `"}`
	if err := ws.WriteMessage(websocket.TextMessage, []byte(big)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := ws.ReadMessage()
		if err == nil {
			continue
		}
		if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
			t.Fatalf("read error = %v, want close 1009", err)
		}
		return
	}
}

func TestFloodIsRateLimited(t *testing.T) {
	h := newHarness(t, func(c *session.Config, _ *session.Deps) { c.MessageRate, c.MessageBurst = 5, 10 })
	c := h.dial()
	for range 40 {
		if err := c.Send(rtm.TypePing, "c", "", nil); err != nil {
			t.Fatal(err)
		}
	}
	h.wait(c, testclient.IsError(rtm.CodeServerBusy))
	pongs := 0
	for _, m := range c.Messages() {
		if m.Type == rtm.TypePong {
			pongs++
		}
	}
	// The burst is answered; the rest of the flood is not.
	if pongs > 12 {
		t.Fatalf("%d pongs for a flood of 40 with a burst of 10", pongs)
	}
	// After a pause the connection works again.
	time.Sleep(time.Second)
	_ = c.Send(rtm.TypePing, "c", "after", nil)
	h.wait(c, testclient.Is(rtm.TypePong, "after"))
}

func TestTooManySessionsPerConnection(t *testing.T) {
	h := newHarness(t, func(c *session.Config, _ *session.Deps) { c.MaxSessionsPerConn = 1 })
	c := h.dial()
	h.start(c, "one", testclient.Tone)
	offer := offerSDP(t)
	if err := c.Send(rtm.TypeSessionStart, "c", "two", rtm.SessionStart{SDP: &rtm.SessionDescription{Type: "offer", SDP: offer}}); err != nil {
		t.Fatal(err)
	}
	h.wait(c, testclient.IsError(rtm.CodeServerBusy))
}

func TestOriginsAreRestricted(t *testing.T) {
	h := newHarness(t, func(c *session.Config, _ *session.Deps) { c.AllowedOrigins = []string{"https://console.example.com"} })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.DefaultDialer.DialContext(ctx, h.url, http.Header{"Origin": {"https://evil.example.com"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("foreign origin: err=%v resp=%v, want 403", err, resp)
	}
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, h.url, http.Header{"Origin": {"https://console.example.com"}})
	if err != nil {
		t.Fatalf("allowed origin refused: %v", err)
	}
	ws.Close()
}
