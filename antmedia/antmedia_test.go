package antmedia_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/rtmrec/rtmrec/antmedia"
	"github.com/rtmrec/rtmrec/compat"
	"github.com/rtmrec/rtmrec/internal/compattest"
	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/session"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newServer(t *testing.T, cfg compat.Config, mutate func(*session.Config, *session.Deps)) *compattest.Server {
	t.Helper()
	return compattest.NewServer(t, cfg, mutate, func(cfg compat.Config) http.Handler {
		return antmedia.New(antmedia.Config{Config: cfg, ICEServers: []webrtc.ICEServer{
			{URLs: []string{"stun:stun.example.com:3478"}},
			{URLs: []string{"turn:turn.example.com:3478"}, Username: "u", Credential: "p"},
		}})
	})
}

func dial(t *testing.T, s *compattest.Server) *compattest.Client {
	t.Helper()
	return compattest.MustDial(t, s.Base+"/live/websocket?target=origin")
}

type cmd = map[string]any

var (
	is       = compattest.AMS
	config   = compattest.AMSDescription
	publish  = compattest.PublishAMS
	play     = compattest.PlayAMS
	offerSDP = compattest.OfferSDP
)

func TestPublishPlayAndStop(t *testing.T) {
	s := newServer(t, compat.Config{}, nil)
	pub := dial(t, s)

	// What the SDK sends on open, and what it does not need answered.
	pub.Send(cmd{"command": "ping"})
	pub.Wait(is("pong", "", ""))
	pub.Send(cmd{"command": "getIceServerConfig"})
	ice := pub.Wait(is("iceServerConfig", "", ""))
	if ice.Str("stunServerUri") != "turn:turn.example.com:3478" || ice.Str("turnServerUsername") != "u" || ice.Str("turnServerCredential") != "p" {
		t.Errorf("iceServerConfig = %v, want the TURN server with its credentials", ice)
	}
	pub.Send(cmd{"command": "getStreamInfo", "streamId": "call"})
	pub.Send(cmd{"command": "joinRoom", "room": "r"})

	publish(t, pub, "call", nil)
	// The publish is a session like any other: listed under the stream id.
	if !s.Live("call") {
		t.Fatalf("sessions %+v: the publish is not listed as %q", s.Sessions.Sessions(), "call")
	}

	s.WaitMedia(t, "call", 2)
	player := dial(t, s)
	w := play(t, player, "call", nil)
	compattest.WaitPackets(t, w, "audio", "video")

	player.Send(cmd{"command": "stop", "streamId": "call"})
	player.Wait(is("notification", "play_finished", "call"))
	pub.Send(cmd{"command": "stop", "streamId": "call"})
	pub.Wait(is("notification", "publish_finished", "call"))
	pub.None(is("error", "", ""), 200*time.Millisecond)
}

// The end of a publish ends its plays.
func TestPublishEndEndsItsPlays(t *testing.T) {
	s := newServer(t, compat.Config{}, nil)
	pub := dial(t, s)
	publish(t, pub, "call", nil)
	s.WaitMedia(t, "call", 2)
	player := dial(t, s)
	play(t, player, "call", nil)
	pub.Close() // the publisher's tab closes
	player.Wait(is("notification", "play_finished", "call"))
}

func TestRefusals(t *testing.T) {
	s := newServer(t, compat.Config{}, nil)
	busy := dial(t, s)
	publish(t, busy, "taken", nil)

	text := func(s string) func(*compattest.Client) {
		return func(c *compattest.Client) { c.SendRaw(websocket.TextMessage, []byte(s)) }
	}
	tests := []struct {
		name       string
		send       func(*compattest.Client)
		definition string
		streamID   string
	}{
		{"not JSON", text(`{"command":`), antmedia.DefInvalidMessage, ""},
		{"not an object", text(`["publish"]`), antmedia.DefInvalidMessage, ""},
		{"no command", text(`{"streamId":"s"}`), antmedia.DefInvalidMessage, "s"},
		{"mistyped streamId", text(`{"command":"publish","streamId":7}`), antmedia.DefInvalidMessage, ""},
		{"mistyped label", text(`{"command":"takeCandidate","streamId":"s","label":"zero","candidate":"c"}`), antmedia.DefInvalidMessage, "s"},
		{"binary frame", func(c *compattest.Client) { c.SendRaw(websocket.BinaryMessage, []byte{1}) }, antmedia.DefInvalidMessage, ""},
		{"publish without streamId", text(`{"command":"publish"}`), antmedia.DefNoStreamNameSpecified, ""},
		{"publish of a bad name", text(`{"command":"publish","streamId":"a/b"}`), antmedia.DefInvalidStreamName, "a/b"},
		{"publish of a live stream", func(c *compattest.Client) {
			// Another connection's stream: the session core says so when the offer comes.
			c.Send(cmd{"command": "publish", "streamId": "taken"})
			c.Wait(is("start", "", "taken"))
			c.Send(cmd{"command": "takeConfiguration", "streamId": "taken", "type": "offer", "sdp": offerSDP(t)})
		}, antmedia.DefStreamIDInUse, "taken"},
		{"play of no stream", text(`{"command":"play","streamId":"nobody"}`), antmedia.DefNoStreamExist, "nobody"},
		{"configuration of an unknown stream", text(`{"command":"takeConfiguration","streamId":"x","type":"offer","sdp":"v=0"}`), antmedia.DefNoStreamExist, "x"},
		{"candidate of an unknown stream", text(`{"command":"takeCandidate","streamId":"x","label":0,"id":"0","candidate":"candidate:1 1 udp 1 192.0.2.1 9 typ host"}`), antmedia.DefNoStreamExist, "x"},
		{"offer that is not SDP", func(c *compattest.Client) {
			c.Send(cmd{"command": "publish", "streamId": "junk"})
			c.Wait(is("start", "", "junk"))
			c.Send(cmd{"command": "takeConfiguration", "streamId": "junk", "type": "offer", "sdp": "v=0 nonsense"})
		}, antmedia.DefNotSetRemoteDescription, "junk"},
		{"answer before any offer", func(c *compattest.Client) {
			c.Send(cmd{"command": "publish", "streamId": "early"})
			c.Wait(is("start", "", "early"))
			c.Send(cmd{"command": "takeConfiguration", "streamId": "early", "type": "answer", "sdp": "v=0"})
		}, antmedia.DefNotSetRemoteDescription, "early"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, s)
			tt.send(c)
			e := c.Wait(is("error", "", ""))
			if e.Str("definition") != tt.definition || e.Str("streamId") != tt.streamID || e.Str("message") == "" {
				t.Fatalf("error = %v, want definition %s for stream %q with a message", e, tt.definition, tt.streamID)
			}
			// Nothing broke: the connection still answers.
			c.Send(cmd{"command": "ping"})
			c.Wait(is("pong", "", ""))
		})
	}
}

func TestStopOfNothingIsNotAnError(t *testing.T) {
	s := newServer(t, compat.Config{}, nil)
	c := dial(t, s)
	c.Send(cmd{"command": "stop", "streamId": "never"})
	c.Send(cmd{"command": "ping"})
	c.Wait(is("pong", "", ""))
	c.None(is("error", "", ""), 100*time.Millisecond)
}

func TestOversizedFrameIsRefusedAndClosed(t *testing.T) {
	s := newServer(t, compat.Config{}, nil)
	c := dial(t, s)
	c.SendRaw(websocket.TextMessage, []byte(`{"command":"publish","streamId":"`+strings.Repeat("a", session.MaxFrameBytes)+`"}`))
	c.Wait(is("error", antmedia.DefInvalidMessage, ""))
	if code := c.Closed(); code != websocket.CloseMessageTooBig {
		t.Fatalf("close code %d, want %d", code, websocket.CloseMessageTooBig)
	}
}

func TestFloodIsRefused(t *testing.T) {
	s := newServer(t, compat.Config{}, func(c *session.Config, _ *session.Deps) { c.MessageRate, c.MessageBurst = 5, 5 })
	c := dial(t, s)
	for range 20 {
		c.Send(cmd{"command": "ping"})
	}
	e := c.Wait(is("error", antmedia.DefHighResourceUsage, ""))
	if !strings.Contains(e.Str("message"), "too many messages") {
		t.Fatalf("flood refusal = %v", e)
	}
}

func TestTokens(t *testing.T) {
	tokens := compattest.Tokens{
		"agent": {Subject: "agent"},
		"boss":  {Subject: "boss", Supervisor: true},
	}
	s := newServer(t, compat.Config{Tokens: tokens}, nil)

	// A bad token on the request: no WebSocket.
	if _, resp, err := compattest.Dial(t, s.Base+"/live/websocket?access_token=forged", nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad access_token: %v, want HTTP 401", err)
	}

	refused := func(c *compattest.Client, command, id string, extra cmd) {
		t.Helper()
		req := cmd{"command": command, "streamId": id}
		for k, v := range extra {
			req[k] = v
		}
		c.Send(req)
		if e := c.Wait(is("error", "", id)); e.Str("definition") != antmedia.DefUnauthorizedAccess {
			t.Fatalf("%s %v: %v, want %s", command, extra, e, antmedia.DefUnauthorizedAccess)
		}
	}
	anon := dial(t, s)
	refused(anon, "publish", "s1", nil)                       // no token at all
	refused(anon, "publish", "s1", cmd{"token": "forged"})    // a bad one
	refused(anon, "publish", "s1", cmd{"token": "boss"})      // a supervisor may not publish
	refused(dial(t, s), "play", "s1", cmd{"token": "forged"}) // a bad one
	refused(dial(t, s), "play", "s1", cmd{"token": "agent"})  // a client may not play
	refused(dial(t, s), "play", "s1", cmd{"token": ""})       // none

	// The token of publish, of play, or of the request.
	pub := dial(t, s)
	publish(t, pub, "s1", cmd{"token": "agent"})
	s.WaitMedia(t, "s1", 2)
	refused(pub, "publish", "s2", cmd{"token": "boss"}) // one identity per connection
	play(t, dial(t, s), "s1", cmd{"token": "boss"})
	viaQuery := compattest.MustDial(t, s.Base+"/live/websocket?access_token=boss")
	play(t, viaQuery, "s1", nil)
	viaHeader, _, err := compattest.Dial(t, s.Base+"/live/websocket", http.Header{"Authorization": {"Bearer agent"}})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, viaHeader, "s3", cmd{"token": "ignored: the request's token wins"})
}

// The SDK stops and publishes again when it hears no answer in time: a
// publish of the same id right after its stop is accepted, the abandoned
// session's answer is not delivered, and the new session connects.
func TestRepublishRightAfterStop(t *testing.T) {
	s := newServer(t, compat.Config{}, nil)
	c := dial(t, s)
	c.Send(cmd{"command": "publish", "streamId": "again"})
	c.Wait(is("start", "", "again"))
	// The offer, then at once the stop and the new publish, as the SDK
	// sends them when the answer is late.
	c.Send(cmd{"command": "takeConfiguration", "streamId": "again", "type": "offer", "sdp": offerSDP(t)})
	c.Send(cmd{"command": "stop", "streamId": "again"})
	c.Send(cmd{"command": "publish", "streamId": "again"})
	c.Wait(is("notification", "publish_finished", "again"))
	c.Wait(is("start", "", "again"))
	// Nothing of the abandoned session after its end.
	c.None(config("again", "answer"), 300*time.Millisecond)

	p := compattest.NewPeer(t, testclient.Tone, testclient.Camera)
	c.Send(cmd{"command": "takeConfiguration", "streamId": "again", "type": "offer", "sdp": compattest.LocalOffer(t, p.PC)})
	ans := c.Wait(config("again", "answer"))
	if err := p.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.Str("sdp")}); err != nil {
		t.Fatal(err)
	}
	c.Wait(is("notification", "publish_started", "again"))
	c.None(is("error", "", ""), 100*time.Millisecond)
}

// A server that should record and cannot does not let the publish look
// recorded: it ends it, saying why.
func TestPublishThatCannotBeRecordedEnds(t *testing.T) {
	// An upload URL template, but no recording on the server.
	s := newServer(t, compat.Config{UploadURL: "https://uploads.example.com/{stream}/{recording_id}.{ext}"}, nil)
	c := dial(t, s)
	p := compattest.NewPeer(t, testclient.Tone)
	c.Send(cmd{"command": "publish", "streamId": "unrecorded"})
	c.Wait(is("start", "", "unrecorded"))
	c.Send(cmd{"command": "takeConfiguration", "streamId": "unrecorded", "type": "offer", "sdp": compattest.LocalOffer(t, p.PC)})
	ans := c.Wait(config("unrecorded", "answer"))
	if err := p.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.Str("sdp")}); err != nil {
		t.Fatal(err)
	}
	e := c.Wait(is("error", "", "unrecorded"))
	if e.Str("definition") != antmedia.DefRecordingFailed {
		t.Fatalf("error = %v, want %s", e, antmedia.DefRecordingFailed)
	}
	c.Wait(is("notification", "publish_finished", "unrecorded"))
	c.None(is("notification", "publish_started", "unrecorded"), 100*time.Millisecond)
}

func TestIsPath(t *testing.T) {
	for path, want := range map[string]bool{
		"/live/websocket": true, "/WebRTCAppEE/websocket": true, "/dev/websocket": true,
		"/websocket": false, "/a/b/websocket": false, "//websocket": false, "/live/websocket/": false, "/rtm": false,
	} {
		if got := antmedia.IsPath(path); got != want {
			t.Errorf("IsPath(%q) = %v, want %v", path, got, want)
		}
	}
}

// A server shutdown ends the publish the way the SDK hears of an end, then
// closes the connection (going away: the SDK reconnects elsewhere).
func TestShutdownEndsThePublish(t *testing.T) {
	s := newServer(t, compat.Config{}, nil)
	c := dial(t, s)
	publish(t, c, "call", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Sessions.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c.Wait(is("notification", "publish_finished", "call"))
	// The connection stays open through the drain, then goes away.
	if err := s.Sessions.CloseConnections(ctx); err != nil {
		t.Fatal(err)
	}
	if code := c.Closed(); code != websocket.CloseGoingAway {
		t.Fatalf("close code %d, want %d", code, websocket.CloseGoingAway)
	}
}
