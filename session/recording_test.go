package session_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/session"
)

func TestRecordingLifecycle(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial()
	h.start(c, "s", testclient.Tone, testclient.Camera)
	h.waitPackets("s", 2, 10)

	upload := rtm.RecordingStart{UploadURL: "https://uploads.example.com/rec.webm?X-Amz-Signature=secret"}
	if err := c.Send(rtm.TypeRecordingStart, "c", "s", upload); err != nil {
		t.Fatal(err)
	}
	started := testclient.Data[rtm.RecordingStateData](h.wait(c, testclient.IsRecording("s", rtm.RecordingStarted)))
	if started.RecordingID == "" || started.Format != "webm" {
		t.Fatalf("STARTED = %+v, want an id and webm for audio+video", started)
	}
	_ = c.Send(rtm.TypeRecordingStart, "c", "s", upload)
	h.wait(c, testclient.IsError(rtm.CodeRecordingActive))

	// A supervisor's visit is audited in the manifest.
	boss := h.dial()
	h.watcher(boss, "sup", "s", 1, 1)
	time.Sleep(1500 * time.Millisecond)
	_ = boss.Send(rtm.TypeSessionStop, "", "sup", nil)
	h.terminated(boss, "sup")

	_ = c.Send(rtm.TypeRecordingPause, "c", "s", nil)
	h.wait(c, testclient.IsRecording("s", rtm.RecordingPaused))
	_ = c.Send(rtm.TypeRecordingPause, "c", "s", nil) // no change: answers the current state
	h.wait(c, testclient.IsRecording("s", rtm.RecordingPaused))
	time.Sleep(time.Second)
	_ = c.Send(rtm.TypeRecordingResume, "c", "s", nil)
	h.wait(c, testclient.IsRecording("s", rtm.RecordingResumed))
	time.Sleep(1500 * time.Millisecond)

	_ = c.Send(rtm.TypeRecordingStop, "c", "s", nil)
	stopped := testclient.Data[rtm.RecordingStateData](h.wait(c, testclient.IsRecording("s", rtm.RecordingStopped)))
	if stopped.RecordingID != started.RecordingID || stopped.DurationMS == nil || *stopped.DurationMS < 3500 || stopped.SizeBytes == nil || *stopped.SizeBytes < 10000 {
		t.Fatalf("STOPPED = %+v, want the same id, ≥3.5 s and a real size", stopped)
	}
	files := h.done.list()
	if len(files) != 1 {
		t.Fatalf("%d recordings delivered", len(files))
	}
	m := files[0]
	if m.State != recorder.StateFinished || len(m.Tracks) != 2 || len(m.Pauses) != 1 {
		t.Fatalf("manifest state=%s tracks=%d pauses=%d", m.State, len(m.Tracks), len(m.Pauses))
	}
	// The visit is in the file's manifest and was handed to the journey
	// as it happened (so a crash would not lose it).
	for _, audit := range [][]recorder.AuditEvent{m.Audit, h.done.visits(m.RecordingID)} {
		var kinds []string
		for _, a := range audit {
			if a.SessionID == "sup" {
				kinds = append(kinds, a.Kind)
			}
		}
		if !slices.Equal(kinds, []string{"supervisor_joined", "supervisor_left"}) {
			t.Fatalf("audit = %+v", audit)
		}
	}
	for _, tr := range m.Tracks {
		if tr.PacketsReceived == 0 || tr.FramesWritten == 0 {
			t.Fatalf("track %+v recorded nothing", tr)
		}
	}
	// The client's Sender Reports (one a second per track) reached the
	// recording: its times are on the client's clock.
	if m.Clock != recorder.ClockSender {
		t.Errorf("manifest clock %q, want %q: no Sender Report reached the recording", m.Clock, recorder.ClockSender)
	}
	// The webhook saw STARTED, PAUSED, RESUMED, STOPPED in order.
	var states []string
	for _, ev := range h.events.list() {
		if ev.Type == rtm.TypeRecordingState {
			states = append(states, string(testclient.Data[rtm.RecordingStateData](ev).State))
		}
	}
	if want := []string{"STARTED", "PAUSED", "RESUMED", "STOPPED"}; !slices.Equal(states, want) {
		t.Fatalf("webhook recording states = %v, want %v", states, want)
	}
	// A new recording gets a new id.
	_ = c.Send(rtm.TypeRecordingStart, "c", "s", upload)
	again := testclient.Data[rtm.RecordingStateData](h.wait(c, testclient.IsRecording("s", rtm.RecordingStarted)))
	if again.RecordingID == started.RecordingID {
		t.Fatal("second recording reused the id")
	}
}

func TestSessionEndingWhileRecordingFinishesTheFile(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial()
	h.start(c, "s", testclient.Tone)
	h.waitPackets("s", 1, 10)
	_ = c.Send(rtm.TypeRecordingStart, "c", "s", rtm.RecordingStart{UploadURL: "https://uploads.example.com/a.ogg"})
	started := testclient.Data[rtm.RecordingStateData](h.wait(c, testclient.IsRecording("s", rtm.RecordingStarted)))
	if started.Format != "ogg" {
		t.Fatalf("format = %s, want ogg for audio only", started.Format)
	}
	time.Sleep(2 * time.Second)
	_ = c.Send(rtm.TypeSessionStop, "c", "s", nil)
	// TERMINATED comes first, the recording's STOPPED follows its delivery.
	msgs := []rtm.Message{h.wait(c, func(m rtm.Message) bool {
		return m.Type == rtm.TypeRecordingState || (m.Type == rtm.TypeSessionState && testclient.Data[rtm.SessionState](m).State == rtm.StateTerminated)
	})}
	msgs = append(msgs, h.wait(c, testclient.IsRecording("s", rtm.RecordingStopped)))
	if msgs[0].Type != rtm.TypeSessionState {
		t.Fatalf("first = %s, want session_state TERMINATED before recording_state", msgs[0].Type)
	}
	if d := testclient.Data[rtm.RecordingStateData](msgs[1]); *d.DurationMS < 1500 {
		t.Fatalf("duration = %d ms", *d.DurationMS)
	}
}

// TestRecordingRequestsAreChecked: a supervisor cannot record, and a
// format that cannot hold the session's tracks is refused with the reason.
func TestRecordingRequestsAreChecked(t *testing.T) {
	h := newHarness(t, nil)
	agent := h.dial()
	h.start(agent, "s", testclient.Camera, testclient.Tone)
	boss := h.dial()
	h.watcher(boss, "sup", "s", 1, 1)
	tests := []struct {
		name    string
		c       *testclient.Client
		session string
		req     rtm.RecordingStart
		code    rtm.Code
		message string
	}{
		{"supervisor records", boss, "sup", rtm.RecordingStart{UploadURL: "https://u.example.com/x"}, rtm.CodeNotSupported, "supervisor session cannot record"},
		{"ogg with video", agent, "s", rtm.RecordingStart{UploadURL: "https://u.example.com/x", Format: "ogg"}, rtm.CodeNotSupported, "cannot hold video"},
		{"unknown format", agent, "s", rtm.RecordingStart{UploadURL: "https://u.example.com/x", Format: "mp3"}, rtm.CodeInvalidMessage, "format must be"},
		{"no upload url", agent, "s", rtm.RecordingStart{}, rtm.CodeInvalidMessage, "upload_url is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.c.Send(rtm.TypeRecordingStart, "c", tt.session, tt.req); err != nil {
				t.Fatal(err)
			}
			m := h.wait(tt.c, func(m rtm.Message) bool {
				return m.Type == rtm.TypeError && strings.Contains(testclient.Data[rtm.ErrorData](m).Message, tt.message)
			})
			d := testclient.Data[rtm.ErrorData](m)
			if d.Code != tt.code || !strings.Contains(d.Message, tt.message) || d.RequestType != rtm.TypeRecordingStart {
				t.Fatalf("error %+v, want %s mentioning %q", d, tt.code, tt.message)
			}
		})
	}
	if len(h.done.list()) != 0 {
		t.Fatal("a refused request started a recording")
	}
}

// chanOutlet is a front end's outlet that keeps what the core says.
type chanOutlet chan rtm.Message

func (c chanOutlet) Send(m rtm.Message) {
	select {
	case c <- m:
	default:
	}
}

// A front end that sends the operator's upload URL template gets it filled
// with the recording's id and resolved format; /rtm URLs are taken as given.
func TestUploadURLTemplateIsFilledWhenTheRecordingStarts(t *testing.T) {
	h := newHarness(t, nil)
	const tmpl = "https://uploads.example.com/{tenant}/{stream}/{recording_id}.{ext}"
	for _, tt := range []struct {
		name     string
		template bool
		want     func(id string) string
	}{
		{"template", true, func(id string) string { return "https://uploads.example.com/default/call%201%2Fa/" + id + ".ogg" }},
		{"literal", false, func(string) string { return tmpl }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := make(chanOutlet, 64)
			link := h.srv.NewLink(nil, out, session.LinkOptions{UploadURLTemplate: tt.template})
			defer link.Close()
			const id = "call 1/a"
			start, _ := rtm.NewMessage(rtm.TypeSessionStart, "fe", id, rtm.SessionStart{SDP: &rtm.SessionDescription{Type: "offer", SDP: offerSDP(t)}})
			rec, _ := rtm.NewMessage(rtm.TypeRecordingStart, "fe", id, rtm.RecordingStart{UploadURL: tmpl})
			link.Handle(start)
			link.Handle(rec)
			deadline := time.After(10 * time.Second)
			for {
				select {
				case m := <-out:
					if m.Type == rtm.TypeError {
						t.Fatalf("error: %s", m.Data)
					}
					if m.Type != rtm.TypeRecordingState {
						continue
					}
					rid := testclient.Data[rtm.RecordingStateData](m).RecordingID
					if got := h.done.route(rid).UploadURL; got != tt.want(rid) {
						t.Fatalf("upload URL = %q, want %q", got, tt.want(rid))
					}
					return
				case <-deadline:
					t.Fatal("no recording_state STARTED")
				}
			}
		})
	}
}

// TestPacketsWithAnUnknownPayloadTypeAreSkipped: a packet whose payload type
// was never negotiated is dropped, and the track goes on being recorded;
// the receiver reports count it as received.
func TestPacketsWithAnUnknownPayloadTypeAreSkipped(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial()
	feedback := &testclient.FeedbackLog{}
	api, err := testclient.NewAPIWithBadPayloadTypes(25, feedback)
	if err != nil {
		t.Fatal(err)
	}
	h.startWith(c, api, "s", testclient.Tone)
	h.waitPackets("s", 1, 10)
	_ = c.Send(rtm.TypeRecordingStart, "c", "s", rtm.RecordingStart{UploadURL: "https://uploads.example.com/a.ogg"})
	h.wait(c, testclient.IsRecording("s", rtm.RecordingStarted))
	time.Sleep(3 * time.Second)
	_ = c.Send(rtm.TypeRecordingStop, "c", "s", nil)
	h.wait(c, testclient.IsRecording("s", rtm.RecordingStopped))
	files := h.done.list()
	if len(files) != 1 || len(files[0].Tracks) != 1 {
		t.Fatalf("recordings: %+v", files)
	}
	// 3 s of 20 ms packets, one in 25 spoiled: about 144 good ones.
	if tr := files[0].Tracks[0]; tr.PacketsReceived < 120 || tr.FramesWritten < 120 {
		t.Errorf("track %+v: the recording stopped at the first bad packet", tr)
	}
	// The spoiled packets came: the client's receiver reports count no loss
	// for them (its congestion control would back off for nothing).
	reports := feedback.Reports()
	if len(reports) != 1 {
		t.Fatalf("receiver reports: %+v, want one stream's", reports)
	}
	for _, r := range reports {
		if r.TotalLost != 0 || r.LastSequenceNumber == 0 {
			t.Errorf("receiver report %+v: want the stream's packets all received", r)
		}
	}
}
