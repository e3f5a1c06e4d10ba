package session

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/rtmrec/rtmrec/delivery"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
)

// activeRecording is the session's running recording.
type activeRecording struct {
	id       string
	rec      *recorder.Recording
	journeys Journeys
	release  func()
	// state is the last announced state: STARTED, PAUSED or RESUMED.
	state rtm.RecordingState
}

// audit keeps a supervisor's visit in the file's manifest and the journey.
func (a *activeRecording) audit(e recorder.AuditEvent) {
	a.rec.AddAuditEvent(e)
	a.journeys.Audit(a.id, e)
}

// startRecording handles recording_start on the session loop. What needs
// DNS (the URL checks) or the disk (the file, the journey) happens beside
// the loop; the client hears STARTED once the journey is durable.
func (ss *Session) startRecording(m rtm.Message, d rtm.RecordingStart) error {
	// The link's current principal: a refreshed token's URL prefixes apply
	// to the recordings started after it.
	p := ss.link.principal()
	switch {
	case ss.rec != nil || ss.recStarting:
		return rtm.Errorf(rtm.CodeRecordingActive, "a recording is running; stop it first")
	case ss.monitored != nil:
		return rtm.Errorf(rtm.CodeNotSupported, "a supervisor session cannot record")
	case !p.MayRecord():
		return rtm.Errorf(rtm.CodeUnauthorized, "this token may not record")
	case ss.srv.deps.Journeys == nil:
		return rtm.Errorf(rtm.CodeNotSupported, "recording is not configured on this server")
	case d.ManifestURL != "" && !ss.srv.cfg.SignsManifests:
		return rtm.Errorf(rtm.CodeNotSupported, "this server does not sign recording manifests, so it has none to send to manifest_url")
	}
	format, err := recorder.ParseFormat(d.Format)
	if err != nil {
		return rtm.Errorf(rtm.CodeInvalidMessage, "format must be auto, ogg, webm or mkv")
	}
	hints := ss.trackHints()
	resolved, err := recorder.ResolveFormat(format, hints)
	if err != nil {
		if format == recorder.FormatOgg {
			return rtm.Errorf(rtm.CodeNotSupported, "format ogg cannot hold video; use webm, mkv or auto")
		}
		return rtm.Errorf(rtm.CodeNotSupported, "format %s cannot hold H.264 video; use mkv or auto", format)
	}
	recordingID := newID()
	if ss.link.opts.UploadURLTemplate {
		d.UploadURL = ExpandUploadURL(d.UploadURL, ss.principal.Tenant(), ss.id, recordingID, resolved.Ext())
	}
	release, err := ss.srv.deps.Admission.AcquireRecording(ss.principal.Tenant())
	if err != nil {
		return refusal(err)
	}
	webhookURL := d.WebhookURL
	if webhookURL == "" {
		webhookURL = ss.webhook
	}
	route := delivery.Route{
		Tenant: ss.principal.Tenant(), SessionID: ss.id, ClientID: ss.clientID,
		Identity: ss.principal.Identity(), UploadURL: d.UploadURL, ManifestURL: d.ManifestURL, WebhookURL: webhookURL, OrderKey: ss.key,
	}
	cfg := recorder.Config{
		Dir:         ss.srv.cfg.DataDir,
		RecordingID: recordingID, SessionID: ss.id, ClientID: ss.clientID, Identity: ss.principal.Identity(),
		Format:    format,
		PauseMode: recorder.PauseMode(d.PauseMode),
		MaxPauses: ss.srv.cfg.MaxPauses,
		Tracks:    hints,
		RequestKeyframe: func(trackID string) {
			for _, t := range ss.tracksSnapshot() {
				if t.info.ID == trackID {
					ss.requestKeyframe(t)
				}
			}
		},
		Logger:  ss.log,
		Metrics: ss.srv.deps.RecorderMetrics,
		Writers: ss.srv.deps.RecorderWriters,
	}
	ss.recStarting = true
	link, journeys := ss.link, ss.srv.deps.Journeys
	ss.async(func() func() {
		rec, err := ss.openRecording(p, cfg, route, d)
		return func() {
			ss.recStarting = false
			if err != nil {
				release()
				link.SendError(m, err)
				return
			}
			ss.rec = &activeRecording{id: cfg.RecordingID, rec: rec, journeys: journeys, release: release, state: rtm.RecordingStarted}
			ss.srv.mu.Lock()
			ss.srv.waiting[cfg.RecordingID] = link
			ss.srv.mu.Unlock()
			ss.srv.metrics.recordings.Inc()
			// The file lists the tracks already received in the offer's
			// m-line order, whatever order their first packets came in;
			// tracks whose first packet comes later are appended as they
			// arrive.
			slices.SortFunc(ss.tracks, func(a, b *trackSink) int { return cmp.Compare(a.mline, b.mline) })
			for _, t := range ss.tracks {
				ss.attachRecording(t)
			}
			ss.auditPresent()
			ss.setSnapshot()
		}
	})
	return nil
}

// openRecording checks the URLs, creates the file and begins the
// recording's journey, which queues STARTED. It runs beside the loop.
func (ss *Session) openRecording(p Principal, cfg recorder.Config, route delivery.Route, d rtm.RecordingStart) (*recorder.Recording, error) {
	if err := ss.srv.checkURL(ss.ctx, p, d.UploadURL, true); err != nil {
		return nil, err
	}
	if d.WebhookURL != "" {
		if err := ss.srv.checkURL(ss.ctx, p, d.WebhookURL, false); err != nil {
			return nil, err
		}
	}
	if d.ManifestURL != "" {
		if err := ss.srv.checkURL(ss.ctx, ss.principal, d.ManifestURL, true); err != nil {
			return nil, err
		}
	}
	rec, err := recorder.Start(cfg)
	if err != nil {
		return nil, fmt.Errorf("start recording: %w", err)
	}
	link := ss.link
	if err := ss.srv.deps.Journeys.Begin(route, rec.Manifest(), link.send); err != nil {
		// Nobody heard of it: the file goes with it.
		_, _ = rec.Stop()
		return nil, errors.Join(err, os.Remove(rec.Path()))
	}
	return rec, nil
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
// the file and hands it to its journey in the background: the session may
// end at once; the recording's STOPPED or FAILED follows when the upload is
// decided.
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
	srv.finishing.Go(func() {
		m, err := a.rec.Stop()
		a.release()
		if err := a.journeys.Finish(a.id, m, err); err != nil {
			// The journey stays in state recording: the next start repairs
			// the file and delivers it.
			log.Error("recording not handed over; it is finished at the next start", "err", err)
		}
	})
}

func (ss *Session) pauseRecording(pause bool) error {
	a := ss.rec
	if a == nil {
		return rtm.Errorf(rtm.CodeNoActiveRecording, "no recording is running")
	}
	changed := false
	next := rtm.RecordingResumed
	if pause {
		var err error
		if changed, err = a.rec.Pause(); errors.Is(err, recorder.ErrTooManyPauses) {
			ss.srv.metrics.limits.WithLabelValues(limitPauses).Inc()
			return rtm.Errorf(rtm.CodeServerBusy, "the recording goes on unpaused: it has had the %d pauses a recording may have", ss.srv.cfg.MaxPauses)
		}
		next = rtm.RecordingPaused
	} else {
		changed = a.rec.Resume()
	}
	if !changed {
		// Nothing changes; answer the current state to this client only.
		ss.link.sendMessage(rtm.TypeRecordingState, ss.clientID, ss.id, rtm.RecordingStateData{RecordingID: a.id, Format: string(a.rec.Format()), State: a.state})
		return nil
	}
	a.state = next
	if !pause {
		for _, t := range ss.tracks {
			ss.requestKeyframe(t)
		}
	}
	a.journeys.Paused(a.id, pause, a.rec.Pauses(), ss.link.send)
	return nil
}
