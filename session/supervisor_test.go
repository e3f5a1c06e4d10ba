package session_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
)

func (h *harness) watcher(c *testclient.Client, id, monitored string, audio, video int) *testclient.Watcher {
	h.t.Helper()
	api, err := testclient.NewAPI()
	if err != nil {
		h.t.Fatal(err)
	}
	w, err := testclient.NewWatcher(api, audio, video)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(w.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Join(ctx, w, "sup-"+id, id, monitored); err != nil {
		h.t.Fatal(err)
	}
	h.wait(c, testclient.IsState(id, rtm.StateConnected))
	return w
}

// waitWatcher waits until the watcher got at least min packets of each kind.
func waitWatcher(t *testing.T, w *testclient.Watcher, min int, kinds ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _ := w.Stats()
		ok := true
		for _, k := range kinds {
			ok = ok && got[k] >= min
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("supervisor received %v, want ≥%d of each of %v", got, min, kinds)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSupervisorsReceiveTheCallAndLeaveWithoutATrace(t *testing.T) {
	h := newHarness(t, nil)
	sent := testclient.NewSendLog()
	api, err := testclient.APIWithSendLog(sent)
	if err != nil {
		t.Fatal(err)
	}
	agent := h.dial()
	p, err := testclient.NewPeer(api, testclient.Tone, testclient.Camera)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := agent.Start(ctx, p, "agent", "call", ""); err != nil {
		t.Fatal(err)
	}
	h.wait(agent, testclient.IsState("call", rtm.StateConnected))
	p.Stream(context.Background())
	h.waitPackets("call", 2, 10)

	boss := h.dial()
	var ws []*testclient.Watcher
	for i := range 3 {
		ws = append(ws, h.watcher(boss, fmt.Sprintf("sup%d", i), "call", 1, 1))
	}
	for i, w := range ws {
		waitWatcher(t, w, 50, "audio", "video")
		matched, total := w.Matches(sent)
		if total == 0 || matched != total {
			t.Errorf("supervisor %d: %d of %d payloads match what the agent sent", i, matched, total)
		}
		for id, key := range w.VideoStartedOnKeyframe() {
			if !key {
				t.Errorf("supervisor %d: video track %s did not start on a keyframe", i, id)
			}
		}
	}

	// A screen share added mid-call reaches every supervisor through a
	// server offer.
	if _, err := p.AddSource(testclient.Screen, "screen"); err != nil {
		t.Fatal(err)
	}
	if err := agent.Renegotiate(ctx, p, "agent", "call"); err != nil {
		t.Fatal(err)
	}
	p.StreamLast()
	h.waitPackets("call", 3, 10)
	for i, w := range ws {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, tracks := w.Stats(); tracks == 3 {
				break
			}
			if time.Now().After(deadline) {
				_, tracks := w.Stats()
				t.Fatalf("supervisor %d has %d tracks after the screen share, want 3", i, tracks)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// One supervisor leaves; the call and the others carry on.
	if err := boss.Send(rtm.TypeSessionStop, "", "sup0", nil); err != nil {
		t.Fatal(err)
	}
	if cause := h.terminated(boss, "sup0"); cause != rtm.CauseClient {
		t.Fatalf("supervisor stop cause = %s", cause)
	}
	before, _ := ws[1].Stats()
	waitWatcher(t, ws[1], before["video"]+30, "video")
	h.waitPackets("call", 3, 200)

	// A supervisor session cannot record, nor be monitored.
	_ = boss.Send(rtm.TypeRecordingStart, "", "sup1", rtm.RecordingStart{UploadURL: "https://u.example.com/f"})
	h.wait(boss, testclient.IsError(rtm.CodeNotSupported))

	// The end of the call ends the remaining supervisors.
	if err := agent.Send(rtm.TypeSessionStop, "", "call", nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"sup1", "sup2"} {
		if cause := h.terminated(boss, id); cause != rtm.CauseMonitoredSessionEnd {
			t.Fatalf("%s cause = %s, want %s", id, cause, rtm.CauseMonitoredSessionEnd)
		}
	}
	want := []string{"CONNECTING", "CONNECTED", "TERMINATED/TERM_BY_MONITORED_SESSION_END"}
	if got := h.webhookStates("sup1"); !slices.Equal(got, want) {
		t.Fatalf("supervisor webhook states = %v, want %v", got, want)
	}
}

func TestMonitoringASupervisorIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	agent := h.dial()
	h.start(agent, "call", testclient.Tone)
	boss := h.dial()
	h.watcher(boss, "sup", "call", 1, 0)
	api, _ := testclient.NewAPI()
	w, err := testclient.NewWatcher(api, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = boss.Join(ctx, w, "x", "sup-of-sup", "sup")
	if err == nil || !strings.Contains(err.Error(), string(rtm.CodeNotSupported)) {
		t.Fatalf("joining a supervisor session: %v, want %s", err, rtm.CodeNotSupported)
	}
}

// A supervisor that sends no offer (Ant Media's players never offer) gets
// the server's offer, answers it, and receives the call.
func TestSupervisorWithoutOfferIsOffered(t *testing.T) {
	h := newHarness(t, nil)
	agent := h.dial()
	h.start(agent, "call", testclient.Tone, testclient.Camera)
	h.waitPackets("call", 2, 10)

	boss := h.dial()
	api, err := testclient.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	w, err := testclient.NewWatcher(api, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	if err := boss.JoinOffered(w, "boss", "sup", "call"); err != nil {
		t.Fatal(err)
	}
	offer := h.wait(boss, testclient.Is(rtm.TypeSDPUpdate, "sup"))
	if d := testclient.Data[rtm.SDPUpdate](offer); d.SDP == nil || d.SDP.Type != "offer" || !strings.Contains(d.SDP.SDP, "a=candidate:") {
		t.Fatalf("server's first message to an offerless supervisor: %s; want an offer with its candidates", offer.Data)
	}
	h.wait(boss, testclient.IsState("sup", rtm.StateConnected))
	// (Whether video starts on a keyframe here depends on the client: the
	// server's first packets race the answerer's own DTLS set-up, and a
	// browser asks for the keyframe it missed, which this test peer does not.)
	waitWatcher(t, w, 30, "audio", "video")
}

// Without an offer of its own, a supervisor of a session that has no media
// yet is told so (there is nothing to offer); it joins once media flows.
func TestSupervisorWithoutOfferNeedsMedia(t *testing.T) {
	h := newHarness(t, nil)
	agent := h.dial()
	api, err := testclient.NewAPI()
	if err != nil {
		t.Fatal(err)
	}
	p, err := testclient.NewPeer(api, testclient.Tone)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := agent.Start(ctx, p, "agent", "quiet", ""); err != nil {
		t.Fatal(err)
	}
	h.wait(agent, testclient.IsState("quiet", rtm.StateConnected))

	boss := h.dial()
	w, err := testclient.NewWatcher(api, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	if err := boss.JoinOffered(w, "boss", "sup", "quiet"); err != nil {
		t.Fatal(err)
	}
	h.wait(boss, testclient.IsError(rtm.CodeSessionNotFound))

	p.Stream(context.Background())
	h.waitPackets("quiet", 1, 5)
	if err := boss.JoinOffered(w, "boss", "sup", "quiet"); err != nil {
		t.Fatal(err)
	}
	h.wait(boss, testclient.IsState("sup", rtm.StateConnected))
	waitWatcher(t, w, 20, "audio")
}
