package session_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/internal/testlog"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/session"
)

func TestSessionReceivesEveryTrackAndStops(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial()
	h.start(c, "s1", testclient.Tone, testclient.Camera, testclient.Screen)

	tracks := h.waitPackets("s1", 3, 20)
	kinds := map[string]int{}
	for _, tr := range tracks {
		kinds[tr.Kind+"/"+tr.Codec]++
	}
	if kinds["audio/opus"] != 1 || kinds["video/vp8"] != 2 {
		t.Fatalf("tracks received = %v, want one Opus and two VP8", kinds)
	}

	if err := c.Send(rtm.TypeSessionStop, "c-s1", "s1", nil); err != nil {
		t.Fatal(err)
	}
	if cause := h.terminated(c, "s1"); cause != rtm.CauseClient {
		t.Fatalf("cause = %s, want %s", cause, rtm.CauseClient)
	}
	h.gone("s1")
	want := []string{"CONNECTING", "CONNECTED", "TERMINATED/TERM_BY_CLIENT"}
	if got := h.webhookStates("s1"); !slices.Equal(got, want) {
		t.Fatalf("webhook states = %v, want %v", got, want)
	}
}

func TestTerminationCauses(t *testing.T) {
	tests := []struct {
		name  string
		cfg   func(*session.Config)
		act   func(t *testing.T, h *harness, c *testclient.Client, p *testclient.Peer)
		cause rtm.Cause
		// viaWebhook: the WebSocket is gone, so the cause is checked on the
		// webhook only.
		viaWebhook bool
	}{
		{
			name:  "max duration",
			cfg:   func(c *session.Config) { c.MaxDuration = 1500 * time.Millisecond },
			act:   func(*testing.T, *harness, *testclient.Client, *testclient.Peer) {},
			cause: rtm.CauseMaxDuration,
		},
		{
			name: "media timeout after the client's network goes away",
			act: func(t *testing.T, h *harness, c *testclient.Client, p *testclient.Peer) {
				p.Close()
				h.wait(c, testclient.IsState("s", rtm.StateDisconnected))
			},
			cause: rtm.CauseMediaTimeout,
		},
		{
			name: "websocket closed",
			act: func(t *testing.T, h *harness, c *testclient.Client, p *testclient.Peer) {
				c.Close()
			},
			cause:      rtm.CauseDisconnect,
			viaWebhook: true,
		},
		{
			name: "server shutdown",
			act: func(t *testing.T, h *harness, c *testclient.Client, p *testclient.Peer) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := errors.Join(h.srv.Shutdown(ctx), h.srv.CloseConnections(ctx)); err != nil {
					t.Fatal(err)
				}
			},
			cause: rtm.CauseServerShutdown,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *session.Config, _ *session.Deps) {
				if tt.cfg != nil {
					tt.cfg(c)
				}
			})
			c := h.dial()
			p := h.start(c, "s", testclient.Tone)
			h.waitPackets("s", 1, 5)
			tt.act(t, h, c, p)
			if !tt.viaWebhook {
				if cause := h.terminated(c, "s"); cause != tt.cause {
					t.Fatalf("cause = %s, want %s", cause, tt.cause)
				}
			}
			h.gone("s")
			states := h.webhookStates("s")
			if len(states) == 0 || states[len(states)-1] != "TERMINATED/"+string(tt.cause) {
				t.Fatalf("webhook states = %v, want last TERMINATED/%s", states, tt.cause)
			}
		})
	}
}

func TestConnectTimeout(t *testing.T) {
	h := newHarness(t, func(c *session.Config, _ *session.Deps) { c.ConnectTimeout = time.Second })
	c := h.dial()
	api, err := testclient.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	p, err := testclient.NewPeer(api, testclient.Tone)
	if err != nil {
		t.Fatal(err)
	}
	offer, err := p.PC.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	// The client sends its offer and then never sets up ICE.
	p.Close()
	if err := c.Send(rtm.TypeSessionStart, "c", "s", rtm.SessionStart{SDP: &rtm.SessionDescription{Type: "offer", SDP: offer.SDP}}); err != nil {
		t.Fatal(err)
	}
	h.wait(c, testclient.IsState("s", rtm.StateConnecting))
	if cause := h.terminated(c, "s"); cause != rtm.CauseConnectTimeout {
		t.Fatalf("cause = %s, want %s", cause, rtm.CauseConnectTimeout)
	}
}

func TestSeveralSessionsOnOneConnection(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial()
	h.start(c, "a", testclient.Tone)
	h.start(c, "b", testclient.Camera)
	h.waitPackets("a", 1, 5)
	h.waitPackets("b", 1, 5)
	if err := c.Send(rtm.TypeSessionStop, "", "a", nil); err != nil {
		t.Fatal(err)
	}
	h.terminated(c, "a")
	// b is untouched by a's end.
	h.waitPackets("b", 1, 40)
	c.Close()
	h.gone("b")
}

func TestServerGeneratesSessionID(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial()
	api, _ := testclient.NewAPI()
	p, err := testclient.NewPeer(api, testclient.Tone)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	offer, _ := p.PC.CreateOffer(nil)
	if err := c.Send(rtm.TypeSessionStart, "c", "", rtm.SessionStart{SDP: &rtm.SessionDescription{Type: "offer", SDP: offer.SDP}}); err != nil {
		t.Fatal(err)
	}
	m := h.wait(c, func(m rtm.Message) bool { return m.Type == rtm.TypeSDPUpdate })
	if len(m.SessionID) < 16 || m.ClientID != "c" {
		t.Fatalf("answer ids = %q/%q, want a generated session id and the client's id", m.ClientID, m.SessionID)
	}
	h.wait(c, testclient.IsState(m.SessionID, rtm.StateConnecting))
}

func TestSilentClientIsCutOffByPings(t *testing.T) {
	h := newHarness(t, func(c *session.Config, _ *session.Deps) {
		c.PingInterval, c.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond
	})
	// A raw connection that sends an offer and then never reads, so it
	// never answers the server's pings either.
	ws, _, err := websocket.DefaultDialer.Dial(h.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	b, _ := rtm.Encode(rtm.TypeSessionStart, "c", "silent", rtm.SessionStart{SDP: &rtm.SessionDescription{Type: "offer", SDP: offerSDP(t)}})
	if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
		t.Fatal(err)
	}
	want := "TERMINATED/" + string(rtm.CauseDisconnect)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		states := h.webhookStates("silent")
		if len(states) > 0 && states[len(states)-1] == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook states = %v, want the session ended by the dead connection (%s)", states, want)
		}
	}
	h.gone("silent")
}

// TestSessionsListedWhileStarting: the session list (the dev console and the
// admin API poll it) can be read while sessions start; run with -race.
func TestSessionsListedWhileStarting(t *testing.T) {
	h := newHarness(t, nil)
	stop := make(chan struct{})
	listed := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				listed <- n
				return
			default:
				n += len(h.srv.Sessions())
			}
		}
	}()
	for i := range 3 {
		c := h.dial()
		h.start(c, fmt.Sprintf("s%d", i), testclient.Tone)
	}
	close(stop)
	if n := <-listed; n == 0 {
		t.Error("the list never showed a session")
	}
}

// TestPionLogsNameTheirSession: what pion logs about a session's connection
// carries the session's id, so that an operator can tell which session a
// pion warning is about.
func TestPionLogsNameTheirSession(t *testing.T) {
	var buf testlog.Buffer
	h := newHarness(t, func(_ *session.Config, d *session.Deps) {
		d.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	c := h.dial()
	h.start(c, "named", testclient.Tone)
	if err := c.Send(rtm.TypeSessionStop, "c-named", "named", nil); err != nil {
		t.Fatal(err)
	}
	h.terminated(c, "named")
	h.gone("named")
	// pion's goroutines that wait for undeclared SSRCs say at every teardown
	// that their stream closed.
	var named, anonymous int
	for deadline := time.Now().Add(5 * time.Second); named == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		named, anonymous = 0, 0
		for _, line := range strings.Split(buf.String(), "\n") {
			var rec struct {
				Component string `json:"component"`
				SessionID string `json:"session_id"`
			}
			if json.Unmarshal([]byte(line), &rec) != nil || rec.Component != "pion" {
				continue
			}
			if rec.SessionID == "named" {
				named++
			} else {
				anonymous++
			}
		}
	}
	if named == 0 || anonymous != 0 {
		t.Fatalf("pion lines naming the session: %d, naming none: %d; log:\n%s", named, anonymous, buf.String())
	}
}

// TestSetupIsTimed: rtmrec_session_setup_seconds counts each session that
// started, from its session_start to the answer, and not a refused one.
func TestSetupIsTimed(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, func(_ *session.Config, d *session.Deps) { d.Metrics = session.NewMetrics(reg) })
	c := h.dial()
	h.start(c, "timed", testclient.Tone)
	if err := c.Send(rtm.TypeSessionStart, "c-refused", "refused", rtm.SessionStart{SDP: &rtm.SessionDescription{Type: "offer", SDP: "v=0\r\nnonsense"}}); err != nil {
		t.Fatal(err)
	}
	h.wait(c, func(m rtm.Message) bool { return m.Type == rtm.TypeError && m.SessionID == "refused" })
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "rtmrec_session_setup_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "role" {
					got[l.GetValue()] = m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	if want := map[string]uint64{"client": 1, "supervisor": 0}; !maps.Equal(got, want) {
		t.Fatalf("setups timed: %v, want %v", got, want)
	}
}
