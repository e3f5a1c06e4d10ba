package session

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/internal/packetqueue"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/sdptrim"
	"github.com/rtmrec/rtmrec/webhook"
)

// commandQueue bounds the client requests waiting for one session's loop.
const commandQueue = 32

// Session is one RTM session: a peer connection, its lifecycle and its
// recording. Everything that changes it runs on its own loop goroutine;
// other goroutines post to it. The loop never waits for disk, DNS or
// another session: slow steps run beside it (async) and hold the client's
// later requests back until they are done, so requests keep their order.
type Session struct {
	srv       *Server
	link      *Link
	id        string
	clientID  string
	key       string
	instance  string // tells this session from an earlier one with the same id, in event ids
	principal Principal
	webhook   string
	log       *slog.Logger
	// monitored is set for supervisor sessions.
	monitored *Session

	pc *webrtc.PeerConnection
	// pcClosing is set before the session closes pc: pion's warnings are
	// then about the teardown, and DEBUG (see pionLogger).
	pcClosing atomic.Bool
	// rtcpSSRC is the session's own SSRC in the receiver reports it sends.
	rtcpSSRC uint32

	ctx    context.Context // ends at teardown: what the session waits for gives up
	cancel context.CancelFunc

	cmds   chan func()
	notes  *mailbox
	stopCh chan rtm.Cause
	// peerChanged signals that pion's connection state changed; the loop
	// then reads the current state.
	peerChanged chan struct{}
	// stepDone carries the end of the async step in flight.
	stepDone chan func()
	ended    chan struct{} // closed when the session is fully torn down
	isOver   atomic.Bool

	// Owned by the loop goroutine.
	life       lifecycle
	begun      time.Time // CONNECTING: the session's duration runs from here
	busy       bool      // an async step is in flight: client requests wait
	cause      rtm.Cause
	answered   bool
	inAnswer   map[string]bool // candidates already inside the sent answer
	candidates int
	stateSeen  map[rtm.State]int // how often each state was announced, for event ids
	tracks     []*trackSink
	// published is a copy of tracks for goroutines other than the loop.
	published   atomic.Pointer[[]*trackSink]
	rec         *activeRecording
	recStarting bool
	wantOffer   bool // a server offer is owed once the signaling state is stable
	claimed     bool // the cluster's directory holds the id for this session
	release     func()
	// supervisors monitoring this session; supMu because supervisors join
	// and leave from their own goroutines.
	supMu       sync.Mutex
	supervisors map[*Session]struct{}
	// forwarders are a supervisor session's sending tracks (loop-owned).
	forwarders []*forwarder
	// expiry ends a supervisor session when its token expires (loop-owned).
	expiry *time.Timer

	// readers are the track, RTCP and async goroutines; readersMu guards
	// adding to the group against the teardown's Wait.
	readersMu sync.Mutex
	closing   bool
	readers   sync.WaitGroup
	// queues are a recorded client's RTP queues by SSRC, which pion makes
	// on its own goroutines; a track that needs no reader diverts its own.
	queuesMu sync.Mutex
	queues   map[uint32]*packetqueue.Queue

	// snapshot is read by Sessions() from other goroutines.
	snapMu   sync.Mutex
	snapshot SessionInfo
}

// startSession takes session_start (or, with monitored set,
// supervisor_join_session) on the link's goroutine: it reserves the id and
// starts the session's goroutine, which does the rest. offer may be nil
// for a supervisor: the server then makes the offer.
func (l *Link) startSession(m rtm.Message, offer *rtm.SessionDescription, webhookURL string, monitored *Session) error {
	requested := time.Now()
	p := l.principal()
	if monitored == nil && !p.MayRecord() {
		return rtm.Errorf(rtm.CodeUnauthorized, "this token may not start sessions")
	}
	id := m.SessionID
	if id == "" {
		id = newID()
	}
	ctx, cancel := context.WithCancel(context.Background())
	ss := &Session{
		srv:         l.srv,
		link:        l,
		id:          id,
		clientID:    m.ClientID,
		key:         sessionKey(p.Tenant(), id),
		instance:    newID(),
		principal:   p,
		webhook:     webhookURL,
		monitored:   monitored,
		ctx:         ctx,
		cancel:      cancel,
		cmds:        make(chan func(), commandQueue),
		notes:       newMailbox(),
		stopCh:      make(chan rtm.Cause, 1),
		peerChanged: make(chan struct{}, 1),
		stepDone:    make(chan func(), 1),
		ended:       make(chan struct{}),
		inAnswer:    map[string]bool{},
		stateSeen:   map[rtm.State]int{},
		supervisors: map[*Session]struct{}{},
		release:     func() {},
		rtcpSSRC:    rand.Uint32(),
	}
	ss.log = l.log.With("session_id", id, "client_id", m.ClientID)
	if t := p.Tenant(); t != "" {
		ss.log = ss.log.With("tenant", t)
	}
	// Set before register publishes the session: Sessions reads it from then on.
	ss.snapshot = SessionInfo{Tenant: p.Tenant(), SessionID: id, ClientID: m.ClientID, Supervisor: monitored != nil}
	if err := l.srv.register(ss); err != nil {
		cancel()
		return err
	}
	if err := l.add(ss); err != nil {
		l.srv.unregister(ss)
		cancel()
		return err
	}
	go ss.run(m, offer, requested)
	return nil
}

// setUp makes the session real: admission, the webhook URL check, the
// peer connection and the answer (or, for a supervisor without an offer,
// the server's offer). It runs on the session's goroutine before the loop,
// so a slow DNS answer holds only this session. An error refuses the
// request: the session never existed for the client.
func (ss *Session) setUp(offer *rtm.SessionDescription) error {
	release, err := ss.srv.deps.Admission.AcquireSession(ss.principal.Tenant())
	if err != nil {
		return refusal(err)
	}
	ss.release = release
	if dir := ss.srv.deps.Directory; dir != nil {
		// The id is unique across the cluster before the session exists
		// for the client; errors carry session_exists or server_busy.
		if err := dir.Claim(ss.ctx, ss.principal.Tenant(), ss.id); err != nil {
			return err
		}
		ss.claimed = true
	}
	if ss.webhook != "" {
		if err := ss.srv.checkURL(ss.ctx, ss.principal, ss.webhook, false); err != nil {
			return err
		}
	}
	pionLog := pionLogger{l: ss.log, closing: &ss.pcClosing}
	var api *webrtc.API
	if ss.monitored == nil {
		api = ss.srv.deps.WebRTC.ReceiveAPI(ss.addQueue, ss.newRTCPTap, pionLog)
	} else {
		api = ss.srv.deps.WebRTC.SendAPI(pionLog)
	}
	if ss.pc, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		return fmt.Errorf("new peer connection: %w", err)
	}
	if ss.monitored != nil {
		if err := ss.attachToMonitored(); err != nil {
			return err
		}
	}
	ss.hookPeer()
	if offer == nil {
		return ss.offerFirst()
	}
	if err := ss.applyOffer(offer.SDP); err != nil {
		return err
	}
	if ss.monitored == nil && !ss.hasRecordableMedia() {
		return rtm.Errorf(rtm.CodeNotSupported, "the offer has no audio or video in a codec the server can record (Opus, VP8, VP9, H264)")
	}
	if err := ss.answer(); err != nil {
		return err
	}
	ss.refreshExtensions()
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
		ss.notes.post(func() { ss.sendCandidate(cand) })
	})
	ss.pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		ss.notes.post(func() { ss.addTrack(t, r) })
	})
}

// stop ends the session with cause (the first cause wins).
func (ss *Session) stop(cause rtm.Cause) {
	select {
	case ss.stopCh <- cause:
	default:
	}
}

func (ss *Session) isEnded() bool { return ss.isOver.Load() }

// handle queues a client request for the session's loop, which answers
// it (errors included) in order. Decoding happens here, so a malformed
// request is answered at once.
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
		h = func() error { return ss.startRecording(m, d) }
	case rtm.TypeRecordingStop:
		h = ss.stopRecording
	case rtm.TypeRecordingPause:
		h = func() error { return ss.pauseRecording(true) }
	case rtm.TypeRecordingResume:
		h = func() error { return ss.pauseRecording(false) }
	default:
		return rtm.Errorf(rtm.CodeUnknownType, "unknown message type %q", string(m.Type))
	}
	select {
	case ss.cmds <- func() {
		if err := h(); err != nil {
			ss.link.SendError(m, err)
		}
	}:
		return nil
	default:
		return rtm.Errorf(rtm.CodeServerBusy, "session %q is busy; slow down", ss.id)
	}
}

// async runs work beside the loop; the loop takes no client request until
// the function work returns has run on the loop. Only one step is in
// flight at a time. If the session ends first, the teardown runs it.
func (ss *Session) async(work func() (then func())) {
	ss.busy = true
	ss.goReader(func() {
		ss.stepDone <- work()
	})
}

// run sets the session up, then is its loop: it owns the lifecycle and the
// peer connection. requested is when the link took the request.
func (ss *Session) run(req rtm.Message, offer *rtm.SessionDescription, requested time.Time) {
	defer ss.teardown()
	if err := ss.setUp(offer); err != nil {
		ss.link.SendError(req, err)
		return
	}
	role := "client"
	if ss.monitored != nil {
		role = "supervisor"
	}
	ss.srv.metrics.setup.WithLabelValues(role).Observe(time.Since(requested).Seconds())
	ss.life.state = rtm.StateConnecting
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
	// A supervisor listens only while its token is valid; a client's call
	// goes on (see token.go).
	expired := ss.startExpiry()
	if ss.expiry != nil {
		defer ss.expiry.Stop()
	}
	for ss.life.state != rtm.StateTerminated {
		var cmds <-chan func()
		if !ss.busy {
			cmds = ss.cmds
		}
		select {
		case f := <-cmds:
			f()
		case then := <-ss.stepDone:
			ss.busy = false
			then()
		case <-ss.notes.ready:
			for _, f := range ss.notes.take() {
				f()
			}
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
		case <-expired:
			ss.transition(ss.life.terminate(rtm.CauseTokenExpired), "the supervisor's token expired; join again with a new token")
		case cause := <-ss.stopCh:
			ss.transition(ss.life.terminate(cause), "")
		}
	}
}

// transition announces a state change on the connection and the webhook.
func (ss *Session) transition(tr transition, reason string) {
	if tr.to == "" {
		return
	}
	switch tr.to {
	case rtm.StateTerminated:
		ss.cause = tr.cause
		ss.srv.metrics.terminations.WithLabelValues(string(tr.cause)).Inc()
		ss.log.Info("session ended", "cause", tr.cause, "supervisor", ss.monitored != nil,
			"duration", time.Since(ss.begun).Round(time.Millisecond).String())
	case rtm.StateConnecting:
		ss.begun = time.Now()
		if ss.monitored != nil {
			ss.log.Info("session started", "supervisor", true, "monitored_session_id", ss.monitored.id)
		} else {
			ss.log.Info("session started", "supervisor", false)
		}
	default:
		ss.log.Debug("session state", "state", tr.to)
	}
	ss.setSnapshot()
	ss.emitState(rtm.SessionState{State: tr.to, TerminationCause: tr.cause, Reason: reason})
}

// emitState sends a session_state to the webhook and, once it is durable,
// to the client. The first one (CONNECTING) leaves a TERMINATED with
// TERM_BY_ERROR behind in the outbox, sent instead should the server die
// before the session's own TERMINATED.
func (ss *Session) emitState(st rtm.SessionState) {
	m, err := rtm.NewMessage(rtm.TypeSessionState, ss.clientID, ss.id, st)
	if err != nil {
		ss.log.Error("encode event", "err", err)
		return
	}
	ss.stateSeen[st.State]++
	ev, err := ss.webhookEvent(m, string(st.State), ss.stateSeen[st.State])
	if err != nil {
		ss.log.Error("encode webhook", "err", err)
		return
	}
	if st.State == rtm.StateConnecting && ss.stateSeen[st.State] == 1 && ss.webhook != "" {
		crash, err := rtm.NewMessage(rtm.TypeSessionState, ss.clientID, ss.id, rtm.SessionState{
			State: rtm.StateTerminated, TerminationCause: rtm.CauseError,
			Reason: "the server stopped unexpectedly; a recording of the session is finished after its restart",
		})
		if err == nil {
			if fb, err := ss.webhookEvent(crash, string(rtm.StateTerminated), 1); err == nil {
				ev.Fallback = &fb
			}
		}
	}
	link := ss.link
	ss.srv.deps.Events.Publish(ev, func() { link.send(m) })
}

// webhookEvent is the webhook event of the session's n-th message of kind
// what: its id depends only on the session instance, what and n.
func (ss *Session) webhookEvent(m rtm.Message, what string, n int) (webhook.Event, error) {
	payload, err := rtm.WebhookPayload(m, ss.principal.Identity())
	if err != nil {
		return webhook.Event{}, err
	}
	return webhook.Event{
		ID:  webhook.EventID("session", ss.instance, what, fmt.Sprint(n)),
		Key: ss.key, URL: ss.webhook, Payload: payload,
	}, nil
}

// answer answers the applied offer, with the candidates gathered by then;
// later ones trickle (unless the link wants complete gathering).
func (ss *Session) answer() error {
	ans, err := ss.pc.CreateAnswer(nil)
	if err != nil {
		return rtm.Errorf(rtm.CodeInvalidSDP, "cannot answer offer: %s", sdpProblem(err))
	}
	if err := ss.setLocal(ans); err != nil {
		return err
	}
	ss.link.sendMessage(rtm.TypeSDPUpdate, ss.clientID, ss.id, rtm.SDPUpdate{SDP: &rtm.SessionDescription{Type: "answer", SDP: ss.pc.LocalDescription().SDP}})
	return nil
}

// offerFirst makes the server's offer to a supervisor who sent none (the
// forwarding tracks are already added); the client answers with
// sdp_update.
func (ss *Session) offerFirst() error {
	if len(ss.forwarders) == 0 {
		return rtm.Errorf(rtm.CodeSessionNotFound, "session %q has no media yet; join again once it has", ss.monitored.id)
	}
	o, err := ss.pc.CreateOffer(nil)
	if err != nil {
		return fmt.Errorf("create offer: %w", err)
	}
	if err := ss.setLocal(o); err != nil {
		return err
	}
	ss.link.sendMessage(rtm.TypeSDPUpdate, ss.clientID, ss.id, rtm.SDPUpdate{SDP: &rtm.SessionDescription{Type: "offer", SDP: ss.pc.LocalDescription().SDP}})
	return nil
}

// setLocal applies the session's first local description and waits,
// bounded, for the server's candidates to be in it, so that a client that
// does not trickle connects from the description alone.
func (ss *Session) setLocal(d webrtc.SessionDescription) error {
	gathered := webrtc.GatheringCompletePromise(ss.pc)
	if err := ss.pc.SetLocalDescription(d); err != nil {
		return fmt.Errorf("set local description: %w", err)
	}
	t := time.NewTimer(ss.link.gatherWait())
	defer t.Stop()
	select {
	case <-gathered:
	case <-t.C:
	case <-ss.ctx.Done():
	}
	for _, line := range strings.Split(ss.pc.LocalDescription().SDP, "\n") {
		if c, ok := strings.CutPrefix(strings.TrimSpace(line), "a="); ok && strings.HasPrefix(c, "candidate:") {
			ss.inAnswer[c] = true
		}
	}
	ss.answered = true
	return nil
}

// applyOffer gives a client's offer to the connection. An offer with more
// media sections than a session may have tracks is refused before pion
// builds a transceiver for each (docs/configuration.md). The codecs the
// server never negotiates are taken out first: they cannot be in the
// answer, and pion's cost of reading an offer grows with the square of its
// codec lines (see sdptrim).
func (ss *Session) applyOffer(sdp string) error {
	if n := strings.Count(sdp, "\nm="); n > ss.srv.cfg.MaxTracks {
		ss.srv.metrics.limits.WithLabelValues(limitTracks).Inc()
		return rtm.Errorf(rtm.CodeInvalidSDP, "the offer has %d media sections; a session may have at most %d", n, ss.srv.cfg.MaxTracks)
	}
	if err := ss.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdptrim.Offer(sdp, negotiable)}); err != nil {
		return rtm.Errorf(rtm.CodeInvalidSDP, "cannot apply offer: %s", sdpProblem(err))
	}
	return nil
}

// hasRecordableMedia reports whether any m-line was accepted for receiving.
func (ss *Session) hasRecordableMedia() bool {
	for _, tr := range ss.pc.GetTransceivers() {
		if tr.Mid() == "" {
			continue
		}
		if d := tr.Direction(); d == webrtc.RTPTransceiverDirectionRecvonly || d == webrtc.RTPTransceiverDirectionSendrecv {
			if len(tr.Receiver().GetParameters().Codecs) > 0 {
				return true
			}
		}
	}
	return false
}

func (ss *Session) sendCandidate(c *webrtc.ICECandidate) {
	if ss.link.opts.CompleteGathering || !ss.answered && c != nil {
		// It is (or will be) in the description's SDP.
		return
	}
	if c == nil {
		ss.link.sendMessage(rtm.TypeCandidate, ss.clientID, ss.id, rtm.CandidateData{Candidate: &rtm.ICECandidate{Candidate: ""}})
		return
	}
	init := c.ToJSON()
	if ss.inAnswer[init.Candidate] {
		return
	}
	ss.link.sendMessage(rtm.TypeCandidate, ss.clientID, ss.id, rtm.CandidateData{Candidate: &rtm.ICECandidate{
		Candidate: init.Candidate, SDPMid: init.SDPMid, SDPMLineIndex: init.SDPMLineIndex, UsernameFragment: init.UsernameFragment,
	}})
}

func (ss *Session) onRemoteCandidate(c *rtm.ICECandidate) error {
	if c.Candidate == "" {
		return nil // end of candidates: nothing to wait for on our side
	}
	ss.candidates++
	if ss.candidates > ss.srv.cfg.MaxCandidates {
		ss.srv.metrics.limits.WithLabelValues(limitCandidates).Inc()
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
		if err := ss.applyOffer(d.SDP); err != nil {
			return err
		}
		ans, err := ss.pc.CreateAnswer(nil)
		if err != nil {
			return rtm.Errorf(rtm.CodeInvalidSDP, "cannot answer offer: %s", sdpProblem(err))
		}
		if err := ss.pc.SetLocalDescription(ans); err != nil {
			return fmt.Errorf("set local description: %w", err)
		}
		ss.link.sendMessage(rtm.TypeSDPUpdate, ss.clientID, ss.id, rtm.SDPUpdate{SDP: &rtm.SessionDescription{Type: "answer", SDP: ss.pc.LocalDescription().SDP}})
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
	ss.link.sendMessage(rtm.TypeSDPUpdate, ss.clientID, ss.id, rtm.SDPUpdate{SDP: &rtm.SessionDescription{Type: "offer", SDP: ss.pc.LocalDescription().SDP}})
}

func (ss *Session) afterRenegotiation() {
	ss.refreshExtensions()
	if ss.wantOffer && ss.pc.SignalingState() == webrtc.SignalingStateStable {
		ss.offer()
	}
}

// teardown runs when the loop ends (or the set-up failed): the step in
// flight is finished, the recording is finished and handed to its journey,
// the peer connection closed, the readers waited for, and the client's
// requests still queued are answered.
func (ss *Session) teardown() {
	ss.isOver.Store(true)
	ss.cancel()
	// Released before the id is free here: a new session with the same id
	// on this node then claims it after the release, which the directory
	// keeps apart; the other order could release the new session's claim.
	if ss.claimed {
		ss.srv.deps.Directory.Release(ss.principal.Tenant(), ss.id)
	}
	ss.srv.unregister(ss)
	ss.notes.close()
	if ss.busy {
		ss.busy = false
		(<-ss.stepDone)()
	}
	ss.finishRecording()
	ss.endSupervision()

	ss.readersMu.Lock()
	ss.closing = true
	ss.readersMu.Unlock()
	if ss.pc != nil {
		ss.pcClosing.Store(true)
		if err := ss.pc.Close(); err != nil {
			ss.log.Warn("close peer connection", "err", err)
		}
	}
	ss.readers.Wait()
	ss.closeQueues()
	ss.release()
	ss.setSnapshot()
	ss.link.remove(ss)
	close(ss.ended)
	// Requests still queued are dropped: the client heard TERMINATED, or
	// the error that refused the session.
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
		if prev != "" && prev != string(rtm.StateTerminated) {
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

// sdpProblem is pion's reason for refusing a description or a candidate,
// in the client's terms: the parser's Go wording ("failed to unmarshal SDP:
// sdp: syntax error at pos 12") becomes "the SDP cannot be parsed (syntax
// error at byte 12)", Go package prefixes are dropped, and it is cut at
// 200 bytes (a candidate's text is quoted back).
func sdpProblem(err error) string {
	msg := err.Error()
	if rest, ok := strings.CutPrefix(msg, "failed to unmarshal SDP: "); ok {
		if m := sdpSyntaxPos.FindStringSubmatch(rest); m != nil {
			return "the SDP cannot be parsed (syntax error at byte " + m[1] + ")"
		}
		return "the SDP cannot be parsed"
	}
	for {
		pkg, rest, ok := strings.Cut(msg, ": ")
		if !ok || !pionPackages[pkg] {
			break
		}
		msg = rest
	}
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}

var (
	sdpSyntaxPos = regexp.MustCompile(`syntax error at pos (\d+)`)
	// pionPackages are the prefixes pion's errors carry.
	pionPackages = map[string]bool{"sdp": true, "webrtc": true, "ice": true, "dtls": true, "srtp": true, "rtp": true, "rtcp": true, "interceptor": true}
)
