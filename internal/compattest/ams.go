package compattest

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/internal/testclient"
)

// AMS matches an Ant Media server message by command and, unless empty,
// definition and stream id.
func AMS(command, definition, streamID string) func(Msg) bool {
	return func(m Msg) bool {
		return m.Str("command") == command && (definition == "" || m.Str("definition") == definition) &&
			(streamID == "" || m.Str("streamId") == streamID)
	}
}

// AMSDescription matches the server's takeConfiguration of a stream.
func AMSDescription(streamID, typ string) func(Msg) bool {
	return func(m Msg) bool {
		return m.Str("command") == "takeConfiguration" && m.Str("streamId") == streamID && m.Str("type") == typ
	}
}

func with(req, extra map[string]any) map[string]any {
	for k, v := range extra {
		req[k] = v
	}
	return req
}

// PublishAMS publishes tone and camera from a pion peer the way the SDK
// does (publish, start, offer, trickled candidates with integer labels,
// the answer with the server's candidates) and waits for publish_started.
// extra adds fields to publish (a token).
func PublishAMS(t *testing.T, c *Client, id string, extra map[string]any) *testclient.Peer {
	t.Helper()
	p := NewPeer(t, testclient.Tone, testclient.Camera)
	c.Send(with(map[string]any{"command": "publish", "streamId": id, "subscriberId": "", "streamName": "", "mainTrack": "", "video": true, "audio": true, "metaData": "", "role": ""}, extra))
	c.Wait(AMS("start", "", id))
	p.PC.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			return
		}
		init := cand.ToJSON()
		c.Send(map[string]any{"command": "takeCandidate", "streamId": id, "label": *init.SDPMLineIndex, "id": *init.SDPMid, "candidate": init.Candidate})
	})
	c.Send(map[string]any{"command": "takeConfiguration", "streamId": id, "type": "offer", "sdp": LocalOffer(t, p.PC)})
	ans := c.Wait(AMSDescription(id, "answer"))
	if !strings.Contains(ans.Str("sdp"), "a=candidate:") {
		t.Fatalf("the answer carries no candidates: %s", ans.Str("sdp"))
	}
	if err := p.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.Str("sdp")}); err != nil {
		t.Fatal(err)
	}
	// Like a browser, it sends media as soon as it connects.
	p.Stream(context.Background())
	c.Wait(AMS("notification", "publish_started", id))
	return p
}

// PlayAMS plays a stream from a pion peer that answers the server's
// offers (as the SDK does, with its Opus rewrite: the first, and those
// that bring tracks the stream gains) and waits for play_started. Like the
// SDK, it tries again while the stream is not live (no media yet).
func PlayAMS(t *testing.T, c *Client, id string, extra map[string]any) *testclient.Watcher {
	t.Helper()
	w := NewWatcher(t, 0, 0)
	var mu sync.Mutex // one negotiation at a time
	c.Answer(AMSDescription(id, "offer"), func(offer Msg) {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := offer["idMapping"].(map[string]any); !ok {
			t.Errorf("the offer has no idMapping object: %v", offer["idMapping"])
		}
		if err := w.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.Str("sdp")}); err != nil {
			t.Errorf("apply the server's offer: %v", err)
			return
		}
		ans, err := w.PC.CreateAnswer(nil)
		if err == nil {
			err = w.PC.SetLocalDescription(ans)
		}
		if err != nil {
			t.Errorf("answer the server's offer: %v", err)
			return
		}
		sdp := strings.Replace(ans.SDP, "useinbandfec=1", "useinbandfec=1; stereo=1", 1)
		c.Send(map[string]any{"command": "takeConfiguration", "streamId": id, "type": "answer", "sdp": sdp})
	})
	notLive := AMS("error", "no_stream_exist", id)
	for deadline := time.Now().Add(10 * time.Second); ; {
		c.Send(with(map[string]any{"command": "play", "streamId": id, "token": "", "room": "", "trackList": []any{}, "subscriberId": "", "subscriberCode": "", "viewerInfo": "", "role": "", "userPublishId": ""}, extra))
		m := c.Wait(func(m Msg) bool { return AMS("notification", "play_started", id)(m) || notLive(m) })
		if !notLive(m) {
			return w
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s is not live: %v", id, m)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// NewPeer is a pion peer sending the clips, closed at the end of the test.
func NewPeer(t *testing.T, sources ...testclient.Source) *testclient.Peer {
	t.Helper()
	api, err := testclient.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	p, err := testclient.NewPeer(api, sources...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// NewWatcher is a pion peer receiving, closed at the end of the test.
func NewWatcher(t *testing.T, audio, video int) *testclient.Watcher {
	t.Helper()
	api, err := testclient.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	w, err := testclient.NewWatcher(api, audio, video)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

// OfferSDP is a real offer with one Opus track.
func OfferSDP(t *testing.T) string {
	t.Helper()
	return LocalOffer(t, NewPeer(t, testclient.Tone).PC)
}

// LocalOffer makes pc's offer, sets it as its local description and
// returns its SDP.
func LocalOffer(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	o, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(o); err != nil {
		t.Fatal(err)
	}
	return o.SDP
}

// WaitPackets waits until the watcher received 20 packets of each kind.
func WaitPackets(t *testing.T, w *testclient.Watcher, kinds ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := w.Stats()
		ok := true
		for _, k := range kinds {
			ok = ok && got[k] >= 20
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("player received %v, want %v", got, kinds)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
