package integration

// Copied into a worktree of rtmrec's first release (commit ac102c5) by
// make.sh: it makes, with that release's own binary, the data directory
// internal/upgrade/testdata/firstrelease (see ../README.md).

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
)

func TestMakeFirstReleaseDataDir(t *testing.T) {
	out := os.Getenv("FIRST_RELEASE_OUT")
	if out == "" {
		t.Skip("FIRST_RELEASE_OUT names the directory to make")
	}
	// The upload target refuses /denied/ for good (403) and is unavailable
	// (503, retried) for everything else; the webhook receiver is down.
	uploads := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if strings.HasPrefix(r.URL.Path, "/denied/") {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer uploads.Close()
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer hooks.Close()
	hookURL := hooks.URL + "/hooks?token=hook-secret-token"
	uploadURL := func(path string) string { return uploads.URL + path + "?X-Amz-Signature=topsecret-signature" }

	dir := filepath.Join(out, "data")
	srv := runRTMRec(t, dir, "-allow-private-urls")
	jobs := func() int {
		names, _ := filepath.Glob(filepath.Join(dir, "uploads", "*.job"))
		return len(names)
	}

	// A finished recording whose upload is queued (503, retried).
	queued := startCall(t, srv.wsURL(), "call-queued", hookURL, nil, testclient.Tone)
	queued.record(uploadURL("/rec/queued.ogg"), "ogg")
	time.Sleep(2 * time.Second)
	queued.send(rtm.TypeRecordingStop, nil)
	waitFor(t, func() bool { return jobs() == 1 })
	queued.send(rtm.TypeSessionStop, nil)
	queued.wait(testclient.IsState("call-queued", rtm.StateTerminated))

	// A recording whose upload was refused: FAILED, reported (acked), file
	// kept; its FAILED waits in the outbox like every event.
	denied := startCall(t, srv.wsURL(), "call-denied", hookURL, nil, testclient.Tone)
	denied.record(uploadURL("/denied/denied.ogg"), "ogg")
	time.Sleep(2 * time.Second)
	denied.send(rtm.TypeRecordingStop, nil)
	denied.wait(testclient.IsRecording("call-denied", rtm.RecordingFailed))
	denied.send(rtm.TypeSessionStop, nil)
	denied.wait(testclient.IsState("call-denied", rtm.StateTerminated))

	// A recording the kill cuts off (manifest in state "recording").
	cut := startCall(t, srv.wsURL(), "call-cut", hookURL, nil, testclient.Tone, testclient.Camera)
	cut.record(uploadURL("/rec/cut.webm"), "webm")
	time.Sleep(3 * time.Second)
	srv.kill() // kill -9: every upload and event is still queued

	origins, _ := json.MarshalIndent(map[string]string{"upload": uploads.URL, "webhook": hooks.URL}, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "origins.json"), append(origins, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met in time")
}
