package session

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/rtm"
)

// commandQueue bounds the requests waiting for one session's loop.
const commandQueue = 32

// Session is one RTM session: a receive-only peer connection, its lifecycle
// and its recording. Everything that changes it runs on its own loop
// goroutine; other goroutines post to it.
type Session struct {
	srv       *Server
	conn      *conn
	id        string
	clientID  string
	key       string
	principal Principal
	webhook   string
	log       *slog.Logger
	// monitored is set for supervisor sessions.
	monitored *Session

	pc *webrtc.PeerConnection

	cmds   chan func()
	stopCh chan rtm.Cause
	// peerChanged signals that pion's connection state changed; the loop
	// then reads the current state.
	peerChanged chan struct{}
	ended       chan struct{} // closed when the session is fully torn down
	isOver      atomic.Bool

	// Owned by the loop goroutine.
	life       lifecycle
	cause      rtm.Cause
	answered   bool
	inAnswer   map[string]bool // candidates already inside the sent answer
	candidates int
	tracks     []*trackSink
	// published is a copy of tracks for goroutines other than the loop.
	published atomic.Pointer[[]*trackSink]
	rec       *activeRecording
	wantOffer bool // a server offer is owed once the signaling state is stable
	release   func()
	// supervisors monitoring this session; supMu because supervisors join
	// and leave from their own goroutines.
	supMu       sync.Mutex
	supervisors map[*Session]struct{}
	// forwarders are a supervisor session's sending tracks (loop-owned).
	forwarders []*forwarder

	// readers are the track and RTCP goroutines; readersMu guards adding to
	// the group against the teardown's Wait.
	readersMu sync.Mutex
	closing   bool
	readers   sync.WaitGroup

	// snapshot is read by Sessions() from other goroutines.
	snapMu   sync.Mutex
	snapshot SessionInfo
}

// startSession handles session_start on the connection's reader goroutine.
func (c *conn) startSession(m rtm.Message, offer *rtm.SessionDescription, webhookURL string, monitored *Session) error {
	c.pruneEnded()
	if len(c.sessions) >= c.srv.cfg.MaxSessionsPerConn {
		return rtm.Errorf(rtm.CodeServerBusy, "at most %d sessions per connection", c.srv.cfg.MaxSessionsPerConn)
	}
	if monitored == nil && !c.principal.MayRecord() {
		return rtm.Errorf(rtm.CodeUnauthorized, "this token may not start sessions")
	}
	if webhookURL != "" {
		if err := c.srv.checkURL(c.principal, webhookURL, false); err != nil {
			return err
		}
	}
	id := m.SessionID
	if id == "" {
		id = newID()
	}
	ss := &Session{
		srv:         c.srv,
		conn:        c,
		id:          id,
		clientID:    m.ClientID,
		key:         sessionKey(c.principal.Tenant(), id),
		principal:   c.principal,
		webhook:     webhookURL,
		monitored:   monitored,
		cmds:        make(chan func(), commandQueue),
		stopCh:      make(chan rtm.Cause, 1),
		peerChanged: make(chan struct{}, 1),
		ended:       make(chan struct{}),
		inAnswer:    map[string]bool{},
		supervisors: map[*Session]struct{}{},
	}
	ss.log = c.log.With("session_id", id)
	if c.principal.Tenant() != "" {
		ss.log = ss.log.With("tenant", c.principal.Tenant())
	}
	release, err := c.srv.deps.Admission.AcquireSession(c.principal.Tenant())
	if err != nil {
		return rtm.Errorf(rtm.CodeServerBusy, "%v", err)
	}
	ss.release = release
	if err := c.srv.register(ss); err != nil {
		release()
		return err
	}
	started := false
	defer func() {
		if !started {
			if ss.pc != nil {
				_ = ss.pc.Close()
			}
			c.srv.unregister(ss)
			release()
		}
	}()
	if ss.pc, err = c.srv.deps.WebRTC.API.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return fmt.Errorf("new peer connection: %w", err)
	}
	if monitored != nil {
		if err := ss.attachToMonitored(); err != nil {
			return err
		}
	}
	if err := ss.applyOffer(offer); err != nil {
		ss.endSupervision()
		return err
	}
	started = true
	ss.life.state = rtm.StateConnecting
	c.sessions[id] = ss
	ss.setSnapshot()
	ss.hookPeer()
	go ss.run()
	return nil
}

// applyOffer applies the client's first offer before the session exists,
// so that an unusable offer is refused without a session to tear down.
func (ss *Session) applyOffer(offer *rtm.SessionDescription) error {
	if ss.monitored != nil {
		// Forwarding tracks were added first and take the offer's m-lines.
		if err := ss.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.SDP}); err != nil {
			return rtm.Errorf(rtm.CodeInvalidSDP, "cannot apply offer: %s", sdpProblem(err))
		}
		return nil
	}
	if err := ss.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer.SDP}); err != nil {
		return rtm.Errorf(rtm.CodeInvalidSDP, "cannot apply offer: %s", sdpProblem(err))
	}
	if !ss.hasRecordableMedia() {
		return rtm.Errorf(rtm.CodeNotSupported, "the offer has no audio or video in a codec the server can record (Opus, VP8, VP9, H264)")
	}
	return nil
}

// hookPeer forwards pion's callbacks to the loop. pion runs each state
// callback in a goroutine of its own, so they may arrive out of order: the
// callback only signals, and the loop reads the current state.
func (ss *Session) hookPeer() {
	ss.pc.OnConnectionStateChange(func(webrtc.PeerConnectionState) {
		select {
		case ss.peerChanged <- struct{}{}:
		default: // a signal is already pending
		}
	})
	ss.pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
		ss.post(func() { ss.sendCandidate(cand) })
	})
	ss.pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		ss.post(func() { ss.addTrack(t, r) })
	})
}

// post runs f on the session loop; it drops f when the session has ended.
// Callers from pion goroutines must not block for long: the queue is
// bounded and the loop is fast.
func (ss *Session) post(f func()) bool {
	select {
	case ss.cmds <- f:
		return true
	case <-ss.ended:
		return false
	}
}

// stop ends the session with cause (the first cause wins).
func (ss *Session) stop(cause rtm.Cause) {
	select {
	case ss.stopCh <- cause:
	default:
	}
}

func (ss *Session) isEnded() bool { return ss.isOver.Load() }

// handle routes a client message to the session loop and waits for its
// answer, so errors come back in order on the connection.
func (ss *Session) handle(m rtm.Message) error {
	var h func() error
	switch m.Type {
	case rtm.TypeSDPUpdate:
		var d rtm.SDPUpdate
		if err := rtm.DecodeData(m, &d); err != nil {
			return err
		}
		h = func() error { return ss.onSDPUpdate(d.SDP) }
	case rtm.TypeCandidate:
		var d rtm.CandidateData
		if err := rtm.DecodeData(m, &d); err != nil {
			return err
		}
		h = func() error { return ss.onRemoteCandidate(d.Candidate) }
	case rtm.TypeSessionStop:
		ss.stop(rtm.CauseClient)
		return nil
	case rtm.TypeRecordingStart:
		var d rtm.RecordingStart
		if err := rtm.DecodeData(m, &d); err != nil {
			return err
		}
		if ss.monitored != nil {
			return rtm.Errorf(rtm.CodeNotSupported, "a supervisor session cannot record")
		}
		if !ss.principal.MayRecord() {
			return rtm.Errorf(rtm.CodeUnauthorized, "this token may not record")
		}
		if err := ss.srv.checkURL(ss.principal, d.UploadURL, true); err != nil {
			return err
		}
		if d.WebhookURL != "" {
			if err := ss.srv.checkURL(ss.principal, d.WebhookURL, false); err != nil {
				return err
			}
		}
		h = func() error { return ss.startRecording(d) }
	case rtm.TypeRecordingStop:
		h = ss.stopRecording
	case rtm.TypeRecordingPause:
		h = func() error { return ss.pauseRecording(true) }
	case rtm.TypeRecordingResume:
		h = func() error { return ss.pauseRecording(false) }
	default:
		return rtm.Errorf(rtm.CodeUnknownType, "unknown message type %q", string(m.Type))
	}
	res := make(chan error, 1)
	select {
	case ss.cmds <- func() { res <- h() }:
	case <-ss.ended:
		return rtm.Errorf(rtm.CodeSessionNotFound, "session %q has ended", ss.id)
	default:
		return rtm.Errorf(rtm.CodeServerBusy, "session %q is busy; slow down", ss.id)
	}
	select {
	case err := <-res:
		return err
	case <-ss.ended:
		return nil
	}
}

// run is the session loop: it owns the lifecycle and the peer connection.
func (ss *Session) run() {
	defer ss.teardown()
	if err := ss.answer(); err != nil {
		ss.log.Error("answer offer", "err", err)
		ss.transition(ss.life.terminate(rtm.CauseError), "could not answer the offer")
		return
	}
	ss.transition(transition{to: rtm.StateConnecting}, "")
	ss.afterStart()

	timeout := time.NewTimer(ss.srv.cfg.ConnectTimeout)
	defer timeout.Stop()
	var maxDuration <-chan time.Time
	if ss.srv.cfg.MaxDuration > 0 {
		t := time.NewTimer(ss.srv.cfg.MaxDuration)
		defer t.Stop()
		maxDuration = t.C
	}
	for ss.life.state != rtm.StateTerminated {
		select {
		case f := <-ss.cmds:
			f()
		case <-ss.peerChanged:
			tr := ss.life.onPeerState(ss.pc.ConnectionState())
			switch tr.to {
			case rtm.StateConnected:
				timeout.Stop()
			case rtm.StateDisconnected:
				timeout.Reset(ss.srv.cfg.DisconnectTimeout)
			}
			ss.transition(tr, "")
		case <-timeout.C:
			ss.transition(ss.life.onTimer(), "")
		case <-maxDuration:
			ss.transition(ss.life.terminate(rtm.CauseMaxDuration), "")
		case cause := <-ss.stopCh:
			ss.transition(ss.life.terminate(cause), "")
		}
	}
}

// transition announces a state change on the WebSocket and the webhook.
func (ss *Session) transition(tr transition, reason string) {
	if tr.to == "" {
		return
	}
	if tr.to == rtm.StateTerminated {
		ss.cause = tr.cause
		ss.srv.metrics.terminations.WithLabelValues(string(tr.cause)).Inc()
	}
	ss.log.Info("session state", "state", tr.to, "cause", tr.cause)
	ss.setSnapshot()
	ss.emit(rtm.TypeSessionState, rtm.SessionState{State: tr.to, TerminationCause: tr.cause, Reason: reason}, ss.webhook)
}

// emit sends a server event to the client (while connected) and the webhook.
func (ss *Session) emit(t rtm.Type, data any, webhookURL string) {
	m, err := rtm.NewMessage(t, ss.clientID, ss.id, data)
	if err != nil {
		ss.log.Error("encode event", "type", t, "err", err)
		return
	}
	ss.srv.publish(ss.conn, m, Event{WebhookURL: webhookURL, OrderKey: ss.key, Identity: ss.principal.Identity(), Message: m})
}

// answer answers the applied offer, with the candidates gathered so far;
// later ones trickle.
func (ss *Session) answer() error {
	ans, err := ss.pc.CreateAnswer(nil)
	if err != nil {
		return rtm.Errorf(rtm.CodeInvalidSDP, "cannot answer offer: %s", sdpProblem(err))
	}
	gathered := webrtc.GatheringCompletePromise(ss.pc)
	if err := ss.pc.SetLocalDescription(ans); err != nil {
		return fmt.Errorf("set local description: %w", err)
	}
	// Host candidates take milliseconds; waiting briefly lets a client that
	// does not trickle connect from the answer alone, without holding the
	// answer hostage to a slow STUN server.
	select {
	case <-gathered:
	case <-time.After(150 * time.Millisecond):
	}
	local := ss.pc.LocalDescription()
	for _, line := range strings.Split(local.SDP, "\n") {
		if c, ok := strings.CutPrefix(strings.TrimSpace(line), "a="); ok && strings.HasPrefix(c, "candidate:") {
			ss.inAnswer[c] = true
		}
	}
	ss.conn.sendMessage(rtm.TypeSDPUpdate, ss.clientID, ss.id, rtm.SDPUpdate{SDP: &rtm.SessionDescription{Type: "answer", SDP: local.SDP}})
	ss.answered = true
	return nil
}

// hasRecordableMedia reports whether any m-line was accepted for receiving.
func (ss *Session) hasRecordableMedia() bool {
	for _, tr := range ss.pc.GetTransceivers() {
		if tr.Mid() == "" {
			continue
		}
		if d := tr.Direction(); d == webrtc.RTPTransceiverDirectionRecvonly || d == webrtc.RTPTransceiverDirectionSendrecv {
			if ss.monitored != nil || len(tr.Receiver().GetParameters().Codecs) > 0 {
				return true
			}
		}
	}
	return ss.monitored != nil
}

func (ss *Session) sendCandidate(c *webrtc.ICECandidate) {
	if !ss.answered && c != nil {
		// It will be in the answer's SDP.
		return
	}
	if c == nil {
		ss.conn.sendMessage(rtm.TypeCandidate, ss.clientID, ss.id, rtm.CandidateData{Candidate: &rtm.ICECandidate{Candidate: ""}})
		return
	}
	init := c.ToJSON()
	if ss.inAnswer[init.Candidate] {
		return
	}
	ss.conn.sendMessage(rtm.TypeCandidate, ss.clientID, ss.id, rtm.CandidateData{Candidate: &rtm.ICECandidate{
		Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex, UsernameFragment: init.UsernameFragment,
	}})
}

func (ss *Session) onRemoteCandidate(c *rtm.ICECandidate) error {
	if c.Candidate == "" {
		return nil // end of candidates: nothing to wait for on our side
	}
	ss.candidates++
	if ss.candidates > ss.srv.cfg.MaxCandidates {
		return rtm.Errorf(rtm.CodeServerBusy, "at most %d candidates per session", ss.srv.cfg.MaxCandidates)
	}
	err := ss.pc.AddICECandidate(webrtc.ICECandidateInit{
		Candidate: c.Candidate, SDPMid: c.SDPMid, SDPMLineIndex: c.SDPMLineIndex, UsernameFragment: c.UsernameFragment,
	})
	if err != nil {
		return rtm.Errorf(rtm.CodeInvalidMessage, "cannot add candidate: %s", sdpProblem(err))
	}
	return nil
}

// onSDPUpdate applies a client offer (renegotiation) or the client's answer
// to a server offer. On an offer collision the server yields (it is the
// polite peer): it rolls its offer back, answers, and offers again later.
func (ss *Session) onSDPUpdate(d *rtm.SessionDescription) error {
	switch d.Type {
	case "offer":
		if ss.pc.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
			if err := ss.pc.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback}); err != nil {
				return fmt.Errorf("rollback local offer: %w", err)
			}
			ss.wantOffer = true
		}
		if err := ss.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: d.SDP}); err != nil {
			return rtm.Errorf(rtm.CodeInvalidSDP, "cannot apply offer: %s", sdpProblem(err))
		}
		ans, err := ss.pc.CreateAnswer(nil)
		if err != nil {
			return rtm.Errorf(rtm.CodeInvalidSDP, "cannot answer offer: %s", sdpProblem(err))
		}
		if err := ss.pc.SetLocalDescription(ans); err != nil {
			return fmt.Errorf("set local description: %w", err)
		}
		ss.conn.sendMessage(rtm.TypeSDPUpdate, ss.clientID, ss.id, rtm.SDPUpdate{SDP: &rtm.SessionDescription{Type: "answer", SDP: ss.pc.LocalDescription().SDP}})
		ss.afterRenegotiation()
		return nil
	case "answer":
		if ss.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
			return rtm.Errorf(rtm.CodeInvalidSDP, "unexpected answer: the server has no offer outstanding; send an offer")
		}
		if err := ss.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: d.SDP}); err != nil {
			return rtm.Errorf(rtm.CodeInvalidSDP, "cannot apply answer: %s", sdpProblem(err))
		}
		ss.afterRenegotiation()
		return nil
	}
	return rtm.Errorf(rtm.CodeInvalidSDP, "sdp.type must be offer or answer")
}

// offer sends a server-initiated offer (supervisors gaining tracks). It
// waits for a stable signaling state rather than cause a collision itself.
func (ss *Session) offer() {
	if ss.pc.SignalingState() != webrtc.SignalingStateStable {
		ss.wantOffer = true
		return
	}
	ss.wantOffer = false
	o, err := ss.pc.CreateOffer(nil)
	if err != nil {
		ss.log.Error("create offer", "err", err)
		return
	}
	if err := ss.pc.SetLocalDescription(o); err != nil {
		ss.log.Error("set local offer", "err", err)
		return
	}
	ss.conn.sendMessage(rtm.TypeSDPUpdate, ss.clientID, ss.id, rtm.SDPUpdate{SDP: &rtm.SessionDescription{Type: "offer", SDP: ss.pc.LocalDescription().SDP}})
}

func (ss *Session) afterRenegotiation() {
	if ss.wantOffer && ss.pc.SignalingState() == webrtc.SignalingStateStable {
		ss.offer()
	}
}

// teardown runs when the loop ends: the recording is finished and handed to
// delivery, the peer connection closed, the readers waited for.
func (ss *Session) teardown() {
	ss.isOver.Store(true)
	ss.srv.unregister(ss)
	ss.finishRecording()
	ss.endSupervision()

	ss.readersMu.Lock()
	ss.closing = true
	ss.readersMu.Unlock()
	if err := ss.pc.Close(); err != nil {
		ss.log.Warn("close peer connection", "err", err)
	}
	ss.readers.Wait()
	ss.release()
	close(ss.ended)
	// Drain what pion posted while we were closing, so nothing waits on us.
	for {
		select {
		case <-ss.cmds:
		default:
			return
		}
	}
}

// goReader starts a goroutine that the teardown waits for; it refuses once
// the teardown began.
func (ss *Session) goReader(f func()) bool {
	ss.readersMu.Lock()
	defer ss.readersMu.Unlock()
	if ss.closing {
		return false
	}
	ss.readers.Add(1)
	go func() {
		defer ss.readers.Done()
		f()
	}()
	return true
}

func (ss *Session) setSnapshot() {
	info := SessionInfo{
		Tenant: ss.principal.Tenant(), SessionID: ss.id, ClientID: ss.clientID,
		State: string(ss.life.state), Supervisor: ss.monitored != nil,
	}
	if ss.rec != nil {
		info.Recording = ss.rec.id
	}
	ss.snapMu.Lock()
	prev := ss.snapshot.State
	ss.snapshot = info
	ss.snapMu.Unlock()
	if prev != info.State {
		if prev != "" {
			ss.srv.metrics.sessions.WithLabelValues(prev).Dec()
		}
		if info.State != "" && info.State != string(rtm.StateTerminated) {
			ss.srv.metrics.sessions.WithLabelValues(info.State).Inc()
		}
	}
}

func (ss *Session) info() SessionInfo {
	ss.snapMu.Lock()
	info := ss.snapshot
	ss.snapMu.Unlock()
	for _, t := range ss.tracksSnapshot() {
		info.Tracks = append(info.Tracks, TrackStats{ID: t.info.ID, Kind: string(t.info.Kind), Codec: string(t.info.Codec), Packets: t.packets.Load()})
	}
	return info
}

// sdpProblem shortens pion's error text for the client.
func sdpProblem(err error) string {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}
