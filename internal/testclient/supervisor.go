package testclient

import (
	"context"
	"hash/fnv"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/rtm"
)

// Watcher is a supervisor's receive-only peer: it counts what arrives per
// kind, notes whether video began with a keyframe, and hashes payloads so
// a test can compare them with what the client sent.
type Watcher struct {
	PC *webrtc.PeerConnection

	mu       sync.Mutex
	packets  map[string]int
	hashes   map[uint64]bool
	firstKey map[string]bool // track id → its earliest video packet (by sequence number) starts a keyframe
	tracks   int
	latency  []time.Duration
	sentAt   *SendLog
	// rotations counts video packets by the CVO rotation they carried under
	// the id this peer negotiated; foreign counts packets carrying an
	// extension id this peer did not negotiate.
	rotations map[int]int
	foreign   int
}

// NewWatcher builds a supervisor peer with recvonly audio and video m-lines.
func NewWatcher(api *webrtc.API, audio, video int) (*Watcher, error) {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, err
	}
	w := &Watcher{PC: pc, packets: map[string]int{}, hashes: map[uint64]bool{}, firstKey: map[string]bool{}, rotations: map[int]int{}}
	for range audio {
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return nil, err
		}
	}
	for range video {
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return nil, err
		}
	}
	pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		w.mu.Lock()
		w.tracks++
		w.mu.Unlock()
		kind := t.Kind().String()
		negotiated := map[uint8]bool{}
		var cvo uint8
		for _, e := range r.GetParameters().HeaderExtensions {
			negotiated[uint8(e.ID)] = true
			if e.URI == VideoOrientation {
				cvo = uint8(e.ID)
			}
		}
		// The server's first video packet must start a keyframe. It is found
		// by sequence number among the first packets, not as the first to
		// arrive: on a loaded machine it may be lost and come back through
		// a retransmission after later ones.
		var n int
		var earliest uint16
		for {
			p, _, err := t.ReadRTP()
			if err != nil {
				return
			}
			now := time.Now()
			h := hashPayload(p.Payload)
			w.mu.Lock()
			if kind == "video" && n < firstPackets && (n == 0 || int16(p.SequenceNumber-earliest) < 0) {
				earliest = p.SequenceNumber
				w.firstKey[t.ID()] = isVP8KeyframeStart(p.Payload)
			}
			n++
			w.packets[kind]++
			w.hashes[h] = true
			for _, id := range p.Header.GetExtensionIDs() {
				if !negotiated[id] {
					w.foreign++
				}
			}
			if v := p.Header.GetExtension(cvo); cvo != 0 && len(v) > 0 {
				w.rotations[int(v[0]&0x03)*90]++
			}
			if w.sentAt != nil {
				if at, ok := w.sentAt.when(h); ok {
					w.latency = append(w.latency, now.Sub(at))
				}
			}
			w.mu.Unlock()
		}
	})
	return w, nil
}

// firstPackets is how many of a track's first packets are searched for its
// earliest.
const firstPackets = 100

// Join sends supervisor_join_session and applies the answer.
func (c *Client) Join(ctx context.Context, w *Watcher, clientID, sessionID, monitored string) error {
	return c.negotiate(ctx, w.PC, sessionID, func(offer *rtm.SessionDescription) error {
		return c.Send(rtm.TypeSupervisorJoinSession, clientID, sessionID, rtm.SupervisorJoin{SDP: offer, SessionIDToMonitor: monitored})
	})
}

// JoinOffered sends supervisor_join_session without an offer: the server
// offers (an sdp_update the client answers, as for any server offer), the
// way Ant Media's players are served. It returns once the join is sent.
func (c *Client) JoinOffered(w *Watcher, clientID, sessionID, monitored string) error {
	c.mu.Lock()
	c.trickle[sessionID] = &trickler{ready: true}
	c.peers[sessionID] = w.PC
	c.mu.Unlock()
	return c.Send(rtm.TypeSupervisorJoinSession, clientID, sessionID, rtm.SupervisorJoin{SessionIDToMonitor: monitored})
}

// Stats reports packets per kind and the number of tracks received.
func (w *Watcher) Stats() (packets map[string]int, tracks int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for k, v := range w.packets {
		out[k] = v
	}
	return out, w.tracks
}

// Orientation reports the video packets received per CVO rotation (under
// the id this peer negotiated), and how many packets carried an extension
// id this peer never negotiated.
func (w *Watcher) Orientation() (rotations map[int]int, foreign int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[int]int{}
	for k, v := range w.rotations {
		out[k] = v
	}
	return out, w.foreign
}

// VideoStartedOnKeyframe reports, per received video track, whether its
// first packet began a keyframe.
func (w *Watcher) VideoStartedOnKeyframe() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]bool{}
	for k, v := range w.firstKey {
		out[k] = v
	}
	return out
}

// Matches counts received payloads that were also sent (by hash).
func (w *Watcher) Matches(sent *SendLog) (matched, total int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for h := range w.hashes {
		total++
		if _, ok := sent.when(h); ok {
			matched++
		}
	}
	return matched, total
}

// MeasureLatency makes the watcher record, for each payload also in sent,
// the time from the client's send to its arrival here.
func (w *Watcher) MeasureLatency(sent *SendLog) {
	w.mu.Lock()
	w.sentAt = sent
	w.mu.Unlock()
}

// Latencies returns the recorded send→receive latencies.
func (w *Watcher) Latencies() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]time.Duration(nil), w.latency...)
}

// Close closes the peer connection.
func (w *Watcher) Close() { _ = w.PC.Close() }

func isVP8KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	// VP8 payload descriptor (RFC 7741 §4.2): skip the optional fields.
	i := 1
	if p[0]&0x80 != 0 && len(p) > 1 {
		x := p[1]
		i = 2
		if x&0x80 != 0 { // I: picture id
			if len(p) > i && p[i]&0x80 != 0 {
				i += 2
			} else {
				i++
			}
		}
		if x&0x40 != 0 { // L
			i++
		}
		if x&0x30 != 0 { // T or K
			i++
		}
	}
	start := p[0]&0x10 != 0 && p[0]&0x07 == 0
	return start && len(p) > i && p[i]&0x01 == 0
}

func hashPayload(b []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(b)
	return h.Sum64()
}

// SendLog records the payload hash and send time of every RTP packet a
// client sends, through a pion interceptor.
type SendLog struct {
	interceptor.NoOp
	mu   sync.Mutex
	sent map[uint64]time.Time
}

// NewSendLog makes an empty log; register it with APIWithSendLog.
func NewSendLog() *SendLog { return &SendLog{sent: map[uint64]time.Time{}} }

func (l *SendLog) when(h uint64) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.sent[h]
	return t, ok
}

// BindLocalStream wraps the RTP writer of each outgoing stream.
func (l *SendLog) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		l.mu.Lock()
		l.sent[hashPayload(payload)] = time.Now()
		l.mu.Unlock()
		return w.Write(h, payload, a)
	})
}

type sendLogFactory struct{ l *SendLog }

func (f sendLogFactory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.l, nil }

// APIWithSendLog is NewAPI with the log recording every sent packet.
func APIWithSendLog(l *SendLog) (*webrtc.API, error) {
	return buildAPI(nil, func(_ *webrtc.MediaEngine, ir *interceptor.Registry) error {
		ir.Add(sendLogFactory{l})
		return nil
	})
}
