package integration

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
)

// safariCodecs is what Safari offers when its H.264 encoder is preferred: Opus, and
// H.264 in High and Constrained Baseline profiles, each with packetization modes 1 and 0,
// plus Main and Baseline; each with RTX; no VP8.
func safariCodecs() (audio, video []webrtc.RTPCodecParameters) {
	fb := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "transport-cc"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	audio = []webrtc.RTPCodecParameters{{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType:        111,
	}}
	pt := webrtc.PayloadType(96)
	for _, f := range []string{
		"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640c1f",
		"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
		"level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=640c1f",
		"level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f",
		"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f",
		"level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
	} {
		video = append(video,
			webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: f, RTCPFeedback: fb}, PayloadType: pt},
			webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=" + strconv.Itoa(int(pt))}, PayloadType: pt + 1})
		pt += 2
	}
	return audio, video
}

// TestSafariLikeOfferRecordsH264: Safari cannot run on these machines, so a pion client
// offers what Safari offers (H.264 only, several profiles and packetization modes, no
// VP8). The server answers with an H.264 profile it records (packetization mode 1, the
// mode its depacketizer is registered for), the client sends the committed H.264 clip,
// and the recording is a Matroska file that plays.
func TestSafariLikeOfferRecordsH264(t *testing.T) {
	target := newUploadTarget(t)
	srv := runRTMRec(t, t.TempDir(), "-allow-private-urls")
	api, err := testclient.NewAPIWithCodecs(safariCodecs())
	if err != nil {
		t.Fatal(err)
	}
	c := startCallWith(t, api, srv.wsURL(), "safari-1", "", nil, testclient.Tone, testclient.CameraH264)

	// The answer: Opus, and H.264 packetization mode 1 in a profile the server offers.
	var ans sdp.SessionDescription
	if err := ans.UnmarshalString(c.p.PC.RemoteDescription().SDP); err != nil {
		t.Fatal(err)
	}
	for _, m := range ans.MediaDescriptions {
		codec, fmtp := answeredCodec(m)
		t.Logf("answer: %s m-line sends %s (%s)", m.MediaName.Media, codec, fmtp)
		switch m.MediaName.Media {
		case "audio":
			if !strings.EqualFold(codec, "opus") {
				t.Errorf("audio answered with %s, want opus", codec)
			}
		case "video":
			if !strings.EqualFold(codec, "H264") || !strings.Contains(fmtp, "packetization-mode=1") ||
				!slices.ContainsFunc([]string{"42e01f", "42001f", "4d001f"}, func(p string) bool { return strings.Contains(fmtp, "profile-level-id="+p) }) {
				t.Errorf("video answered with %s %q, want H264 packetization-mode=1 in a recordable profile", codec, fmtp)
			}
		}
	}

	started := c.record(target.url("/rec/safari-1.mkv"), "")
	if started.Format != "mkv" {
		t.Fatalf("format %s, want mkv: H.264 is not allowed in WebM", started.Format)
	}
	begin := time.Now()
	time.Sleep(4 * time.Second)
	c.send(rtm.TypeRecordingStop, nil)
	wall := time.Since(begin).Seconds()
	stopped := testclient.Data[rtm.RecordingStateData](c.wait(testclient.IsRecording(c.id, rtm.RecordingStopped)))
	up := target.wait("/rec/safari-1.mkv")
	if up.ContentType != "video/x-matroska" || up.ContentLength != *stopped.SizeBytes {
		t.Fatalf("upload %+v, want video/x-matroska of %d bytes", up, *stopped.SizeBytes)
	}
	p := ffprobe(t, up.File) // decodes every frame
	p.wantCodecs(t, "audio/opus,video/h264")
	if d := p.duration(); math.Abs(d-wall) > 0.3 {
		t.Errorf("duration %.3f s, recorded for %.3f s", d, wall)
	}
	_, key, monotonic := firstPackets(t, up.File)
	if !monotonic || !key[p.streamIndex("video")] {
		t.Errorf("timestamps monotonic %v, video starts on a keyframe %v; want both", monotonic, key[p.streamIndex("video")])
	}
	vi, _ := strconv.Atoi(p.streamIndex("video"))
	if v := p.Streams[vi]; v.Width != 320 || v.Height != 240 {
		t.Errorf("video %dx%d, want the clip's 320x240", v.Width, v.Height)
	}
}

// answeredCodec is the first codec of an m-line (the one the offerer sends with).
func answeredCodec(m *sdp.MediaDescription) (name, fmtp string) {
	pt := m.MediaName.Formats[0]
	for _, a := range m.Attributes {
		switch {
		case a.Key == "rtpmap" && strings.HasPrefix(a.Value, pt+" "):
			name, _, _ = strings.Cut(strings.TrimPrefix(a.Value, pt+" "), "/")
		case a.Key == "fmtp" && strings.HasPrefix(a.Value, pt+" "):
			fmtp = strings.TrimPrefix(a.Value, pt+" ")
		}
	}
	return name, fmtp
}
