package session

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/internal/limits"
	"github.com/rtmrec/rtmrec/internal/wording"
	"github.com/rtmrec/rtmrec/rtm"
)

// TestSDPProblemsAreWordedForCustomers runs bad descriptions and candidates
// through pion and checks what the client would read.
func TestSDPProblemsAreWordedForCustomers(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	w, err := NewWebRTC(ICEConfig{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	const head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
	const audio = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
		"a=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
	descriptions := []struct{ name, sdp, want string }{
		{"truncated", "v=0", "the SDP cannot be parsed"},
		{"garbage", "garbage\r\n", "the SDP cannot be parsed (syntax error at byte"},
		{"bad line", head + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nx=unknown\r\n", "the SDP cannot be parsed (syntax error at byte"},
		{"no mid", head + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n", "mid"},
	}
	for _, tt := range descriptions {
		t.Run(tt.name, func(t *testing.T) {
			pc, err := w.SendAPI(pionLogger{l: quiet}).NewPeerConnection(webrtc.Configuration{})
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			err = pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: tt.sdp})
			if err == nil {
				t.Fatal("pion accepted it")
			}
			got := sdpProblem(err)
			if !strings.Contains(got, tt.want) {
				t.Errorf("sdpProblem(%q) = %q, want %q in it", err, got, tt.want)
			}
			if err := wording.Check(got); err != nil {
				t.Error(err)
			}
		})
	}
	pc, err := w.SendAPI(pionLogger{l: quiet}).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: head + audio}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"candidate:garbage", "candidate:1 1 udp 1 1.2.3.4 x typ host", "candidate:" + strings.Repeat("9", 600)} {
		err := pc.AddICECandidate(webrtc.ICECandidateInit{Candidate: c})
		if err == nil {
			t.Fatalf("pion accepted candidate %q", c)
		}
		got := sdpProblem(err)
		if len(got) > 200 {
			t.Errorf("%d bytes quoted back", len(got))
		}
		if err := wording.Check(got); err != nil {
			t.Error(err)
		}
	}
}

func TestRefusalWords(t *testing.T) {
	clusterErr := fmt.Errorf("cluster: %w", rtm.Errorf(rtm.CodeServerBusy, "every node is at capacity"))
	tests := []struct {
		err  error
		code rtm.Code
	}{
		{&limits.RefusedError{Limit: limits.LimitTenantSessions}, rtm.CodeServerBusy},
		{fmt.Errorf("wrapped: %w", &limits.RefusedError{Limit: limits.LimitDisk}), rtm.CodeServerBusy},
		{clusterErr, rtm.CodeServerBusy},
		{errors.New("limits: free space in /var/lib/rtmrec: permission denied"), ""},
	}
	for _, tt := range tests {
		var re *rtm.Error
		got := refusal(tt.err)
		if !errors.As(got, &re) {
			if tt.code != "" {
				t.Errorf("refusal(%v) = %v, want %s", tt.err, got, tt.code)
			}
			continue // internal: logged, the client hears "internal error"
		}
		if tt.code == "" {
			t.Errorf("refusal(%v) shows the client %q", tt.err, re.Message)
			continue
		}
		if re.Code != tt.code {
			t.Errorf("refusal(%v) = %s, want %s", tt.err, re.Code, tt.code)
		}
		if err := wording.Check(re.Message); err != nil {
			t.Error(err)
		}
	}
}
