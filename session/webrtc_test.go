package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/internal/packetqueue"
	"github.com/rtmrec/rtmrec/sdptrim"
)

// logRecords keeps every slog record, for tests of what reaches which level.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r)
	h.mu.Unlock()
	return nil
}
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecords) WithGroup(string) slog.Handler      { return h }

// find returns the levels of the records whose message contains s.
func (h *logRecords) find(s string) []slog.Level {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Level
	for _, r := range h.recs {
		if strings.Contains(r.Message, s) {
			out = append(out, r.Level)
		}
	}
	return out
}

// answerOffer answers a browser's offer (testdata, captured from the real browser)
// with the server's pion API for recorded clients, as a session does.
func answerOffer(t *testing.T, file string, log *slog.Logger) (*webrtc.PeerConnection, *sdp.SessionDescription) {
	t.Helper()
	offer, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return answerSDP(t, string(offer), log)
}

// answerSDP answers offer as answerOffer does.
func answerSDP(t *testing.T, offer string, log *slog.Logger) (*webrtc.PeerConnection, *sdp.SessionDescription) {
	t.Helper()
	w, err := NewWebRTC(ICEConfig{}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	pc, err := w.ReceiveAPI(func(uint32, *packetqueue.Queue) {}, (&Session{}).newRTCPTap, pionLogger{l: log}).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.GracefulClose() })
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		t.Fatal(err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	var parsed sdp.SessionDescription
	if err := parsed.UnmarshalString(ans.SDP); err != nil {
		t.Fatal(err)
	}
	return pc, &parsed
}

// TestAnswerKeepsHeaderExtensions: every answered m-line keeps the header extensions the
// server uses (sdes:mid, needed by BUNDLE, for audio as for video; transport-cc, for the
// browser's congestion control of video, on video only: an Opus stream's rate does not
// depend on it, and without it an audio-only session runs no feedback loop), and those forwarded to supervisors that the browser offers (audio
// level; CVO, which only Chromium offers), and answers with a codec the recorder writes.
func TestAnswerKeepsHeaderExtensions(t *testing.T) {
	for _, tc := range []struct {
		file, audio, video string
		forwarded          map[string]string // kind → extension
	}{
		{"testdata/firefox-153-offer.sdp", "opus", "VP8", map[string]string{"audio": extAudioLevel}},
		{"testdata/chromium-156-offer.sdp", "opus", "VP8", map[string]string{"audio": extAudioLevel, "video": extVideoOrientation}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, ans := answerOffer(t, tc.file, slog.New(slog.DiscardHandler))
			if len(ans.MediaDescriptions) != 2 {
				t.Fatalf("%d m-lines, want 2", len(ans.MediaDescriptions))
			}
			for _, m := range ans.MediaDescriptions {
				kind := m.MediaName.Media
				var uris []string
				for _, a := range m.Attributes {
					if a.Key == "extmap" {
						if f := strings.Fields(a.Value); len(f) >= 2 {
							uris = append(uris, f[1])
						}
					}
				}
				wants := []string{sdp.SDESMidURI}
				if kind == "video" {
					wants = append(wants, sdp.TransportCCURI)
				} else if slices.Contains(uris, sdp.TransportCCURI) {
					t.Errorf("audio m-line negotiates transport-cc")
				}
				if f := tc.forwarded[kind]; f != "" {
					wants = append(wants, f)
				}
				for _, want := range wants {
					if !slices.Contains(uris, want) {
						t.Errorf("%s m-line lacks %s; has %v", kind, want, uris)
					}
				}
				if _, ok := m.Attribute("recvonly"); !ok {
					t.Errorf("%s m-line is not recvonly", kind)
				}
				first, want := codecName(m, m.MediaName.Formats[0]), map[string]string{"audio": tc.audio, "video": tc.video}[kind]
				if !strings.EqualFold(first, want) {
					t.Errorf("%s m-line answers %s first, want %s", kind, first, want)
				}
			}
		})
	}
}

func codecName(m *sdp.MediaDescription, pt string) string {
	for _, a := range m.Attributes {
		if a.Key == "rtpmap" && strings.HasPrefix(a.Value, pt+" ") {
			name, _, _ := strings.Cut(strings.TrimPrefix(a.Value, pt+" "), "/")
			return name
		}
	}
	return ""
}

// TestMDNSCandidatesAreIgnoredQuietly: Firefox's host candidates are mDNS names, which the
// server ignores on purpose (mDNS is off); pion's warning about each is logged at DEBUG,
// not WARN. Other pion warnings stay warnings.
func TestMDNSCandidatesAreIgnoredQuietly(t *testing.T) {
	h := &logRecords{}
	answerOffer(t, "testdata/firefox-153-offer.sdp", slog.New(h))
	const msg = "Remote mDNS candidate added, but mDNS is disabled"
	deadline := time.Now().Add(10 * time.Second)
	for len(h.find(msg)) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	levels := h.find(msg)
	if len(levels) == 0 {
		t.Fatal("pion never reported the offer's mDNS candidates: the test no longer sees what it checks")
	}
	for _, l := range levels {
		if l != slog.LevelDebug {
			t.Errorf("%q logged at %v, want DEBUG", msg, l)
		}
	}
	pionLogger{l: slog.New(h)}.NewLogger("ice").Warnf("Failed to add remote candidate %s: %v", "x", "y")
	if l := h.find("Failed to add remote candidate"); len(l) != 1 || l[0] != slog.LevelWarn {
		t.Errorf("another pion warning logged at %v, want WARN", l)
	}
}

// TestBenignPionWarningsAreDebug: the pion warnings every healthy session
// produces are logged at DEBUG (TestQuietLogs in integration sees them in a
// real session); a different error behind the same words stays a warning.
func TestBenignPionWarningsAreDebug(t *testing.T) {
	tests := []struct {
		scope, format string
		args          []any
		want          slog.Level
	}{
		{"ice", "Failed to ping without candidate pairs. Connection is not possible yet.", nil, slog.LevelDebug},
		{"pc", "Failed to accept RTP %v", []any{errors.New("stream is already closed")}, slog.LevelDebug},
		{"pc", "Failed to accept RTCP %v", []any{errors.New("stream is already closed")}, slog.LevelDebug},
		{"pc", "Incoming unhandled RTCP ssrc(%d), OnTrack will not be fired", []any{668107205}, slog.LevelDebug},
		{"mux", "Warning: mux: no endpoint for packet starting with %d, adding to queue size(%d)", []any{21, 0}, slog.LevelDebug},
		{"ice", "Failed to read from candidate %s: %v", []any{"udp4 host 192.0.2.2:45576", errors.New("read udp 192.0.2.2:45576: i/o timeout")}, slog.LevelDebug},
		{"ice", "Failed to read from candidate %s: %v", []any{"udp4 host 192.0.2.2:45576", errors.New("read udp 192.0.2.2:45576: connection refused")}, slog.LevelWarn},
		{"pc", "Failed to accept RTP %v", []any{errors.New("i/o timeout")}, slog.LevelWarn},
		{"pc", "Failed to open RTCP stream for %d: %v", []any{5, errors.New("closed")}, slog.LevelWarn},
		{"ice", "Failed to validate remote candidate: %v", []any{errors.New("the agent is closed")}, slog.LevelDebug},
		{"ice", "Failed to handle message: %v", []any{errors.New("the agent is closed")}, slog.LevelDebug},
		{"ice", "Discarded message from %s, not a valid remote candidate", []any{"[fd00::2]:40491"}, slog.LevelWarn},
	}
	for _, tt := range tests {
		h := &logRecords{}
		pionLogger{l: slog.New(h)}.NewLogger(tt.scope).Warnf(tt.format, tt.args...)
		msg := fmt.Sprintf(tt.format, tt.args...)
		if got := h.find(msg); len(got) != 1 || got[0] != tt.want {
			t.Errorf("%q logged at %v, want %v", msg, got, tt.want)
		}
	}
}

// TestWarningsOfAClosingConnectionAreDebug: once its session closes the
// connection, whatever pion warns of is about that teardown and is DEBUG,
// in whatever words (the browser suite met one teardown race after
// another); the same warning before the close stays a warning.
func TestWarningsOfAClosingConnectionAreDebug(t *testing.T) {
	h := &logRecords{}
	var closing atomic.Bool
	l := pionLogger{l: slog.New(h), closing: &closing}.NewLogger("pc")
	warn := func(n int) []slog.Level {
		msg := fmt.Sprintf("Failed to open RTCP stream for %d: no stream table", n)
		l.Warn(msg)
		return h.find(msg)
	}
	if got := warn(1); !slices.Equal(got, []slog.Level{slog.LevelWarn}) {
		t.Fatalf("before the close: %v, want a warning", got)
	}
	closing.Store(true)
	if got := warn(2); !slices.Equal(got, []slog.Level{slog.LevelDebug}) {
		t.Fatalf("while closing: %v, want DEBUG", got)
	}
}

// TestDiscardsOfAClosedAgentAreDebug: a packet that reaches an ICE agent as
// it closes (a browser's media at teardown) is discarded with a warning
// after one that the agent is closed: both are DEBUG. Before its agent
// closed, a discarded packet came from an address that is no candidate,
// and stays a warning; another agent's close does not change that.
func TestDiscardsOfAClosedAgentAreDebug(t *testing.T) {
	h := &logRecords{}
	factory := pionLogger{l: slog.New(h)}
	closing, other := factory.NewLogger("ice"), factory.NewLogger("ice")
	discard := func(l logging.LeveledLogger, from string) []slog.Level {
		l.Warnf("Discarded message from %s, not a valid remote candidate", from)
		return h.find("Discarded message from " + from + ",")
	}
	if got := discard(closing, "192.0.2.1:1"); len(got) != 1 || got[0] != slog.LevelWarn {
		t.Errorf("a discard before the agent closed logged at %v, want WARN", got)
	}
	closing.Warnf("Failed to validate remote candidate: %v", errors.New("the agent is closed"))
	if got := discard(closing, "192.0.2.1:2"); len(got) != 1 || got[0] != slog.LevelDebug {
		t.Errorf("a discard after the agent closed logged at %v, want DEBUG", got)
	}
	if got := discard(other, "192.0.2.1:3"); len(got) != 1 || got[0] != slog.LevelWarn {
		t.Errorf("another agent's discard logged at %v, want WARN", got)
	}
}

// BenchmarkAnswerMDNSMode is the cost that decided against resolving remote mDNS
// candidates (see NewWebRTC): answering Firefox's offer until gathering completes, with
// mDNS off and in pion's query-only mode. ns/op is that setup; goroutines/pc what each
// peer connection keeps running.
func BenchmarkAnswerMDNSMode(b *testing.B) {
	offer, err := os.ReadFile("testdata/firefox-153-offer.sdp")
	if err != nil {
		b.Fatal(err)
	}
	for _, mode := range []struct {
		name string
		mode ice.MulticastDNSMode
	}{{"disabled", ice.MulticastDNSModeDisabled}, {"query-only", ice.MulticastDNSModeQueryOnly}} {
		b.Run(mode.name, func(b *testing.B) {
			me := &webrtc.MediaEngine{}
			if err := me.RegisterDefaultCodecs(); err != nil {
				b.Fatal(err)
			}
			se := webrtc.SettingEngine{}
			se.SetICEMulticastDNSMode(mode.mode)
			api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se))
			before := runtime.NumGoroutine()
			pcs := make([]*webrtc.PeerConnection, 0, b.N)
			defer func() {
				for _, pc := range pcs {
					_ = pc.GracefulClose()
				}
			}()
			for range b.N {
				pc, err := api.NewPeerConnection(webrtc.Configuration{})
				if err != nil {
					b.Fatal(err)
				}
				pcs = append(pcs, pc)
				if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: string(offer)}); err != nil {
					b.Fatal(err)
				}
				ans, err := pc.CreateAnswer(nil)
				if err != nil {
					b.Fatal(err)
				}
				gathered := webrtc.GatheringCompletePromise(pc)
				if err := pc.SetLocalDescription(ans); err != nil {
					b.Fatal(err)
				}
				<-gathered
			}
			b.StopTimer()
			time.Sleep(200 * time.Millisecond) // let the connections' goroutines settle
			b.ReportMetric(float64(runtime.NumGoroutine()-before)/float64(b.N), "goroutines/pc")
		})
	}
}

// TestTrimmedOffersAnswerTheSame: a browser's offer without the codecs the
// server never negotiates (as sessions apply offers) gets the answer the
// whole offer gets, codec for codec, extension for extension.
func TestTrimmedOffersAnswerTheSame(t *testing.T) {
	for _, file := range []string{"testdata/firefox-153-offer.sdp", "testdata/chromium-156-offer.sdp", "../sdptrim/testdata/chrome-156-audio-video-offer.sdp"} {
		t.Run(file, func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			offer := string(b)
			trimmed := sdptrim.Offer(offer, negotiable)
			if n, m := strings.Count(offer, "a=rtpmap:"), strings.Count(trimmed, "a=rtpmap:"); m >= n {
				t.Fatalf("nothing trimmed: %d rtpmap lines, then %d", n, m)
			}
			_, whole := answerSDP(t, offer, slog.New(slog.DiscardHandler))
			_, trim := answerSDP(t, trimmed, slog.New(slog.DiscardHandler))
			if a, b := negotiated(whole), negotiated(trim); !slices.Equal(a, b) {
				t.Fatalf("answer to the whole offer:\n%s\nanswer to the trimmed one:\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
			}
		})
	}
}

// negotiated is what an answer settles, section by section: the media and
// codecs in order of preference (retransmission payload types, which
// repair a codec rather than rank as one, sorted), then the direction and
// the codec and extension lines, sorted: pion writes both of those sorted
// lists in no set order.
func negotiated(d *sdp.SessionDescription) []string {
	var out []string
	for _, m := range d.MediaDescriptions {
		var attrs []string
		rtx := map[string]bool{}
		for _, a := range m.Attributes {
			switch a.Key {
			case "rtpmap", "fmtp", "rtcp-fb", "extmap", "sendrecv", "sendonly", "recvonly", "inactive", "mid":
				attrs = append(attrs, a.String())
			}
			if pt, codec, ok := strings.Cut(a.Value, " "); a.Key == "rtpmap" && ok && strings.HasPrefix(codec, "rtx/") {
				rtx[pt] = true
			}
		}
		var codecs, repairs []string
		for _, pt := range m.MediaName.Formats {
			if rtx[pt] {
				repairs = append(repairs, pt)
			} else {
				codecs = append(codecs, pt)
			}
		}
		slices.Sort(repairs)
		slices.Sort(attrs)
		out = append(out, m.MediaName.Media+" "+strings.Join(codecs, " ")+" (rtx "+strings.Join(repairs, " ")+")")
		out = append(out, attrs...)
	}
	return out
}

// BenchmarkApplyOffer applies a captured Chromium offer to a connection of
// the server's, whole and trimmed as sessions apply it: the part of a
// session's setup that grows with the square of the offer's codec lines.
func BenchmarkApplyOffer(b *testing.B) {
	raw, err := os.ReadFile("../sdptrim/testdata/chrome-156-audio-video-offer.sdp")
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	w, err := NewWebRTC(ICEConfig{}, log)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	api := w.ReceiveAPI(func(uint32, *packetqueue.Queue) {}, (&Session{}).newRTCPTap, pionLogger{l: log})
	for _, tc := range []struct {
		name string
		trim func(string) string
	}{
		{"whole", func(s string) string { return s }},
		{"trimmed", func(s string) string { return sdptrim.Offer(s, negotiable) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				pc, err := api.NewPeerConnection(webrtc.Configuration{})
				if err != nil {
					b.Fatal(err)
				}
				if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: tc.trim(string(raw))}); err != nil {
					b.Fatal(err)
				}
				_ = pc.Close()
			}
		})
	}
}
