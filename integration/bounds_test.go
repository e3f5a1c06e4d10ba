package integration

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
)

// offerWithSections is a real pion offer whose one audio section is
// repeated n times (each with its own mid), as a hostile client would send.
func offerWithSections(t *testing.T, n int) string {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	head, section, ok := strings.Cut(offer.SDP, "m=audio")
	if !ok {
		t.Fatalf("no audio section in %q", offer.SDP)
	}
	section = "m=audio" + section
	// The sections after the first keep what a bundled section needs
	// (RFC 8843), so that 300 of them fit the SDP size limit.
	var bundled strings.Builder
	for _, line := range strings.SplitAfter(section, "\r\n") {
		for _, keep := range []string{"m=", "c=", "a=mid:", "a=rtpmap:", "a=sendrecv", "a=rtcp-mux"} {
			if strings.HasPrefix(line, keep) {
				bundled.WriteString(line)
			}
		}
	}
	mids := make([]string, n)
	var b strings.Builder
	for i := range n {
		mids[i] = fmt.Sprint(i)
		if i == 0 {
			b.WriteString(section)
		} else {
			b.WriteString(strings.Replace(bundled.String(), "a=mid:0", "a=mid:"+mids[i], 1))
		}
	}
	head = regexp.MustCompile(`a=group:BUNDLE [^\r\n]*`).ReplaceAllString(head, "a=group:BUNDLE "+strings.Join(mids, " "))
	sdp := head + b.String()
	if len(sdp) > rtm.MaxSDPLen {
		t.Fatalf("the offer of %d sections is %d bytes, over the SDP size limit: it would not test the section limit", n, len(sdp))
	}
	return sdp
}

// TestOfferWithTooManyMediaSections: an offer of 300 m-lines is refused with
// a clear invalid_sdp before the server builds anything for it, counted,
// and the connection goes on serving.
func TestOfferWithTooManyMediaSections(t *testing.T) {
	srv := runRTMRec(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, _, err := testclient.Dial(ctx, srv.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Send(rtm.TypeSessionStart, "agent-7", "many", rtm.SessionStart{SDP: &rtm.SessionDescription{Type: "offer", SDP: offerWithSections(t, 300)}}); err != nil {
		t.Fatal(err)
	}
	m, err := c.Wait(ctx, testclient.Is(rtm.TypeError, "many"))
	if err != nil {
		t.Fatal(err)
	}
	if d := testclient.Data[rtm.ErrorData](m); d.Code != rtm.CodeInvalidSDP || !strings.Contains(d.Message, "300 media sections") || !strings.Contains(d.Message, "at most 16") {
		t.Fatalf("error = %+v, want invalid_sdp naming 300 media sections and the limit of 16", d)
	}
	if _, body := srv.get("/metrics"); !strings.Contains(body, `rtmrec_session_limit_refusals_total{limit="tracks"} 1`) {
		t.Fatal("the refusal is not counted")
	}
	if err := startAnother(t, c, "call"); err != nil {
		t.Fatalf("a real offer after the refused one: %v", err)
	}
}

// TestPausesPerRecordingBounded: pause/resume pairs beyond
// -max-pauses-per-recording are refused with server_busy while the
// recording goes on, and the file plays. (The recorder's own test drives
// 10,000 pairs; through the binary the message rate limit would make that
// take minutes.)
func TestPausesPerRecordingBounded(t *testing.T) {
	const limit, extra = 20, 5
	target := newUploadTarget(t)
	srv := runRTMRec(t, t.TempDir(), "-allow-private-urls", "-max-pauses-per-recording", fmt.Sprint(limit))
	c := startCall(t, srv.wsURL(), "call", "", nil, testclient.Tone)
	c.send(rtm.TypeRecordingStart, rtm.RecordingStart{UploadURL: target.url("/rec/pauses.ogg"), PauseMode: "skip"})
	c.wait(testclient.IsRecording("call", rtm.RecordingStarted))
	refused := 0
	for i := range limit + extra {
		c.send(rtm.TypeRecordingPause, nil)
		m := c.wait(func(m rtm.Message) bool {
			return testclient.IsRecording("call", rtm.RecordingPaused)(m) || testclient.IsError(rtm.CodeServerBusy)(m)
		})
		if m.Type == rtm.TypeError {
			if i < limit {
				t.Fatalf("pause %d refused: %s", i+1, m.Data)
			}
			if msg := testclient.Data[rtm.ErrorData](m).Message; !strings.Contains(msg, fmt.Sprintf("%d pauses", limit)) {
				t.Fatalf("refusal %q does not name the limit", msg)
			}
			refused++
			continue
		}
		if i >= limit {
			t.Fatalf("pause %d accepted beyond the limit of %d", i+1, limit)
		}
		c.send(rtm.TypeRecordingResume, nil)
		c.wait(testclient.IsRecording("call", rtm.RecordingResumed))
	}
	if refused != extra {
		t.Fatalf("%d pauses refused, want %d", refused, extra)
	}
	time.Sleep(time.Second) // the recording goes on, unpaused
	c.send(rtm.TypeRecordingStop, nil)
	c.wait(testclient.IsRecording("call", rtm.RecordingStopped))
	ffprobe(t, target.wait("/rec/pauses.ogg").File)
	if _, body := srv.get("/metrics"); !strings.Contains(body, fmt.Sprintf(`rtmrec_session_limit_refusals_total{limit="pauses"} %d`, extra)) {
		t.Fatal("the refusals are not counted")
	}
}

// TestSessionLogsNameTheForwardedClient: behind a trusted proxy, the
// session's log lines name the client the proxy forwarded for, not the
// proxy.
func TestSessionLogsNameTheForwardedClient(t *testing.T) {
	srv := runRTMRec(t, t.TempDir(), "-trusted-proxies", "127.0.0.0/8")
	c := startCall(t, srv.wsURL(), "call", "", http.Header{"X-Forwarded-For": {"203.0.113.7"}}, testclient.Tone)
	c.send(rtm.TypeSessionStop, nil)
	c.wait(testclient.IsState("call", rtm.StateTerminated))
	// The log is read from the process's stderr as it comes.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(srv.log(), "\n") {
			if strings.Contains(line, `"msg":"session ended"`) {
				if !strings.Contains(line, `"remote":"203.0.113.7"`) {
					t.Fatalf("the session's log names another client: %s", line)
				}
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no session ended line in the log")
}
