package main

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/session"
	"github.com/rtmrec/rtmrec/upload"
	"github.com/rtmrec/rtmrec/webhook"
)

// delivery connects finished recordings to the upload queue, and upload
// results back to the session server's events.
type delivery struct {
	log     *slog.Logger
	dir     string
	uploads *upload.Queue
	srv     *session.Server
}

// jobMeta is what an upload job carries so that its result can be reported
// even by a later process.
type jobMeta struct {
	Route      session.Route `json:"route"`
	Format     string        `json:"format"`
	DurationMS int64         `json:"duration_ms"`
	SizeBytes  int64         `json:"size_bytes"`
}

// Deliver queues a finished recording's upload (durably, before returning).
func (d *delivery) Deliver(m *recorder.Manifest, r session.Route) error {
	meta, err := json.Marshal(jobMeta{Route: r, Format: string(m.Format), DurationMS: m.DurationMS, SizeBytes: m.SizeBytes})
	if err != nil {
		return fmt.Errorf("deliver %s: %w", m.RecordingID, err)
	}
	if err := d.uploads.Enqueue(upload.Job{
		ID: m.RecordingID, File: m.Path, ContentType: m.ContentType, URL: r.UploadURL, Meta: meta,
	}); err != nil {
		return fmt.Errorf("deliver %s: %w", m.RecordingID, err)
	}
	return nil
}

// onResult turns an upload's final outcome into recording_state.
func (d *delivery) onResult(res upload.Result) {
	var meta jobMeta
	if err := json.Unmarshal(res.Job.Meta, &meta); err != nil {
		d.log.Error("upload result without route", "recording_id", res.Job.ID, "err", err)
		return
	}
	st := rtm.RecordingStateData{RecordingID: res.Job.ID, State: rtm.RecordingStopped, Format: meta.Format}
	dur, size := meta.DurationMS, meta.SizeBytes
	st.DurationMS, st.SizeBytes = &dur, &size
	if !res.OK {
		st.State = rtm.RecordingFailed
		st.Reason = res.Reason
	}
	d.srv.RecordingDelivered(meta.Route, st)
}

// recover repairs the recordings an earlier process left unfinished and
// queues every finished recording whose upload may not have been queued.
// Queueing is idempotent, so a recording already uploaded is not sent again.
func (d *delivery) recover() error {
	repaired, err := recorder.Repair(d.dir, d.log)
	if err != nil {
		return fmt.Errorf("repair recordings: %w", err)
	}
	for _, m := range repaired {
		var r session.Route
		if err := json.Unmarshal(m.Delivery, &r); err != nil {
			d.log.Error("repaired recording has no route; kept on disk", "recording_id", m.RecordingID, "err", err)
			continue
		}
		d.log.Info("repaired recording of an earlier run", "recording_id", m.RecordingID, "session_id", r.SessionID)
		d.srv.SessionLost(r)
		if err := d.Deliver(m, r); err != nil {
			d.log.Error("queue repaired recording", "recording_id", m.RecordingID, "err", err)
		}
	}
	return nil
}

// webhookNotifier puts session events into the durable outbox.
type webhookNotifier struct {
	outbox *webhook.Outbox
	log    *slog.Logger
}

// webhookBody is the webhook payload: the WebSocket envelope plus the
// authenticated identity (the outbox adds id and timestamp).
type webhookBody struct {
	Type      rtm.Type        `json:"type"`
	ClientID  string          `json:"client_id"`
	SessionID string          `json:"session_id"`
	Data      json.RawMessage `json:"data"`
	Identity  string          `json:"identity,omitempty"`
}

func (n webhookNotifier) Notify(ev session.Event) {
	if ev.WebhookURL == "" {
		return
	}
	body, err := json.Marshal(webhookBody{Type: ev.Message.Type, ClientID: ev.Message.ClientID, SessionID: ev.Message.SessionID, Data: ev.Message.Data, Identity: ev.Identity})
	if err != nil {
		n.log.Error("encode webhook", "session_id", ev.Message.SessionID, "err", err)
		return
	}
	if _, err := n.outbox.Enqueue(ev.WebhookURL, ev.OrderKey, body); err != nil {
		n.log.Error("queue webhook", "session_id", ev.Message.SessionID, "type", ev.Message.Type, "err", err)
	}
}
