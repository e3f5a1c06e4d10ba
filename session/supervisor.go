package session

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
)

// forwardQueue bounds the packets waiting for one supervisor track: about a
// second of video. A supervisor that cannot keep up loses packets (counted),
// never the monitored session.
const forwardQueue = 256

// sharedPacket is one received RTP packet shared by every supervisor that
// forwards it: the media path copies it once, whatever their number.
type sharedPacket struct {
	buf  [1500]byte
	n    int
	refs atomic.Int32
	pool *sync.Pool
}

func (p *sharedPacket) release() {
	if p.refs.Add(-1) == 0 {
		p.pool.Put(p)
	}
}

// fanout is a monitored track's list of forwarders with the pool of shared
// packets; writers (supervisors joining and leaving) take mu, the media path
// only loads the atomic list.
type fanout struct {
	mu   sync.Mutex
	pool sync.Pool
}

// forwarder sends one monitored track to one supervisor. Its goroutine
// belongs to the supervisor session.
type forwarder struct {
	src    *trackSink
	sup    *Session
	local  *webrtc.TrackLocalStaticRTP
	sender *webrtc.RTPSender
	queue  chan *sharedPacket
	// done ends run; the queue itself is never closed, because the media
	// path may still hold the old forwarder list and send to it.
	done chan struct{}
	// awaitKey holds video back until a keyframe, so the supervisor's
	// picture never starts grey or smeared.
	awaitKey bool
	// dst are the extension ids negotiated with the supervisor; its loop
	// updates them after each negotiation.
	dst atomic.Pointer[extIDs]
}

// offer is called with the shared packet by whoever takes the monitored
// track's packets (its reader, or pion's goroutine for a diverted track);
// it never blocks.
func (f *forwarder) offer(p *sharedPacket) {
	p.refs.Add(1)
	select {
	case f.queue <- p:
	default:
		p.release()
		f.sup.srv.metrics.forwardDropped.Inc()
	}
}

// run writes queued packets to the supervisor's track until done.
func (f *forwarder) run() {
	var pkt rtp.Packet
	for {
		var p *sharedPacket
		select {
		case p = <-f.queue:
		case <-f.done:
			return
		}
		if err := pkt.Unmarshal(p.buf[:p.n]); err != nil {
			p.release()
			continue
		}
		if f.awaitKey {
			if !recorder.IsKeyframeStart(f.src.info.Codec, pkt.Payload) {
				p.release()
				f.src.owner.requestKeyframe(f.src)
				continue
			}
			f.awaitKey = false
		}
		remapExtensions(&pkt.Header, f.src.ext, f.dst.Load())
		_ = f.local.WriteRTP(&pkt)
		p.release()
	}
}

// relayFeedback passes the supervisor's keyframe requests to the monitored
// client (rate-limited there); NACKs are answered by pion's responder from
// its send buffer.
func (f *forwarder) relayFeedback() {
	for {
		pkts, _, err := f.sender.ReadRTCP()
		if err != nil {
			return
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				f.src.owner.requestKeyframe(f.src)
			}
		}
	}
}

// distribute hands a received packet to the track's supervisors.
func (t *trackSink) distribute(fws []*forwarder, pkt []byte) {
	p, _ := t.fan.pool.Get().(*sharedPacket)
	if p == nil {
		p = &sharedPacket{pool: &t.fan.pool}
	}
	p.n = copy(p.buf[:], pkt)
	p.refs.Store(1)
	for _, f := range fws {
		f.offer(p)
	}
	p.release()
}

func (t *trackSink) addForwarder(f *forwarder) {
	t.fan.mu.Lock()
	defer t.fan.mu.Unlock()
	var list []*forwarder
	if cur := t.fwd.Load(); cur != nil {
		list = append(list, *cur...)
	}
	list = append(list, f)
	t.fwd.Store(&list)
}

func (t *trackSink) removeForwarders(sup *Session) {
	t.fan.mu.Lock()
	defer t.fan.mu.Unlock()
	cur := t.fwd.Load()
	if cur == nil {
		return
	}
	var list []*forwarder
	for _, f := range *cur {
		if f.sup != sup {
			list = append(list, f)
		}
	}
	if len(list) == 0 {
		t.fwd.Store(nil)
		return
	}
	t.fwd.Store(&list)
}

// joinSession takes supervisor_join_session on the link's goroutine.
func (l *Link) joinSession(m rtm.Message, d rtm.SupervisorJoin) error {
	p := l.principal()
	if !p.MaySupervise(d.SessionIDToMonitor) {
		return rtm.Errorf(rtm.CodeUnauthorized, "this token may not supervise session %q", d.SessionIDToMonitor)
	}
	target := l.srv.lookup(p.Tenant(), d.SessionIDToMonitor)
	if target == nil || target.isEnded() {
		return rtm.Errorf(rtm.CodeSessionNotFound, "no session %q to monitor", d.SessionIDToMonitor)
	}
	if target.monitored != nil {
		return rtm.Errorf(rtm.CodeNotSupported, "session %q is a supervisor session and cannot be monitored", d.SessionIDToMonitor)
	}
	return l.startSession(m, d.SDP, d.WebhookURL, target)
}

// attachToMonitored adds a forwarding track for every track of the
// monitored session before the answer is created, so the supervisor's
// recvonly m-lines are answered sendonly with them (or offered, when the
// supervisor sent no offer). Runs on the supervisor's goroutine before its
// loop starts.
func (ss *Session) attachToMonitored() error {
	target := ss.monitored
	target.supMu.Lock()
	if target.supervisors == nil {
		target.supMu.Unlock()
		return rtm.Errorf(rtm.CodeSessionNotFound, "session %q has ended", target.id)
	}
	target.supervisors[ss] = struct{}{}
	target.supMu.Unlock()
	for _, t := range target.tracksSnapshot() {
		ss.forwardTrack(t)
	}
	target.notes.post(func() { target.audit("supervisor_joined", ss) })
	return nil
}

// forwardTrack creates the supervisor's sending track for a monitored track.
func (ss *Session) forwardTrack(src *trackSink) {
	for _, f := range ss.forwarders {
		if f.src == src {
			return // announced twice while joining
		}
	}
	codec := src.remote.Codec().RTPCodecCapability
	local, err := webrtc.NewTrackLocalStaticRTP(codec, src.info.ID, "rtmrec-"+ss.monitored.id)
	if err != nil {
		ss.log.Error("forwarding track", "track", src.info.ID, "err", err)
		return
	}
	sender, err := ss.pc.AddTrack(local)
	if err != nil {
		ss.log.Error("add forwarding track", "track", src.info.ID, "err", err)
		return
	}
	f := &forwarder{
		src: src, sup: ss, local: local, sender: sender,
		queue:    make(chan *sharedPacket, forwardQueue),
		done:     make(chan struct{}),
		awaitKey: src.info.Kind == recorder.KindVideo,
	}
	f.dst.Store(negotiatedExtensions(sender.GetParameters().HeaderExtensions))
	ss.forwarders = append(ss.forwarders, f)
	if !ss.goReader(f.run) {
		return
	}
	ss.goReader(f.relayFeedback)
	src.addForwarder(f)
	src.owner.requestKeyframe(src)
}

// afterStart runs on the loop once the answer was sent: a supervisor whose
// offer had fewer m-lines than the monitored session has tracks gets the
// rest through a server offer.
func (ss *Session) afterStart() {
	if ss.monitored == nil {
		return
	}
	for _, tr := range ss.pc.GetTransceivers() {
		if tr.Sender() != nil && tr.Sender().Track() != nil && tr.Mid() == "" {
			ss.offer()
			return
		}
	}
}

// addTrackToSupervisors runs on the monitored session's loop when it gains a
// track (a screen share added mid-call): every supervisor gets it through a
// server-sent offer.
func (ss *Session) addTrackToSupervisors(t *trackSink) {
	ss.supMu.Lock()
	sups := make([]*Session, 0, len(ss.supervisors))
	for s := range ss.supervisors {
		sups = append(sups, s)
	}
	ss.supMu.Unlock()
	for _, sup := range sups {
		sup.notes.post(func() {
			sup.forwardTrack(t)
			sup.offer()
		})
	}
}

// endSupervision runs at teardown: a monitored session ends its
// supervisors; a supervisor detaches from the monitored session.
func (ss *Session) endSupervision() {
	ss.supMu.Lock()
	sups := ss.supervisors
	ss.supervisors = nil
	ss.supMu.Unlock()
	for sup := range sups {
		sup.stop(rtm.CauseMonitoredSessionEnd)
	}
	target := ss.monitored
	if target == nil {
		return
	}
	target.supMu.Lock()
	delete(target.supervisors, ss)
	target.supMu.Unlock()
	for _, t := range target.tracksSnapshot() {
		t.removeForwarders(ss)
	}
	for _, f := range ss.forwarders {
		close(f.done)
	}
	target.notes.post(func() { target.audit("supervisor_left", ss) })
}

// audit notes a supervisor's visit in the running recording's manifest and
// its durable journey (contact centers must be able to show who listened,
// even after a crash). Runs on the loop.
func (ss *Session) audit(kind string, sup *Session) {
	if ss.rec == nil {
		return
	}
	ss.rec.audit(recorder.AuditEvent{Time: time.Now().UTC(), Kind: kind, SessionID: sup.id, Identity: sup.principal.Identity()})
}

// auditPresent lists the supervisors already listening when a recording
// starts. Runs on the loop.
func (ss *Session) auditPresent() {
	ss.supMu.Lock()
	sups := make([]*Session, 0, len(ss.supervisors))
	for sup := range ss.supervisors {
		sups = append(sups, sup)
	}
	ss.supMu.Unlock()
	for _, sup := range sups {
		ss.audit("supervisor_present", sup)
	}
}
