package testclient

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"

	"github.com/rtmrec/rtmrec/rtm"
)

// Media holds the committed clips: a 1 kHz Opus tone (20 ms frames), a
// 320x240 30 fps VP8 test pattern (keyframe every second), the same pattern
// in H.264 (Constrained Baseline, Annex B, SPS/PPS before every IDR, made
// with ffmpeg's libx264) and a 15 fps "screen" pattern. Each is 12 s long
// and is looped.
//
//go:embed media/*
var Media embed.FS

// Source names a clip to send.
type Source string

// The clips.
const (
	Tone       Source = "media/tone.ogg"
	Camera     Source = "media/clip.ivf"
	CameraH264 Source = "media/clip.h264"
	Screen     Source = "media/screen.ivf"
)

// mime is the codec a source is sent with.
func (s Source) mime() string {
	switch s {
	case Tone:
		return webrtc.MimeTypeOpus
	case CameraH264:
		return webrtc.MimeTypeH264
	}
	return webrtc.MimeTypeVP8
}

// NewAPI builds a pion API like a browser's: default codecs and interceptors.
func NewAPI() (*webrtc.API, error) { return buildAPI(nil, nil) }

// buildAPI is NewAPI with header extensions registered before the default
// ones (first, so they get the lowest ids) and more registered after them.
func buildAPI(first []string, after func(*webrtc.MediaEngine, *interceptor.Registry) error) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	for _, u := range first {
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: u}, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, err
		}
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, err
	}
	if after != nil {
		if err := after(me, ir); err != nil {
			return nil, err
		}
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir)), nil
}

// NewAPIWithCodecs builds a pion API that offers exactly these codecs (in
// this order), with the default interceptors, and sdes:mid on every m-line
// as browsers offer it: e.g. Safari's offer, H.264 only.
func NewAPIWithCodecs(audio, video []webrtc.RTPCodecParameters) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	for kind, codecs := range map[webrtc.RTPCodecType][]webrtc.RTPCodecParameters{webrtc.RTPCodecTypeAudio: audio, webrtc.RTPCodecTypeVideo: video} {
		for _, c := range codecs {
			if err := me.RegisterCodec(c, kind); err != nil {
				return nil, fmt.Errorf("register %s: %w", c.MimeType, err)
			}
		}
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(me, ir); err != nil {
		return nil, err
	}
	if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.SDESMidURI}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir)), nil
}

// Peer is a client peer connection that sends clips.
type Peer struct {
	PC     *webrtc.PeerConnection
	tracks []*sendTrack
	paced  []pacedCursor // with StreamOn
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

type sendTrack struct {
	src    Source
	track  *webrtc.TrackLocalStaticSample
	sender *webrtc.RTPSender
	// Sent counts samples written.
	sent atomic.Int64
}

// NewPeer builds a send-only peer with a track per source.
func NewPeer(api *webrtc.API, sources ...Source) (*Peer, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	p := &Peer{PC: pc}
	for i, s := range sources {
		if _, err := p.AddSource(s, fmt.Sprintf("t%d", i)); err != nil {
			_ = pc.Close()
			return nil, err
		}
	}
	return p, nil
}

// AddSource adds a send-only track for a clip (renegotiation is the
// caller's business).
func (p *Peer) AddSource(s Source, id string) (*webrtc.RTPSender, error) {
	kind := "video"
	if s == Tone {
		kind = "audio"
	}
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: s.mime()}, kind+"-"+id, "rtmrec-test")
	if err != nil {
		return nil, err
	}
	tr, err := p.PC.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, err
	}
	st := &sendTrack{src: s, track: track, sender: tr.Sender()}
	p.tracks = append(p.tracks, st)
	// Read RTCP so that the interceptors (NACK responder, reports) work.
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Sender().Read(buf); err != nil {
				return
			}
		}
	}()
	return tr.Sender(), nil
}

// Stream starts sending every track's clip at real time, looping, until
// Stop or ctx ends. Tracks added later start with StreamTrack.
func (p *Peer) Stream(ctx context.Context) {
	p.ctx, p.cancel = context.WithCancel(ctx)
	for _, t := range p.tracks {
		p.startTrack(p.ctx, t)
	}
}

// StreamLast starts the most recently added track (after Stream).
func (p *Peer) StreamLast() {
	p.startTrack(p.ctx, p.tracks[len(p.tracks)-1])
}

func (p *Peer) startTrack(ctx context.Context, t *sendTrack) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		_ = t.play(ctx)
	}()
}

// Sent reports samples written per track, in order of addition.
func (p *Peer) Sent() []int64 {
	out := make([]int64, len(p.tracks))
	for i, t := range p.tracks {
		out[i] = t.sent.Load()
	}
	return out
}

// Close stops streaming and closes the peer connection.
func (p *Peer) Close() {
	if p.cancel != nil {
		p.cancel()
	}
	p.unpace()
	p.wg.Wait()
	_ = p.PC.Close()
}

func (t *sendTrack) play(ctx context.Context) error {
	c, err := t.cursor(time.Now(), nil)
	if err != nil {
		return err
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		at, err := c.send(time.Now())
		if err != nil {
			return err
		}
		timer.Reset(time.Until(at))
		select {
		case <-timer.C:
		case <-ctx.Done():
			return nil
		}
	}
}

// cursor walks a track's clip in real time from start, looping.
type cursor struct {
	t       *sendTrack
	clip    *clip
	i       int // the next frame
	start   time.Time
	elapsed time.Duration
}

// due is when the next frame should go out.
func (c *cursor) due() time.Time { return c.start.Add(c.elapsed) }

func (t *sendTrack) cursor(start time.Time, c *clip) (*cursor, error) {
	if c == nil {
		var err error
		if c, err = loadClip(t.src); err != nil {
			return nil, err
		}
	}
	return &cursor{t: t, clip: c, start: start}, nil
}

// send writes every sample due by now and returns when the next one is.
// Pacing on the clip's own clock keeps timing errors from adding up.
func (c *cursor) send(now time.Time) (time.Time, error) {
	for {
		at := c.due()
		if at.After(now) {
			return at, nil
		}
		f := c.clip.frames[c.i]
		c.i = (c.i + 1) % len(c.clip.frames)
		if err := c.t.track.WriteSample(media.Sample{Data: f.payload, Duration: f.dur}); err != nil {
			return time.Time{}, err
		}
		c.t.sent.Add(1)
		c.elapsed += f.dur
	}
}

// clip is a source's frames, parsed once: a load generator sends the same
// clip on hundreds of tracks, and parsing (and checksumming) its container
// for every frame sent cost it a tenth of its CPU. Frames are only read
// (pion's packetizer copies what it sends), so one clip serves any number of
// tracks at once.
type clip struct {
	frames []clipFrame
}

type clipFrame struct {
	payload []byte
	dur     time.Duration
}

func loadClip(src Source) (*clip, error) {
	data, err := Media.ReadFile(string(src))
	if err != nil {
		return nil, err
	}
	next, err := frames(src, data)
	if err != nil {
		return nil, err
	}
	c := &clip{}
	for {
		payload, dur, err := next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		c.frames = append(c.frames, clipFrame{payload, dur})
	}
	if len(c.frames) == 0 {
		return nil, fmt.Errorf("%s: no frames", src)
	}
	return c, nil
}

// frames returns an iterator over the clip's frames with their durations.
func frames(src Source, data []byte) (func() ([]byte, time.Duration, error), error) {
	if src == Tone {
		r, _, err := oggreader.NewWith(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		var last uint64
		return func() ([]byte, time.Duration, error) {
			for {
				page, hdr, err := r.ParseNextPage()
				if err != nil {
					return nil, 0, err
				}
				if len(page) >= 8 && (string(page[:8]) == "OpusHead" || string(page[:8]) == "OpusTags") {
					continue
				}
				d := 20 * time.Millisecond
				if hdr.GranulePosition > last && last != 0 {
					d = time.Duration(hdr.GranulePosition-last) * time.Second / 48000
				}
				last = hdr.GranulePosition
				return page, d, nil
			}
		}, nil
	}
	if src == CameraH264 {
		return h264Frames(data)
	}
	r, hdr, err := ivfreader.NewWith(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	frameDur := time.Duration(float64(time.Second) * float64(hdr.TimebaseNumerator) / float64(hdr.TimebaseDenominator))
	return func() ([]byte, time.Duration, error) {
		frame, _, err := r.ParseNextFrame()
		if err != nil {
			return nil, 0, err
		}
		return frame, frameDur, nil
	}, nil
}

// Start sends session_start with the peer's offer and waits for the answer;
// candidates then trickle both ways.
func (c *Client) Start(ctx context.Context, p *Peer, clientID, sessionID, webhookURL string) error {
	return c.negotiate(ctx, p.PC, sessionID, func(offer *rtm.SessionDescription) error {
		return c.Send(rtm.TypeSessionStart, clientID, sessionID, rtm.SessionStart{SDP: offer, WebhookURL: webhookURL})
	})
}

// Renegotiate sends a new offer with sdp_update and applies the answer.
func (c *Client) Renegotiate(ctx context.Context, p *Peer, clientID, sessionID string) error {
	return c.negotiate(ctx, p.PC, sessionID, func(offer *rtm.SessionDescription) error {
		return c.Send(rtm.TypeSDPUpdate, clientID, sessionID, rtm.SDPUpdate{SDP: offer})
	})
}

func (c *Client) negotiate(ctx context.Context, pc *webrtc.PeerConnection, sessionID string, send func(*rtm.SessionDescription) error) error {
	c.mu.Lock()
	tr := c.trickle[sessionID]
	if tr == nil {
		// Candidates wait for the offer: sent before it, they would name a
		// session the server does not know yet.
		tr = &trickler{}
		c.trickle[sessionID] = tr
		c.peers[sessionID] = pc
		pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
			d := rtm.CandidateData{Candidate: &rtm.ICECandidate{}}
			if cand != nil {
				init := cand.ToJSON()
				d.Candidate = &rtm.ICECandidate{Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex}
			}
			tr.send(func() { _ = c.Send(rtm.TypeCandidate, "", sessionID, d) })
		})
	}
	c.mu.Unlock()
	// Hold the session's negotiation until the answer is applied, so a
	// server offer arriving meanwhile waits instead of meeting a
	// have-local-offer state (handleSignal takes the same lock).
	tr.negotiating.Lock()
	defer tr.negotiating.Unlock()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		return err
	}
	err = send(&rtm.SessionDescription{Type: "offer", SDP: offer.SDP})
	tr.open()
	if err != nil {
		return err
	}
	m, err := c.Wait(ctx, func(m rtm.Message) bool {
		if m.SessionID != sessionID {
			return false
		}
		if m.Type == rtm.TypeError {
			return Data[rtm.ErrorData](m).RequestType != rtm.TypeCandidate
		}
		if m.Type != rtm.TypeSDPUpdate {
			return false
		}
		d := Data[rtm.SDPUpdate](m)
		return d.SDP != nil && d.SDP.Type == "answer"
	})
	if err != nil {
		return err
	}
	if m.Type == rtm.TypeError {
		return fmt.Errorf("server refused: %s", string(m.Data))
	}
	return pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: Data[rtm.SDPUpdate](m).SDP.SDP})
}

// trickler holds a session's candidates until its offer has been sent, and
// serialises its offer/answer exchanges.
type trickler struct {
	negotiating sync.Mutex

	mu      sync.Mutex
	ready   bool
	pending []func()
}

func (t *trickler) send(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.ready {
		t.pending = append(t.pending, f)
		return
	}
	f()
}

func (t *trickler) open() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ready = true
	for _, f := range t.pending {
		f()
	}
	t.pending = nil
}

// h264Frames iterates over the access units of an Annex B clip at 30 fps:
// the NAL units up to and including each picture's slice, with start codes,
// as pion's H.264 payloader takes them.
func h264Frames(data []byte) (func() ([]byte, time.Duration, error), error) {
	r, err := h264reader.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	return func() ([]byte, time.Duration, error) {
		var au []byte
		for {
			nal, err := r.NextNAL()
			if err != nil {
				return nil, 0, err
			}
			au = append(au, 0, 0, 0, 1)
			au = append(au, nal.Data...)
			if nal.UnitType == h264reader.NalUnitTypeCodedSliceIdr || nal.UnitType == h264reader.NalUnitTypeCodedSliceNonIdr {
				return au, time.Second / 30, nil
			}
		}
	}, nil
}
