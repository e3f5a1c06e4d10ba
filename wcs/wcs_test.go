package wcs_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/rtmrec/rtmrec/compat"
	"github.com/rtmrec/rtmrec/internal/compattest"
	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/session"
	"github.com/rtmrec/rtmrec/wcs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newServer(t *testing.T, cfg compat.Config, mutate func(*session.Config, *session.Deps)) *compattest.Server {
	t.Helper()
	return compattest.NewServer(t, cfg, mutate, func(cfg compat.Config) http.Handler {
		return wcs.New(wcs.Config{Config: cfg, PingInterval: 100 * time.Millisecond})
	})
}

type obj = map[string]any

var (
	send          = compattest.SendWCS
	named         = compattest.WCS
	status        = compattest.WCSStatus
	event         = compattest.WCSEvent
	data          = compattest.WCSData
	streamRequest = compattest.WCSStream
	answer        = compattest.AnswerWCS
	publish       = compattest.PublishWCS
	play          = compattest.PlayWCS
	offerSDP      = compattest.OfferSDP
)

func connect(t *testing.T, s *compattest.Server, token string) *compattest.Client {
	t.Helper()
	c := compattest.MustDial(t, s.Base+"/wcs")
	conn := obj{"appKey": "defaultApp", "mediaProviders": []string{"WebRTC"}, "clientVersion": "2.0", "msePacketizationVersion": 2, "clientInfo": obj{}}
	if token != "" {
		conn["custom"] = obj{"token": token, "page": "agent desk"}
	}
	send(c, "connection", conn)
	u := event(t, c.Wait(named("getUserData")))
	if u["status"] != "ESTABLISHED" || u["authToken"] == "" {
		t.Fatalf("getUserData = %v", u)
	}
	return c
}

func TestPublishPlayAndStop(t *testing.T) {
	s := newServer(t, compat.Config{}, nil)
	pub := connect(t, s, "")
	if d := data(t, pub.Wait(named("ping"))); len(d) != 0 {
		t.Fatalf("ping data = %v", d)
	}
	// Messages rtmrec does not serve are ignored.
	send(pub, "availableStream", obj{"name": "call", "mediaSessionId": "m-x"})
	send(pub, "pong", nil)
	ev := publish(t, pub, "m-pub", "call", false)
	if ev["name"] != "call" || ev["published"] != true || ev["record"] != false || ev["recordName"] != nil {
		t.Errorf("PUBLISHING = %v", ev)
	}
	if !s.Live("call") {
		t.Fatalf("sessions %+v: the publish is not listed as %q", s.Sessions.Sessions(), "call")
	}
	s.WaitMedia(t, "call", 2)

	player := connect(t, s, "")
	w := play(t, player, "m-play", "call")
	deadline := time.Now().Add(10 * time.Second)
	for got, _ := w.Stats(); got["audio"] < 20 || got["video"] < 20; got, _ = w.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("player received %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}

	send(player, "stopStream", obj{"mediaSessionId": "m-play", "name": "call", "published": false, "status": "PLAYING"})
	if ev := event(t, player.Wait(status("m-play", "STOPPED"))); ev["info"] == "" {
		t.Errorf("STOPPED = %v, want info", ev)
	}
	send(pub, "unPublishStream", obj{"mediaSessionId": "m-pub", "name": "call", "published": true, "status": "PUBLISHING"})
	pub.Wait(status("m-pub", "UNPUBLISHED"))
	pub.None(func(m compattest.Msg) bool { return status("m-pub", "FAILED")(m) || named("fail")(m) }, 100*time.Millisecond)
}

func TestPublishEndStopsItsPlays(t *testing.T) {
	s := newServer(t, compat.Config{}, nil)
	pub := connect(t, s, "")
	publish(t, pub, "m-pub", "call", false)
	s.WaitMedia(t, "call", 2)
	player := connect(t, s, "")
	play(t, player, "m-play", "call")
	pub.Close()
	if ev := event(t, player.Wait(status("m-play", "STOPPED"))); ev["info"] != "Stopped by publisher stop" {
		t.Fatalf("STOPPED = %v", ev)
	}
}

func TestRefusals(t *testing.T) {
	s := newServer(t, compat.Config{}, nil)
	busy := connect(t, s, "")
	publish(t, busy, "m-busy", "taken", false)
	offer := offerSDP(t)

	text := func(s string) func(*compattest.Client) {
		return func(c *compattest.Client) { c.SendRaw(websocket.TextMessage, []byte(s)) }
	}
	req := func(message string, r obj) func(*compattest.Client) {
		return func(c *compattest.Client) { send(c, message, r) }
	}
	with := func(r obj, k string, v any) obj {
		r[k] = v
		return r
	}
	tests := []struct {
		name   string
		send   func(*compattest.Client)
		failed string // the FAILED stream's info must contain this; "" expects fail
	}{
		{"not JSON", text(`{"message":`), ""},
		{"no name", text(`{"data":[{}]}`), ""},
		{"mistyped data", text(`{"message":"publishStream","data":{"name":"x"}}`), ""},
		{"binary frame", func(c *compattest.Client) { c.SendRaw(websocket.BinaryMessage, []byte{1}) }, ""},
		{"publish without mediaSessionId", req("publishStream", streamRequest("", "x", true, false, offer)), ""},
		{"publish with a mistyped field", req("publishStream", with(streamRequest("m1", "x", true, false, offer), "record", "yes")), "malformed"},
		{"publish through Flash", req("publishStream", with(streamRequest("m1", "x", true, false, offer), "mediaProvider", "Flash")), "not supported"},
		{"publish without sdp", req("publishStream", streamRequest("m1", "x", true, false, "")), "sdp is required"},
		{"publish of a bad name", req("publishStream", streamRequest("m1", "a b", true, false, offer)), "invalid stream name"},
		{"publish of a live stream", req("publishStream", streamRequest("m1", "taken", true, false, offer)), "already exists"},
		{"recorded publish without recording", req("publishStream", streamRequest("m1", "x", true, true, offer)), "Recording is not configured"},
		{"publish of no SDP", req("publishStream", streamRequest("m1", "x", true, false, "v=0 nonsense")), "offer"},
		{"play of no stream", req("playStream", streamRequest("m1", "nobody", false, false, offer)), "Stream not found"},
		{"stop of no stream", req("stopStream", obj{"mediaSessionId": "m1", "name": "x"}), "Stream not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := connect(t, s, "")
			tt.send(c)
			if tt.failed == "" {
				if f := event(t, c.Wait(named("fail"))); f["info"] == "" {
					t.Fatalf("fail = %v, want info", f)
				}
			} else {
				ev := event(t, c.Wait(status("m1", "FAILED")))
				if info, _ := ev["info"].(string); !strings.Contains(strings.ToLower(info), strings.ToLower(tt.failed)) {
					t.Fatalf("FAILED info %q, want %q in it", info, tt.failed)
				}
			}
			// Nothing broke: the connection still answers.
			send(c, "connection", obj{})
			c.Wait(named("getUserData"))
		})
	}
}

func TestOversizedFrameIsRefusedAndClosed(t *testing.T) {
	s := newServer(t, compat.Config{}, nil)
	c := connect(t, s, "")
	c.SendRaw(websocket.TextMessage, []byte(`{"message":"x","data":["`+strings.Repeat("a", session.MaxFrameBytes)+`"]}`))
	c.Wait(named("fail"))
	if code := c.Closed(); code != websocket.CloseMessageTooBig {
		t.Fatalf("close code %d, want %d", code, websocket.CloseMessageTooBig)
	}
}

func TestFloodIsRefused(t *testing.T) {
	s := newServer(t, compat.Config{}, func(c *session.Config, _ *session.Deps) { c.MessageRate, c.MessageBurst = 5, 5 })
	c := connect(t, s, "")
	for range 20 {
		send(c, "pong", nil)
	}
	f := event(t, c.Wait(named("fail")))
	if info, _ := f["info"].(string); !strings.Contains(info, "too many messages") {
		t.Fatalf("flood refusal = %v", f)
	}
}

func TestTokens(t *testing.T) {
	tokens := compattest.Tokens{
		"agent": {Subject: "agent"},
		"boss":  {Subject: "boss", Supervisor: true},
	}
	s := newServer(t, compat.Config{Tokens: tokens}, nil)

	if _, resp, err := compattest.Dial(t, s.Base+"/wcs?access_token=forged", nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bad access_token: %v, want HTTP 401", err)
	}
	for _, token := range []string{"", "forged"} {
		c := compattest.MustDial(t, s.Base+"/wcs")
		send(c, "connection", obj{"appKey": "defaultApp", "custom": obj{"token": token}})
		if f := event(t, c.Wait(named("fail"))); !strings.Contains(f["info"].(string), "oken") {
			t.Fatalf("connection with token %q: %v", token, f)
		}
		if code := c.Closed(); code != websocket.ClosePolicyViolation {
			t.Fatalf("connection with token %q closed with %d, want %d", token, code, websocket.ClosePolicyViolation)
		}
	}

	offer := offerSDP(t)
	boss := connect(t, s, "boss")
	send(boss, "publishStream", streamRequest("m1", "x", true, false, offer))
	if ev := event(t, boss.Wait(status("m1", "FAILED"))); !strings.Contains(ev["info"].(string), "Unauthorized") {
		t.Fatalf("a supervisor's publish: %v", ev)
	}
	agent := connect(t, s, "agent")
	publish(t, agent, "m-pub", "call", false)
	send(agent, "playStream", streamRequest("m2", "call", false, false, offer))
	if ev := event(t, agent.Wait(status("m2", "FAILED"))); !strings.Contains(ev["info"].(string), "Unauthorized") {
		t.Fatalf("a client's play: %v", ev)
	}
	s.WaitMedia(t, "call", 2)
	viaQuery := compattest.MustDial(t, s.Base+"/wcs?access_token=boss")
	send(viaQuery, "connection", obj{})
	viaQuery.Wait(named("getUserData"))
	play(t, viaQuery, "m3", "call")
}

// A publish asked to record on a server that cannot does not pretend.
func TestRecordedPublishThatCannotRecordFails(t *testing.T) {
	s := newServer(t, compat.Config{UploadURL: "https://uploads.example.com/{stream}/{recording_id}.{ext}"}, nil)
	c := connect(t, s, "")
	p := compattest.NewPeer(t, testclient.Tone)
	send(c, "publishStream", streamRequest("m1", "rec", true, true, compattest.LocalOffer(t, p.PC)))
	answer(t, c, "m1", p.PC)
	ev := event(t, c.Wait(status("m1", "FAILED")))
	if info, _ := ev["info"].(string); !strings.HasPrefix(info, "Recording failed") {
		t.Fatalf("FAILED = %v", ev)
	}
	c.None(status("m1", "PUBLISHING"), 100*time.Millisecond)
}

// A server shutdown fails the stream with the reason, then closes the
// connection.
func TestShutdownFailsTheStream(t *testing.T) {
	s := newServer(t, compat.Config{}, nil)
	c := connect(t, s, "")
	publish(t, c, "m1", "call", false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Sessions.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := event(t, c.Wait(status("m1", "FAILED"))); !strings.Contains(ev["info"].(string), "TERM_BY_SERVER_SHUTDOWN") {
		t.Fatalf("FAILED = %v", ev)
	}
	// The connection stays open through the drain, then goes away.
	if err := s.Sessions.CloseConnections(ctx); err != nil {
		t.Fatal(err)
	}
	if code := c.Closed(); code != websocket.CloseGoingAway {
		t.Fatalf("close code %d, want %d", code, websocket.CloseGoingAway)
	}
}

// The SDK cannot take a server offer: a player that offered less than the
// stream has gets what it offered for, and no offer.
func TestPlayerIsNeverSentAnOffer(t *testing.T) {
	s := newServer(t, compat.Config{}, nil)
	pub := connect(t, s, "")
	publish(t, pub, "m-pub", "call", false)
	s.WaitMedia(t, "call", 2)

	player := connect(t, s, "")
	w := compattest.NewWatcher(t, 1, 0)
	send(player, "playStream", streamRequest("m-play", "call", false, false, compattest.LocalOffer(t, w.PC)))
	answer(t, player, "m-play", w.PC)
	player.Wait(status("m-play", "PLAYING"))
	compattest.WaitPackets(t, w, "audio")
	player.None(named("setRemoteSDP"), 300*time.Millisecond)
}
