package integration

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
)

// TestQuietLogs: one whole session at INFO (start, a supervisor's visit,
// record, pause, stop) leaves no WARN or ERROR line, and says what an
// operator greps for once each: the session's start and end, the
// recording's start and outcome, with their ids and figures.
func TestQuietLogs(t *testing.T) {
	target := newUploadTarget(t)
	hooks := newHookReceiver(t, "")
	srv := runRTMRec(t, t.TempDir(), "-allow-private-urls", "-log-level", "info")
	c := startCall(t, srv.wsURL(), "quiet-1", hooks.url(), nil, testclient.Tone, testclient.Camera)
	started := c.record(target.url("/rec/quiet.webm"), "")

	boss, w := supervise(t, srv.wsURL(), nil, "quiet-sup", c.id)
	time.Sleep(time.Second)
	_ = boss.Send(rtm.TypeSessionStop, "boss", "quiet-sup", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := boss.Wait(ctx, testclient.IsState("quiet-sup", rtm.StateTerminated)); err != nil {
		t.Fatal(err)
	}
	c.send(rtm.TypeRecordingPause, nil)
	c.wait(testclient.IsRecording(c.id, rtm.RecordingPaused))
	c.send(rtm.TypeRecordingResume, nil)
	c.wait(testclient.IsRecording(c.id, rtm.RecordingResumed))
	time.Sleep(time.Second)
	c.send(rtm.TypeRecordingStop, nil)
	c.wait(testclient.IsRecording(c.id, rtm.RecordingStopped))
	c.send(rtm.TypeSessionStop, nil)
	c.wait(testclient.IsState(c.id, rtm.StateTerminated))
	// The peers go away as a browser's would, after the server ended the session.
	time.Sleep(500 * time.Millisecond)
	c.c.Close()
	c.p.Close()
	w.Close()
	boss.Close()
	if code := srv.terminate(20 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(srv.log()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line is not JSON: %s", l)
		}
		lines = append(lines, rec)
		if lvl := rec["level"]; lvl != "INFO" {
			t.Errorf("%s line after a clean session: %s", lvl, l)
		}
	}
	want := []struct {
		msg    string
		fields map[string]any
	}{
		{"session started", map[string]any{"session_id": "quiet-1", "client_id": "agent-7", "supervisor": false}},
		{"session started", map[string]any{"session_id": "quiet-sup", "client_id": "boss", "supervisor": true, "monitored_session_id": "quiet-1"}},
		{"session ended", map[string]any{"session_id": "quiet-sup", "client_id": "boss", "cause": "TERM_BY_CLIENT"}},
		{"recording started", map[string]any{"session_id": "quiet-1", "recording_id": started.RecordingID, "format": "webm"}},
		{"recording delivered", map[string]any{"session_id": "quiet-1", "recording_id": started.RecordingID, "attempts": 1.0}},
		{"session ended", map[string]any{"session_id": "quiet-1", "client_id": "agent-7", "cause": "TERM_BY_CLIENT"}},
	}
	for _, w := range want {
		n := 0
	lines:
		for _, rec := range lines {
			if rec["msg"] != w.msg {
				continue
			}
			for k, v := range w.fields {
				if rec[k] != v {
					continue lines
				}
			}
			n++
			if w.msg == "recording delivered" && (rec["duration_ms"].(float64) < 1500 || rec["size_bytes"].(float64) <= 0) {
				t.Errorf("recording delivered without its figures: %v", rec)
			}
			if w.msg == "session ended" && rec["duration"] == nil {
				t.Errorf("session ended without its duration: %v", rec)
			}
		}
		if n != 1 {
			t.Errorf("%d %q lines with %v, want 1", n, w.msg, w.fields)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", srv.log())
	}
}
