package session

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
)

// activeRecording is the session's running recording.
type activeRecording struct {
	id      string
	rec     *recorder.Recording
	route   Route
	release func()
	// state is the last announced state: STARTED, PAUSED or RESUMED.
	state rtm.RecordingState
}

// startRecording handles recording_start on the session loop.
func (ss *Session) startRecording(d rtm.RecordingStart) error {
	if ss.rec != nil {
		return rtm.Errorf(rtm.CodeRecordingActive, "recording %s is running; stop it first", ss.rec.id)
	}
	if ss.srv.deps.Delivery == nil {
		return rtm.Errorf(rtm.CodeNotSupported, "recording is not configured on this server")
	}
	format, err := recorder.ParseFormat(d.Format)
	if err != nil {
		return rtm.Errorf(rtm.CodeInvalidMessage, "%v", err)
	}
	hints := ss.trackHints()
	if _, err := recorder.ResolveFormat(format, hints); err != nil {
		return rtm.Errorf(rtm.CodeNotSupported, "%v", err)
	}
	release, err := ss.srv.deps.Admission.AcquireRecording(ss.principal.Tenant())
	if err != nil {
		return rtm.Errorf(rtm.CodeServerBusy, "%v", err)
	}
	webhook := d.WebhookURL
	if webhook == "" {
		webhook = ss.webhook
	}
	route := Route{
		Tenant: ss.principal.Tenant(), SessionID: ss.id, ClientID: ss.clientID,
		Identity: ss.principal.Identity(), UploadURL: d.UploadURL, WebhookURL: webhook,
	}
	delivery, err := json.Marshal(route)
	if err != nil {
		release()
		return fmt.Errorf("encode route: %w", err)
	}
	id := newID()
	rec, err := recorder.Start(recorder.Config{
		Dir:         ss.srv.cfg.DataDir,
		RecordingID: id, SessionID: ss.id, ClientID: ss.clientID, Identity: ss.principal.Identity(),
		Format:    format,
		PauseMode: recorder.PauseMode(d.PauseMode),
		Tracks:    hints,
		Delivery:  delivery,
		RequestKeyframe: func(trackID string) {
			for _, t := range ss.tracksSnapshot() {
				if t.info.ID == trackID {
					ss.requestKeyframe(t)
				}
			}
		},
		Logger:  ss.log,
		Metrics: ss.srv.deps.RecorderMetrics,
	})
	if err != nil {
		release()
		return fmt.Errorf("start recording: %w", err)
	}
	ss.rec = &activeRecording{id: id, rec: rec, route: route, release: release, state: rtm.RecordingStarted}
	ss.srv.mu.Lock()
	ss.srv.waiting[id] = ss.conn
	ss.srv.mu.Unlock()
	ss.srv.metrics.recordings.Inc()
	// The file lists the tracks already received in the offer's m-line
	// order, whatever order their first packets came in; tracks whose first
	// packet comes later are appended as they arrive.
	slices.SortFunc(ss.tracks, func(a, b *trackSink) int { return cmp.Compare(a.mline, b.mline) })
	for _, t := range ss.tracks {
		ss.attachRecording(t)
	}
	ss.auditPresent()
	ss.setSnapshot()
	ss.emit(rtm.TypeRecordingState, rtm.RecordingStateData{RecordingID: id, State: rtm.RecordingStarted, Format: string(rec.Format())}, webhook)
	return nil
}

// trackHints describes the media the session receives or has negotiated,
// before every track has sent its first packet, so that the container can
// be chosen at recording_start.
func (ss *Session) trackHints() []recorder.TrackInfo {
	var hints []recorder.TrackInfo
	seen := map[string]bool{}
	for _, t := range ss.tracks {
		hints = append(hints, t.info)
		seen[t.info.ID] = true
	}
	for _, tr := range ss.pc.GetTransceivers() {
		if tr.Mid() == "" || seen["mid"+tr.Mid()] || tr.Receiver() == nil {
			continue
		}
		codecs := tr.Receiver().GetParameters().Codecs
		for _, c := range codecs {
			codec, ok := recorder.CodecFromMime(c.MimeType)
			if !ok {
				continue
			}
			kind := recorder.KindAudio
			if codec != recorder.CodecOpus {
				kind = recorder.KindVideo
			}
			hints = append(hints, recorder.TrackInfo{ID: "mid" + tr.Mid(), Kind: kind, Codec: codec, ClockRate: c.ClockRate, Channels: c.Channels})
			break
		}
	}
	return hints
}

func (ss *Session) attachRecording(t *trackSink) {
	rt, err := ss.rec.rec.AddTrack(t.info)
	if err != nil {
		ss.log.Error("record track", "recording_id", ss.rec.id, "track", t.info.ID, "err", err)
		return
	}
	t.rec.Store(rt)
	// Start video on a fresh keyframe rather than wait up to a GOP.
	ss.requestKeyframe(t)
}

func (ss *Session) stopRecording() error {
	if ss.rec == nil {
		return rtm.Errorf(rtm.CodeNoActiveRecording, "no recording is running")
	}
	ss.finishRecording()
	return nil
}

// finishRecording detaches the recording from the tracks, then finalises
// the file and hands it to delivery in the background: the session may end
// at once, the recording's STOPPED/FAILED follows when the upload is decided.
func (ss *Session) finishRecording() {
	a := ss.rec
	if a == nil {
		return
	}
	ss.rec = nil
	for _, t := range ss.tracks {
		t.rec.Store(nil)
	}
	ss.setSnapshot()
	ss.srv.metrics.recordings.Dec()
	srv := ss.srv
	log := ss.log.With("recording_id", a.id)
	srv.work.Add(1)
	go func() {
		defer srv.work.Done()
		m, err := a.rec.Stop()
		a.release()
		if err == nil {
			err = srv.deps.Delivery.Deliver(m, a.route)
		}
		if err != nil {
			log.Error("recording failed", "err", err)
			srv.RecordingDelivered(a.route, rtm.RecordingStateData{RecordingID: a.id, State: rtm.RecordingFailed, Format: string(a.rec.Format()), Reason: failureReason(err)})
		}
	}()
}

// failureReason is the client-facing reason of a failed recording: it must
// not leak paths or URLs.
func failureReason(err error) string {
	var re *rtm.Error
	if errors.As(err, &re) {
		return re.Message
	}
	return "the recording could not be finished; it is kept on the server"
}

func (ss *Session) pauseRecording(pause bool) error {
	a := ss.rec
	if a == nil {
		return rtm.Errorf(rtm.CodeNoActiveRecording, "no recording is running")
	}
	changed := false
	next := rtm.RecordingResumed
	if pause {
		changed = a.rec.Pause()
		next = rtm.RecordingPaused
	} else {
		changed = a.rec.Resume()
	}
	data := rtm.RecordingStateData{RecordingID: a.id, Format: string(a.rec.Format())}
	if !changed {
		// Nothing changes; answer the current state to this client only.
		data.State = a.state
		ss.conn.sendMessage(rtm.TypeRecordingState, ss.clientID, ss.id, data)
		return nil
	}
	a.state = next
	data.State = next
	if !pause {
		for _, t := range ss.tracks {
			ss.requestKeyframe(t)
		}
	}
	ss.emit(rtm.TypeRecordingState, data, a.route.WebhookURL)
	return nil
}
