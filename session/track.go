package session

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtmrec/rtmrec/internal/packetqueue"
	"github.com/rtmrec/rtmrec/internal/reception"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
)

const (
	// pliInterval rate-limits keyframe requests per track: a keyframe costs the
	// sender bandwidth, and one every half second is enough to recover.
	pliInterval = 500 * time.Millisecond
	// reportInterval is how often a recorded track's receiver report goes out,
	// as often as browsers send theirs.
	reportInterval = time.Second
)

// trackSink is one received track and where its packets go. Whoever takes
// its packets (its reader, or pion's goroutine for a diverted track) loads
// the targets atomically, so attaching a recording or a supervisor never
// blocks the media path.
type trackSink struct {
	info   recorder.TrackInfo
	remote *webrtc.TrackRemote
	ssrc   uint32
	owner  *Session
	// mline is the track's m-line index in the offer, for a stable order.
	mline int
	// ext are the ids of the forwarded header extensions negotiated with
	// the client.
	ext *extIDs
	rec atomic.Pointer[recorder.Track]
	fwd atomic.Pointer[[]*forwarder]
	fan fanout
	// rx keeps the reception statistics of a recorded client's track, which
	// its receiver reports give (nil for a supervisor's: pion reports
	// those). rx and nextReport belong to whoever takes the track's packets:
	// its reader, or the goroutine writing to its diverted queue.
	rx         *reception.Stream
	nextReport time.Time
	// diverted: the track has no reader (see divert).
	diverted bool
	// counted counts the track's packets by kind on the metrics.
	counted prometheus.Counter
	// pt is the payload type of the track's codec.
	pt uint8

	packets atomic.Uint64
	lastPLI atomic.Int64
}

// addTrack runs on the session loop when pion reports a new remote track.
func (ss *Session) addTrack(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	codec, ok := recorder.CodecFromMime(t.Codec().MimeType)
	if !ok {
		ss.log.Warn("track with a codec that cannot be recorded", "mime", t.Codec().MimeType)
		return
	}
	kind := recorder.KindAudio
	if t.Kind() == webrtc.RTPCodecTypeVideo {
		kind = recorder.KindVideo
	}
	id, mline := ss.trackID(t, r)
	if len(ss.tracks) >= ss.srv.cfg.MaxTracks {
		// Simulcast layers or many renegotiations: the offers passed,
		// the tracks do not.
		ss.srv.metrics.limits.WithLabelValues(limitTracks).Inc()
		ss.log.Warn("track refused: the session has all the tracks it may have", "track", id, "max", ss.srv.cfg.MaxTracks)
		ss.link.SendError(rtm.Message{ClientID: ss.clientID, SessionID: ss.id}, rtm.Errorf(rtm.CodeServerBusy,
			"track %s is neither recorded nor forwarded: a session may have at most %d tracks", id, ss.srv.cfg.MaxTracks))
		return
	}
	ext := negotiatedExtensions(r.GetParameters().HeaderExtensions)
	sink := &trackSink{
		mline:   mline,
		info:    recorder.TrackInfo{ID: id, Kind: kind, Codec: codec, ClockRate: t.Codec().ClockRate, Channels: t.Codec().Channels},
		remote:  t,
		owner:   ss,
		ssrc:    uint32(t.SSRC()),
		ext:     ext,
		pt:      uint8(t.Codec().PayloadType),
		counted: ss.srv.metrics.rtpPackets.WithLabelValues(string(kind)),
	}
	if kind == recorder.KindVideo {
		sink.info.OrientationExtID = ext.orientation()
	}
	if ss.monitored == nil {
		// A recorded client's RTCP comes through its rtcpTaps; the track's
		// receiver reports go out as its packets come (see receive).
		sink.rx = reception.New(sink.ssrc, t.Codec().ClockRate)
	} else {
		// A supervisor's connection buffers its RTCP as pion does: read it.
		ss.goReader(func() { ss.readRTCP(sink, r) })
	}
	ss.tracks = append(ss.tracks, sink)
	ss.publishTracks()
	ss.log.Info("track received", "track", id, "kind", kind, "codec", codec, "ssrc", sink.ssrc)
	if ss.rec != nil {
		ss.attachRecording(sink)
	}
	ss.setSnapshot()
	ss.addTrackToSupervisors(sink)
	if q := ss.queue(sink.ssrc); q != nil && sink.rx != nil && !readInterceptors(t, r) {
		ss.divert(sink, q)
		return
	}
	ss.goReader(func() { ss.readRTP(sink) })
}

// addQueue keeps the RTP queue pion made for ssrc, for divert. It runs on
// pion's goroutines.
func (ss *Session) addQueue(ssrc uint32, q *packetqueue.Queue) {
	ss.queuesMu.Lock()
	defer ss.queuesMu.Unlock()
	if ss.queues == nil {
		ss.queues = map[uint32]*packetqueue.Queue{}
	}
	ss.queues[ssrc] = q
}

func (ss *Session) queue(ssrc uint32) *packetqueue.Queue {
	ss.queuesMu.Lock()
	defer ss.queuesMu.Unlock()
	return ss.queues[ssrc]
}

// closeQueues runs in the teardown once the connection is closed: a
// diverted queue's packets are then taken no more, and none is being
// taken (pion closes its queues as it stops; this makes sure of it).
func (ss *Session) closeQueues() {
	ss.queuesMu.Lock()
	defer ss.queuesMu.Unlock()
	for _, q := range ss.queues {
		_ = q.Close()
	}
}

// divert takes the packets of a track that needs no reader (no
// interceptor works on it: see readInterceptors) as pion decrypts them,
// in pion's goroutine, instead of in a reader goroutine of its own: a
// goroutine and a wake-up per packet less. The packets that came before
// are read first, here on the loop: the one pion peeked at to make the
// track, and those queued since; then the queue hands on the rest.
//
// Receiver reports then go out as packets come, once a second, but not
// while none come: the sender has nothing to learn from them then.
func (ss *Session) divert(sink *trackSink, q *packetqueue.Queue) {
	sink.nextReport, sink.diverted = time.Now().Add(reportInterval), true
	q.Divert(func(pkt []byte) {
		if len(pkt) >= 12 {
			ss.receive(sink, pkt, time.Now(), pkt[1]&0x7f == sink.pt)
		}
	})
	buf := make([]byte, 1500)
	for {
		n, _, err := sink.remote.Read(buf)
		switch {
		case err == nil:
			ss.receive(sink, buf[:n], time.Now(), true)
		case errors.Is(err, packetqueue.ErrDiverted):
			return
		case n >= 12:
			ss.receive(sink, buf[:n], time.Now(), false) // pion knows no codec for its payload type
		case n == 0:
			return // the track ended
		}
	}
}

// trackID names a track by its m-line (and simulcast layer), which is stable
// across renegotiations, unlike SSRCs.
func (ss *Session) trackID(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) (id string, mline int) {
	id = t.ID()
	for i, tr := range ss.pc.GetTransceivers() {
		if tr.Receiver() == r && tr.Mid() != "" {
			id, mline = "mid"+tr.Mid(), i
			break
		}
	}
	if rid := t.RID(); rid != "" {
		id += "/" + rid
	}
	return id, mline
}

// readRTP reads a track that needs a reader (see divert): one read buffer
// per track, no allocation per packet, nothing that can block. It also
// sends the track's receiver reports, waking for them when no packet comes:
// a goroutine of its own per connection, as pion's report interceptor has,
// costs every session a stack.
func (ss *Session) readRTP(sink *trackSink) {
	buf := make([]byte, 1500)
	if sink.rx != nil {
		sink.nextReport = time.Now().Add(reportInterval)
		_ = sink.remote.SetReadDeadline(sink.nextReport)
	}
	for {
		n, _, err := sink.remote.Read(buf)
		var ne net.Error
		switch {
		case err == nil:
			ss.receive(sink, buf[:n], time.Now(), true)
		case n > 0:
			// One bad packet: pion knows no codec for its payload type.
			if n >= 12 {
				ss.receive(sink, buf[:n], time.Now(), false)
			}
		case sink.rx == nil || !errors.As(err, &ne) || !ne.Timeout():
			return // the track ended
		default:
			ss.report(sink, time.Now()) // no packet for a while
		}
	}
}

// receive takes one packet of the track, received at now: the hot path,
// which allocates nothing and never blocks. A packet that is not media
// (its payload type is not the track's codec) is skipped, but counts in
// the receiver reports: it came, and its sequence number is no loss.
func (ss *Session) receive(sink *trackSink, pkt []byte, now time.Time, media bool) {
	if media {
		sink.packets.Add(1)
		sink.counted.Inc()
		if r := sink.rec.Load(); r != nil {
			r.WriteRTP(pkt, now)
		}
		if f := sink.fwd.Load(); f != nil {
			sink.distribute(*f, pkt)
		}
	}
	if sink.rx != nil {
		sink.rx.Packet(binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:]), now.UnixNano())
		ss.report(sink, now)
	}
}

// report sends the track's receiver report if one is due at now, and moves
// its reader's deadline (if it has one) to the next.
func (ss *Session) report(sink *trackSink, now time.Time) {
	if now.Before(sink.nextReport) {
		return
	}
	if block, ok := sink.rx.Report(now.UnixNano()); ok {
		rr := &rtcp.ReceiverReport{SSRC: ss.rtcpSSRC, Reports: []rtcp.ReceptionReport{block}}
		if err := ss.pc.WriteRTCP([]rtcp.Packet{rr}); err != nil {
			ss.log.Debug("send receiver report", "err", err)
		}
	}
	sink.nextReport = now.Add(reportInterval)
	if !sink.diverted {
		_ = sink.remote.SetReadDeadline(sink.nextReport)
	}
}

// readRTCP keeps a supervisor's receiver's RTCP flowing (pion buffers it
// until read) and hands on its Sender Reports.
func (ss *Session) readRTCP(sink *trackSink, r *webrtc.RTPReceiver) {
	for {
		pkts, _, err := r.ReadRTCP()
		if err != nil {
			return
		}
		now := time.Now()
		for _, p := range pkts {
			if sr, ok := p.(*rtcp.SenderReport); ok && sr.SSRC == sink.ssrc {
				sink.senderReport(sr, now)
			}
		}
	}
}

// senderReport hands a Sender Report of the track, received at at, to its
// receiver report and to its recording (for A/V sync). Safe from any
// goroutine.
func (sink *trackSink) senderReport(sr *rtcp.SenderReport, at time.Time) {
	if sink.rx != nil {
		sink.rx.SenderReport(sr.NTPTime, at.UnixNano())
	}
	if rt := sink.rec.Load(); rt != nil {
		rt.WriteSenderReport(sr.NTPTime, sr.RTPTime, at)
	}
}

// rtcpTap takes the RTCP of one SSRC of a recorded client's connection as
// pion's SRTCP reader decrypts it (it is that connection's RTCP "buffer"),
// and hands on the Sender Reports of the session's tracks at once: their
// arrival time is exact, and no goroutine per track waits to read them.
// What else comes (receiver reports on nothing sent, or packets for an SSRC
// that is no track) is dropped: a receive-only connection has no use for it.
type rtcpTap struct {
	ss     *Session
	ssrc   uint32
	closed chan struct{}
	once   sync.Once
}

func (ss *Session) newRTCPTap(ssrc uint32) io.ReadWriteCloser {
	return &rtcpTap{ss: ss, ssrc: ssrc, closed: make(chan struct{})}
}

// Write takes RTCP as pion's SRTCP reader decrypts it (one packet of a
// compound at a time, but a whole compound would do); it never fails, so
// pion goes on reading.
func (t *rtcpTap) Write(b []byte) (int, error) {
	now := time.Now()
	pkts, err := rtcp.Unmarshal(b)
	if err != nil {
		return len(b), nil
	}
	for _, p := range pkts {
		sr, ok := p.(*rtcp.SenderReport)
		if !ok || sr.SSRC != t.ssrc {
			continue // an SR goes to every SSRC it names: only its sender's tap takes it
		}
		for _, sink := range t.ss.tracksSnapshot() {
			if sink.ssrc == sr.SSRC {
				sink.senderReport(sr, now)
			}
		}
	}
	return len(b), nil
}

// Read has nothing to give: it waits for Close (nothing in rtmrec reads a
// recorded client's RTCP).
func (t *rtcpTap) Read([]byte) (int, error) {
	<-t.closed
	return 0, io.EOF
}

// Close ends a waiting Read.
func (t *rtcpTap) Close() error {
	t.once.Do(func() { close(t.closed) })
	return nil
}

// requestKeyframe asks the sender for a keyframe (PLI), at most once per
// pliInterval per track. Safe from any goroutine.
func (ss *Session) requestKeyframe(sink *trackSink) {
	if sink.info.Kind != recorder.KindVideo {
		return
	}
	now := time.Now().UnixNano()
	last := sink.lastPLI.Load()
	if now-last < int64(pliInterval) || !sink.lastPLI.CompareAndSwap(last, now) {
		return
	}
	if err := ss.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: sink.ssrc}}); err != nil {
		ss.log.Debug("send PLI", "err", err)
	}
}

// publishTracks makes the loop's track list visible to other goroutines.
func (ss *Session) publishTracks() {
	list := append([]*trackSink(nil), ss.tracks...)
	ss.published.Store(&list)
}

func (ss *Session) tracksSnapshot() []*trackSink {
	if p := ss.published.Load(); p != nil {
		return *p
	}
	return nil
}
