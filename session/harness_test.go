package session_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/rtmrec/rtmrec/delivery"
	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/session"
	"github.com/rtmrec/rtmrec/webhook"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// harness is a real session server on 127.0.0.1 with recording events and
// finished recordings captured.
type harness struct {
	t      *testing.T
	srv    *session.Server
	url    string
	dir    string
	events *eventLog
	done   *journeys
}

// eventLog is what the webhook would receive, in order: session states
// from the session server's Events, recording states from its Journeys.
type eventLog struct {
	mu     sync.Mutex
	events []rtm.Message
}

func (l *eventLog) add(m rtm.Message) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, m)
}

// Publish takes a session event (session.Events).
func (l *eventLog) Publish(ev webhook.Event, delivered func()) {
	var m rtm.Message
	if err := json.Unmarshal(ev.Payload, &m); err == nil {
		l.add(m)
	}
	if delivered != nil {
		delivered()
	}
}

func (l *eventLog) list() []rtm.Message {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]rtm.Message(nil), l.events...)
}

// journeys keeps finished recordings in the data directory and reports
// them STOPPED, as a journey with a local uploader would.
type journeys struct {
	srv    func() *session.Server
	events *eventLog
	mu     sync.Mutex
	routes map[string]delivery.Route
	audit  map[string][]recorder.AuditEvent
	files  []*recorder.Manifest
}

func (d *journeys) state(r delivery.Route, id string, st rtm.RecordingState, m *recorder.Manifest) rtm.Message {
	data := rtm.RecordingStateData{RecordingID: id, State: st}
	if m != nil {
		data.Format = string(m.Format)
		if st == rtm.RecordingStopped {
			dur, size := m.DurationMS, m.SizeBytes
			data.DurationMS, data.SizeBytes = &dur, &size
		}
	}
	msg, _ := rtm.NewMessage(rtm.TypeRecordingState, r.ClientID, r.SessionID, data)
	d.events.add(msg)
	return msg
}

func (d *journeys) Begin(r delivery.Route, m *recorder.Manifest, announce func(rtm.Message)) error {
	d.mu.Lock()
	d.routes[m.RecordingID] = r
	d.mu.Unlock()
	announce(d.state(r, m.RecordingID, rtm.RecordingStarted, m))
	return nil
}

func (d *journeys) Paused(id string, paused bool, _ []recorder.PauseSpan, announce func(rtm.Message)) {
	d.mu.Lock()
	r := d.routes[id]
	d.mu.Unlock()
	st := rtm.RecordingResumed
	if paused {
		st = rtm.RecordingPaused
	}
	announce(d.state(r, id, st, nil))
}

func (d *journeys) Audit(id string, e recorder.AuditEvent) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.audit[id] = append(d.audit[id], e)
}

func (d *journeys) Finish(id string, m *recorder.Manifest, err error) error {
	d.mu.Lock()
	r := d.routes[id]
	d.files = append(d.files, m)
	d.mu.Unlock()
	st := rtm.RecordingStopped
	if err != nil {
		st = rtm.RecordingFailed
	}
	d.srv().Announce(id, d.state(r, id, st, m))
	return nil
}

func (d *journeys) route(id string) delivery.Route {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.routes[id]
}

func (d *journeys) list() []*recorder.Manifest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*recorder.Manifest(nil), d.files...)
}

func (d *journeys) visits(id string) []recorder.AuditEvent {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]recorder.AuditEvent(nil), d.audit[id]...)
}

func newHarness(t *testing.T, mutate func(*session.Config, *session.Deps)) *harness {
	t.Helper()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	wrtc, err := session.NewWebRTC(session.ICEConfig{DisconnectedTimeout: time.Second, FailedTimeout: 10 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, dir: t.TempDir(), events: &eventLog{}}
	h.done = &journeys{srv: func() *session.Server { return h.srv }, events: h.events, routes: map[string]delivery.Route{}, audit: map[string][]recorder.AuditEvent{}}
	cfg := session.Config{DataDir: h.dir, ConnectTimeout: 5 * time.Second, DisconnectTimeout: time.Second}
	deps := session.Deps{WebRTC: wrtc, Logger: log, Events: h.events, Journeys: h.done}
	if mutate != nil {
		mutate(&cfg, &deps)
	}
	h.srv, err = session.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/rtm", h.srv)
	hs := httptest.NewServer(mux)
	h.url = "ws" + strings.TrimPrefix(hs.URL, "http") + "/rtm"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := errors.Join(h.srv.Shutdown(ctx), h.srv.CloseConnections(ctx)); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
		_ = wrtc.Close()
	})
	return h
}

func (h *harness) dial() *testclient.Client {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := testclient.Dial(ctx, h.url, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(c.Close)
	return c
}

// start opens a session streaming the given sources and waits for CONNECTED.
func (h *harness) start(c *testclient.Client, id string, sources ...testclient.Source) *testclient.Peer {
	h.t.Helper()
	api, err := testclient.NewAPI()
	if err != nil {
		h.t.Fatal(err)
	}
	return h.startWith(c, api, id, sources...)
}

// startWith is start with the client's pion API.
func (h *harness) startWith(c *testclient.Client, api *webrtc.API, id string, sources ...testclient.Source) *testclient.Peer {
	h.t.Helper()
	p, err := testclient.NewPeer(api, sources...)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(p.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Start(ctx, p, "c-"+id, id, "https://hooks.example.com/rtm?sig=secret"); err != nil {
		h.t.Fatal(err)
	}
	h.wait(c, testclient.IsState(id, rtm.StateConnecting))
	h.wait(c, testclient.IsState(id, rtm.StateConnected))
	p.Stream(context.Background())
	return p
}

func (h *harness) wait(c *testclient.Client, match func(rtm.Message) bool) rtm.Message {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	m, err := c.Wait(ctx, match)
	if err != nil {
		h.t.Fatal(err)
	}
	return m
}

// waitPackets waits until every track of the session has received RTP.
func (h *harness) waitPackets(id string, tracks int, min uint64) []session.TrackStats {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, s := range h.srv.Sessions() {
			if s.SessionID != id || len(s.Tracks) < tracks {
				continue
			}
			ok := true
			for _, tr := range s.Tracks {
				ok = ok && tr.Packets >= min
			}
			if ok {
				return s.Tracks
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("session %s: fewer than %d tracks with %d packets each: %+v", id, tracks, min, h.srv.Sessions())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// terminated waits for the session's TERMINATED and returns its cause.
func (h *harness) terminated(c *testclient.Client, id string) rtm.Cause {
	h.t.Helper()
	m := h.wait(c, testclient.IsState(id, rtm.StateTerminated))
	return testclient.Data[rtm.SessionState](m).TerminationCause
}

func (h *harness) gone(id string) {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		found := false
		for _, s := range h.srv.Sessions() {
			found = found || s.SessionID == id
		}
		if !found {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("session %s still registered", id)
}

// webhookStates lists the session_state states sent to the webhook.
func (h *harness) webhookStates(id string) []string {
	var out []string
	for _, m := range h.events.list() {
		if m.SessionID == id && m.Type == rtm.TypeSessionState {
			d := testclient.Data[rtm.SessionState](m)
			s := string(d.State)
			if d.TerminationCause != "" {
				s += "/" + string(d.TerminationCause)
			}
			out = append(out, s)
		}
	}
	return out
}
