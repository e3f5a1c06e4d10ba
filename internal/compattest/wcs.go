package compattest

import (
	"context"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/internal/testclient"
)

// SendWCS sends a message the way the WCS SDK does: {"message", "data": [data]}.
func SendWCS(c *Client, message string, data any) {
	c.Send(map[string]any{"message": message, "data": []any{data}})
}

// WCS matches a WCS server message by name.
func WCS(message string) func(Msg) bool {
	return func(m Msg) bool { return m.Str("message") == message }
}

// WCSStatus matches notifyStreamStatusEvent of a media session.
func WCSStatus(id, status string) func(Msg) bool {
	return func(m Msg) bool {
		if m.Str("message") != "notifyStreamStatusEvent" {
			return false
		}
		d, _ := m["data"].([]any)
		if len(d) == 0 {
			return false
		}
		e, _ := d[0].(map[string]any)
		return e["mediaSessionId"] == id && e["status"] == status
	}
}

// WCSData is the data array of a server message, failing the test when
// there is none (the SDK reads data[0] of every message).
func WCSData(t *testing.T, m Msg) []any {
	t.Helper()
	d, ok := m["data"].([]any)
	if !ok {
		t.Fatalf("%s without a data array: %v", m.Str("message"), m)
	}
	return d
}

// WCSEvent is data[0] of a server message, as an object.
func WCSEvent(t *testing.T, m Msg) map[string]any {
	t.Helper()
	d := WCSData(t, m)
	if len(d) == 0 {
		t.Fatalf("%s with empty data", m.Str("message"))
	}
	e, ok := d[0].(map[string]any)
	if !ok {
		t.Fatalf("data[0] is not an object: %v", m)
	}
	return e
}

// ConnectWCS sends connection as the SDK does (with custom.token when
// token is set) and waits for getUserData ESTABLISHED.
func ConnectWCS(t *testing.T, c *Client, token string) {
	t.Helper()
	conn := map[string]any{"appKey": "defaultApp", "mediaProviders": []string{"WebRTC"}, "clientVersion": "2.0", "msePacketizationVersion": 2, "clientInfo": map[string]any{}}
	if token != "" {
		conn["custom"] = map[string]any{"token": token, "page": "agent desk"}
	}
	SendWCS(c, "connection", conn)
	if u := WCSEvent(t, c.Wait(WCS("getUserData"))); u["status"] != "ESTABLISHED" || u["authToken"] == "" {
		t.Fatalf("getUserData = %v", u)
	}
}

// WCSStream is the data of publishStream or playStream as the SDK sends it.
func WCSStream(id, name string, publish, record bool, sdp string) map[string]any {
	return map[string]any{
		"mediaSessionId": id, "name": name, "published": publish, "hasVideo": true, "hasAudio": true,
		"status": "PENDING", "record": record, "mediaProvider": "WebRTC", "sdp": sdp,
		"bitrate": 0, "minBitrate": 0, "maxBitrate": 0,
	}
}

// AnswerWCS applies the server's setRemoteSDP, which must carry the
// server's candidates (WCS has no trickle), to pc.
func AnswerWCS(t *testing.T, c *Client, id string, pc *webrtc.PeerConnection) {
	t.Helper()
	d := WCSData(t, c.Wait(func(m Msg) bool {
		d, _ := m["data"].([]any)
		return m.Str("message") == "setRemoteSDP" && len(d) == 3 && d[0] == id
	}))
	sdp, _ := d[1].(string)
	if !strings.Contains(sdp, "a=candidate:") || d[2] != true {
		t.Fatalf("setRemoteSDP = %v, want [id, an answer with candidates, true]", d)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
		t.Fatal(err)
	}
}

// PublishWCS publishes tone and camera from a pion peer as the SDK does
// and returns the PUBLISHING event.
func PublishWCS(t *testing.T, c *Client, id, name string, record bool) map[string]any {
	t.Helper()
	p := NewPeer(t, testclient.Tone, testclient.Camera)
	SendWCS(c, "publishStream", WCSStream(id, name, true, record, LocalOffer(t, p.PC)))
	AnswerWCS(t, c, id, p.PC)
	p.Stream(context.Background())
	return WCSEvent(t, c.Wait(WCSStatus(id, "PUBLISHING")))
}

// PlayWCS plays a stream from a pion peer offering recvonly audio and
// video, and waits for PLAYING.
func PlayWCS(t *testing.T, c *Client, id, name string) *testclient.Watcher {
	t.Helper()
	w := NewWatcher(t, 1, 1)
	SendWCS(c, "playStream", WCSStream(id, name, false, false, LocalOffer(t, w.PC)))
	AnswerWCS(t, c, id, w.PC)
	c.Wait(WCSStatus(id, "PLAYING"))
	return w
}
