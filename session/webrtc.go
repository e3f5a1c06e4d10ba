package session

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v4/packetio"
	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/internal/packetqueue"
)

// ICEConfig is what an operator sets for how clients reach the server's
// peer connections.
type ICEConfig struct {
	// PortMin and PortMax bound the ephemeral UDP ports (0 = any).
	PortMin, PortMax uint16
	// UDPPort, when set, makes every session share this one UDP port.
	UDPPort int
	// TCPPort, when set, also accepts ICE over TCP (RFC 6544) on this port,
	// for clients whose networks block UDP.
	TCPPort int
	// PublicIPs are advertised instead of the host addresses (a server
	// behind 1:1 NAT, e.g. a cloud VM).
	PublicIPs []string
	// Servers are STUN/TURN servers for the server's own gathering.
	Servers []webrtc.ICEServer
	// IncludeLoopback gathers loopback candidates (tests in a namespace
	// with only loopback).
	IncludeLoopback bool
	// DisconnectedTimeout is pion's ICE consent timeout before it reports
	// disconnected; FailedTimeout before it gives up.
	DisconnectedTimeout, FailedTimeout time.Duration
}

// WebRTC is what all sessions' pion APIs share, plus the sockets they own.
type WebRTC struct {
	// sendME and sendIR make the connections that send media (see SendAPI).
	sendME *webrtc.MediaEngine
	sendIR *interceptor.Registry
	// recvME and recvIR make the connections that only receive (see
	// ReceiveAPI).
	recvME *webrtc.MediaEngine
	recvIR *interceptor.Registry
	// settings are both kinds': ICE, sockets, timeouts.
	settings webrtc.SettingEngine
	// packets lends the buffers of recorded tracks' packets between pion's
	// SRTP reader and the track's reader.
	packets *packetqueue.Pool
	closers []func() error
}

// rtpBufferLimit bounds the packets a track's reader has not read yet, as
// pion does by default (a second of video at 8 Mbit/s).
const rtpBufferLimit = 1000 * 1000

// ReceiveAPI makes the connection of a client whose media is recorded: it
// only receives (see receiveInterceptors for what that leaves out); each
// SSRC's RTP waits for the track's reader in a queue of pooled buffers,
// which an idle or drained stream gives back, and which rtp is told of (a
// track that needs no reader diverts it); and each RTCP packet pion
// decrypts goes to rtcp's writer for its SSRC at once, instead of waiting
// for a reader goroutine per track.
// pion logs through log.
func (w *WebRTC) ReceiveAPI(rtp func(ssrc uint32, q *packetqueue.Queue), rtcp func(ssrc uint32) io.ReadWriteCloser, log logging.LoggerFactory) *webrtc.API {
	se := w.settings
	se.LoggerFactory = log
	se.BufferFactory = func(kind packetio.BufferPacketType, ssrc uint32) io.ReadWriteCloser {
		if kind == packetio.RTCPBufferPacket {
			return rtcp(ssrc)
		}
		q := packetqueue.New(w.packets, rtpBufferLimit)
		rtp(ssrc, q)
		return q
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(w.recvME), webrtc.WithInterceptorRegistry(w.recvIR), webrtc.WithSettingEngine(se))
}

// SendAPI makes the connection of a supervisor, which sends media: it
// answers NACKs from its own send buffers and sends sender reports. pion
// logs through log.
func (w *WebRTC) SendAPI(log logging.LoggerFactory) *webrtc.API {
	se := w.settings
	se.LoggerFactory = log
	return webrtc.NewAPI(webrtc.WithMediaEngine(w.sendME), webrtc.WithInterceptorRegistry(w.sendIR), webrtc.WithSettingEngine(se))
}

// Close releases the shared UDP/TCP sockets.
func (w *WebRTC) Close() error {
	var errs []error
	for _, c := range w.closers {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

// recordable codecs, in the order the server prefers them: browsers send
// with the first codec of the answer, and VP8/VP9 keep the file WebM.
var (
	videoFeedback = []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	audioCodecs   = []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111},
	}
	videoCodecs = []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFeedback}, PayloadType: 96},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=96"}, PayloadType: 97},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0", RTCPFeedback: videoFeedback}, PayloadType: 98},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=98"}, PayloadType: 99},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", RTCPFeedback: videoFeedback}, PayloadType: 102},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=102"}, PayloadType: 103},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", RTCPFeedback: videoFeedback}, PayloadType: 104},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=104"}, PayloadType: 105},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=4d001f", RTCPFeedback: videoFeedback}, PayloadType: 106},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=106"}, PayloadType: 107},
	}
)

// negotiable reports whether a codec a client offers (an rtpmap encoding
// name) is one of audioCodecs or videoCodecs. sdptrim decides on
// retransmission itself: it keeps a kept codec's rtx.
func negotiable(name string) bool {
	for _, cs := range [][]webrtc.RTPCodecParameters{audioCodecs, videoCodecs} {
		for _, c := range cs {
			if _, sub, _ := strings.Cut(c.MimeType, "/"); strings.EqualFold(sub, name) {
				return true
			}
		}
	}
	return false
}

// NewWebRTC builds the pion APIs every session uses: the codecs rtmrec can
// record (anything else is answered inactive), RTCP feedback, mDNS off, and
// the operator's ICE settings.
func NewWebRTC(cfg ICEConfig, logger *slog.Logger) (*WebRTC, error) {
	sendME, err := newMediaEngine()
	if err != nil {
		return nil, err
	}
	sendIR := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(sendME, sendIR); err != nil {
		return nil, fmt.Errorf("register interceptors: %w", err)
	}
	recvME, err := newMediaEngine()
	if err != nil {
		return nil, err
	}
	recvIR, err := receiveInterceptors(recvME)
	if err != nil {
		return nil, fmt.Errorf("register interceptors: %w", err)
	}
	// pion registers the sdes:mid extension for video only (with the simulcast ones);
	// browsers offer it on every m-line and BUNDLE needs it to route packets of SSRCs
	// the SDP does not name, so the answer keeps it for audio too.
	for _, me := range []*webrtc.MediaEngine{sendME, recvME} {
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.SDESMidURI}, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("register header extensions: %w", err)
		}
	}

	w := &WebRTC{}
	// Each session's API gives pion that session's logger (SendAPI, ReceiveAPI).
	se := webrtc.SettingEngine{}
	// A browser's .local host candidates are ignored, knowingly: they name
	// the browser's LAN address, which only a server on that LAN could reach,
	// and pion's query-only mode to resolve them would cost multicast sockets
	// and 14 more goroutines per session (BenchmarkAnswerMDNSMode). The
	// connection forms through the browser's peer-reflexive (or srflx/relay)
	// candidates instead. pionLeveled keeps pion's warning about it quiet.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(cfg.IncludeLoopback)
	// IPv6 link-local addresses reach only the server's own link, and
	// browsers never offer theirs (they hide host addresses behind mDNS):
	// each would cost every session a candidate socket reader for nothing.
	se.SetIPFilter(func(ip net.IP) bool { return !ip.IsLinkLocalUnicast() })
	// A client's DTLS close must not close the server's side at once: the
	// protocol reports lost connectivity as DISCONNECTED, then
	// TERM_BY_MEDIA_TIMEOUT, whatever the client did.
	se.DisableCloseByDTLS(true)
	if cfg.DisconnectedTimeout > 0 || cfg.FailedTimeout > 0 {
		se.SetICETimeouts(cfg.DisconnectedTimeout, cfg.FailedTimeout, 2*time.Second)
	}
	if cfg.PortMin != 0 || cfg.PortMax != 0 {
		if err := se.SetEphemeralUDPPortRange(cfg.PortMin, cfg.PortMax); err != nil {
			return nil, fmt.Errorf("udp port range %d-%d: %w", cfg.PortMin, cfg.PortMax, err)
		}
	}
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if cfg.UDPPort != 0 {
		var opts []ice.UDPMuxFromPortOption
		if cfg.IncludeLoopback {
			opts = append(opts, ice.UDPMuxFromPortWithLoopback())
		}
		mux, err := ice.NewMultiUDPMuxFromPort(cfg.UDPPort, opts...)
		if err != nil {
			return nil, fmt.Errorf("udp port %d: %w", cfg.UDPPort, err)
		}
		w.closers = append(w.closers, mux.Close)
		se.SetICEUDPMux(mux)
	}
	if cfg.TCPPort != 0 {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{Port: cfg.TCPPort})
		if err != nil {
			_ = w.Close()
			return nil, fmt.Errorf("ice-tcp port %d: %w", cfg.TCPPort, err)
		}
		mux := webrtc.NewICETCPMux(pionLogger{l: logger}.NewLogger("ice-tcp"), ln, 64)
		w.closers = append(w.closers, mux.Close)
		se.SetICETCPMux(mux)
		networks = append(networks, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	se.SetNetworkTypes(networks)
	if len(cfg.PublicIPs) > 0 {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        cfg.PublicIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			_ = w.Close()
			return nil, fmt.Errorf("public ips: %w", err)
		}
	}
	w.sendME, w.sendIR, w.recvME, w.recvIR, w.settings, w.packets = sendME, sendIR, recvME, recvIR, se, packetqueue.NewPool()
	return w, nil
}

// newMediaEngine registers the recordable codecs and the forwarded header
// extensions. Codecs come first: the feedback interceptors only negotiate
// nack/pli/twcc for codecs already registered.
func newMediaEngine() (*webrtc.MediaEngine, error) {
	me := &webrtc.MediaEngine{}
	for _, c := range audioCodecs {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, fmt.Errorf("register %s: %w", c.MimeType, err)
		}
	}
	for _, c := range videoCodecs {
		if err := me.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("register %s: %w", c.MimeType, err)
		}
	}
	if err := registerExtensions(me); err != nil {
		return nil, fmt.Errorf("register header extensions: %w", err)
	}
	return me, nil
}

// pionLogger routes pion's warnings and errors into slog; pion's debug
// chatter stays off. A session's (see Session.setUp) logs with the
// session's attributes, and once closing is set (the session is closing
// its connection), every warning is about that teardown and is DEBUG:
// packets and checks in flight meet streams, sockets and agents already
// closed, and pion says so in words that change with each release.
// closing nil is a logger of no one session's (the shared ICE-TCP mux).
type pionLogger struct {
	l       *slog.Logger
	closing *atomic.Bool
}

func (p pionLogger) NewLogger(scope string) logging.LeveledLogger {
	return pionLeveled{l: p.l.With("component", "pion", "scope", scope), closed: new(atomic.Bool), closing: p.closing}
}

// pionLeveled is the logger of one pion component (one per ICE agent, say).
type pionLeveled struct {
	l *slog.Logger
	// closed: the component said it is closed; what it discards after that
	// is the traffic of a connection being torn down.
	closed *atomic.Bool
	// closing: the session is closing the connection (see pionLogger).
	closing *atomic.Bool
}

// benignWarnings are pion warnings that every healthy session produces, or
// that are about what rtmrec does on purpose, by how they begin and end;
// they are logged at DEBUG so that WARN keeps meaning "look at this"
// (integration's TestQuietLogs runs a whole session at INFO and wants no
// WARN line; the browser suite wants none either).
var benignWarnings = []struct{ prefix, suffix string }{
	// Every browser sends mDNS host candidates, and mDNS is off by design
	// (see NewWebRTC): the candidate is ignored and ICE connects anyway.
	{prefix: "Remote mDNS candidate added, but mDNS is disabled"},
	// At every start: the ICE agent's connectivity checks begin when the
	// answer is applied, and with trickle ICE the client's candidates come
	// after its offer, so the first ticks find no pair to check. The tick
	// after the first candidate arrives checks it.
	{prefix: "Failed to ping without candidate pairs"},
	// At every teardown: pion's goroutines that wait for streams of SSRCs
	// the SDP did not declare end when the SRTP/SRTCP session closes, and
	// report that close as the error that ended them. Other accept errors
	// stay warnings.
	{prefix: "Failed to accept RTP stream is already closed"},
	{prefix: "Failed to accept RTCP stream is already closed"},
	// At teardown: closing a candidate sets its socket's deadline to now to
	// unblock its read loop, which then reports the timeout (only that
	// deadline is ever set on a candidate's socket). Other read errors stay
	// warnings.
	{prefix: "Failed to read from candidate", suffix: "i/o timeout"},
	// RTCP about an SSRC nothing reads. Once per supervisor: its receiver
	// reports cover the retransmission (RTX) SSRC the server's offer
	// declares for each forwarded video, and pion's sender reads RTCP only
	// on the media SSRC, where the NACKs and PLIs that matter arrive.
	{prefix: "Incoming unhandled RTCP ssrc"},
	// A packet for a part of the connection that is not there yet or no
	// more: the client's DTLS close_notify (first byte 21) after the server
	// closed its side at teardown, or SRTP that overtakes the end of the
	// DTLS handshake (queued until it ends).
	{prefix: "Warning: mux: no endpoint for packet"},
}

// agentClosed ends what ICE says of work that reached its agent after it
// closed (a packet or a check in flight at teardown). Once its logger has
// seen it, "Discarded message from ..." (a packet from an address the
// closed agent could not check) is benign too; before, it is a packet from
// an address that is no candidate, and stays a warning.
const agentClosed = "the agent is closed"

func (p pionLeveled) warn(msg string) {
	switch {
	case p.closing != nil && p.closing.Load():
		p.l.Debug(msg)
		return
	case strings.HasSuffix(msg, agentClosed):
		p.closed.Store(true)
		p.l.Debug(msg)
		return
	case strings.HasPrefix(msg, "Discarded message from ") && p.closed.Load():
		p.l.Debug(msg)
		return
	}
	for _, b := range benignWarnings {
		if strings.HasPrefix(msg, b.prefix) && strings.HasSuffix(msg, b.suffix) {
			p.l.Debug(msg)
			return
		}
	}
	p.l.Warn(msg)
}

func (p pionLeveled) Trace(string)                 {}
func (p pionLeveled) Tracef(string, ...any)        {}
func (p pionLeveled) Debug(string)                 {}
func (p pionLeveled) Debugf(string, ...any)        {}
func (p pionLeveled) Info(msg string)              {}
func (p pionLeveled) Infof(string, ...any)         {}
func (p pionLeveled) Warn(msg string)              { p.warn(msg) }
func (p pionLeveled) Warnf(f string, args ...any)  { p.warn(fmt.Sprintf(f, args...)) }
func (p pionLeveled) Error(msg string)             { p.l.Error(msg) }
func (p pionLeveled) Errorf(f string, args ...any) { p.l.Error(fmt.Sprintf(f, args...)) }
