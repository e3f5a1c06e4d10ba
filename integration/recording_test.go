package integration

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
)

// call is one pion client session against a running rtmrec.
type call struct {
	t  *testing.T
	c  *testclient.Client
	p  *testclient.Peer
	id string
}

func startCall(t *testing.T, wsURL, id, webhookURL string, header http.Header, sources ...testclient.Source) *call {
	t.Helper()
	return startCallWith(t, nil, wsURL, id, webhookURL, header, sources...)
}

// startCallWith is startCall with a client offering what api registers
// (nil: the default codecs).
func startCallWith(t *testing.T, api *webrtc.API, wsURL, id, webhookURL string, header http.Header, sources ...testclient.Source) *call {
	t.Helper()
	c, p, err := start(t, api, wsURL, id, webhookURL, header, sources...)
	if err != nil {
		t.Fatal(err)
	}
	cl := &call{t: t, c: c, p: p, id: id}
	cl.wait(testclient.IsState(id, rtm.StateConnected))
	p.Stream(context.Background())
	return cl
}

// tryStartCall starts a session on a new connection and returns why it
// was refused, for admissions expected to fail.
func tryStartCall(t *testing.T, wsURL, id string, header http.Header) error {
	t.Helper()
	_, _, err := start(t, nil, wsURL, id, "", header, testclient.Tone)
	return err
}

// start connects, offers the sources and returns session_start's outcome
// (or why it could not be sent); the connection and peer close when the
// test ends. Given an api, it may run on a goroutine of its own.
func start(t *testing.T, api *webrtc.API, wsURL, id, webhookURL string, header http.Header, sources ...testclient.Source) (*testclient.Client, *testclient.Peer, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, _, err := testclient.Dial(ctx, wsURL, header)
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(c.Close)
	p, err := startOn(t, c, api, id, webhookURL, sources...)
	return c, p, err
}

// startOn offers the sources for a new session on an open connection, from
// a client with what api registers (nil: the default codecs), and returns
// session_start's outcome; the peer closes when the test ends.
func startOn(t *testing.T, c *testclient.Client, api *webrtc.API, id, webhookURL string, sources ...testclient.Source) (*testclient.Peer, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if api == nil {
		var err error
		if api, err = testclient.NewAPI(); err != nil {
			t.Fatal(err)
		}
	}
	p, err := testclient.NewPeer(api, sources...)
	if err != nil {
		return nil, err
	}
	t.Cleanup(p.Close)
	return p, c.Start(ctx, p, "agent-7", id, webhookURL)
}

// supervise joins session monitored as supervisor session supID ("boss",
// one audio and one video receiver) on a new connection, and waits until it
// is CONNECTED; the connection and peer close when the test ends.
func supervise(t *testing.T, wsURL string, header http.Header, supID, monitored string) (*testclient.Client, *testclient.Watcher) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	boss, _, err := testclient.Dial(ctx, wsURL, header)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(boss.Close)
	api, _ := testclient.NewAPI()
	w, err := testclient.NewWatcher(api, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	if err := boss.Join(ctx, w, "boss", supID, monitored); err != nil {
		t.Fatal(err)
	}
	if _, err := boss.Wait(ctx, testclient.IsState(supID, rtm.StateConnected)); err != nil {
		t.Fatal(err)
	}
	return boss, w
}

func (c *call) wait(match func(rtm.Message) bool) rtm.Message {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	m, err := c.c.Wait(ctx, match)
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

func (c *call) send(t rtm.Type, data any) {
	c.t.Helper()
	if err := c.c.Send(t, "agent-7", c.id, data); err != nil {
		c.t.Fatal(err)
	}
}

func (c *call) record(uploadURL, format string) rtm.RecordingStateData {
	c.t.Helper()
	c.send(rtm.TypeRecordingStart, rtm.RecordingStart{UploadURL: uploadURL, Format: format})
	return testclient.Data[rtm.RecordingStateData](c.wait(testclient.IsRecording(c.id, rtm.RecordingStarted)))
}

func TestRecordingIsUploadedAndPlays(t *testing.T) {
	tests := []struct {
		name        string
		sources     []testclient.Source
		format      string
		contentType string
		codecs      string
	}{
		{"audio and video", []testclient.Source{testclient.Tone, testclient.Camera}, "webm", "video/webm", "audio/opus,video/vp8"},
		{"audio only", []testclient.Source{testclient.Tone}, "ogg", "audio/ogg", "audio/opus"},
		{"camera and screen", []testclient.Source{testclient.Tone, testclient.Camera, testclient.Screen}, "webm", "video/webm", "audio/opus,video/vp8,video/vp8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := newUploadTarget(t)
			hooks := newHookReceiver(t, "whsec-integration-test-secret")
			srv := runRTMRec(t, t.TempDir(), "-allow-private-urls", "-webhook-secret", "whsec-integration-test-secret")
			c := startCall(t, srv.wsURL(), "call-1", hooks.url(), nil, tt.sources...)
			time.Sleep(500 * time.Millisecond)

			started := c.record(target.url("/rec/call-1."+tt.format), "")
			if started.Format != tt.format {
				t.Fatalf("format = %s, want %s", started.Format, tt.format)
			}
			begin := time.Now()
			time.Sleep(4 * time.Second)
			c.send(rtm.TypeRecordingStop, nil)
			stopSent := time.Now()
			stopped := testclient.Data[rtm.RecordingStateData](c.wait(testclient.IsRecording(c.id, rtm.RecordingStopped)))
			wall := stopSent.Sub(begin).Seconds()
			t.Logf("recording_stop → STOPPED: %v", time.Since(stopSent))

			up := target.wait("/rec/call-1." + tt.format)
			if up.ContentType != tt.contentType || up.ContentLength != *stopped.SizeBytes {
				t.Fatalf("upload = %+v, want %s of %d bytes", up, tt.contentType, *stopped.SizeBytes)
			}
			p := ffprobe(t, up.File)
			if got := p.codecs(); got != tt.codecs {
				t.Fatalf("codecs = %s, want %s", got, tt.codecs)
			}
			if d := p.duration(); math.Abs(d-wall) > 0.3 {
				t.Fatalf("duration %.3f s, recorded for %.3f s", d, wall)
			}
			// The pion clients ignore keyframe requests (they replay a
			// clip with a keyframe a second), so video may start up to a
			// second after audio here; the browser test measures the offset.
			first, key, monotonic := firstPackets(t, up.File)
			if !monotonic {
				t.Fatal("timestamps go backwards")
			}
			for i, s := range p.Streams {
				if s.CodecType == "video" && !key[strconv.Itoa(i)] {
					t.Errorf("video stream %d does not start on a keyframe", i)
				}
			}
			t.Logf("stream start times: %v", first)

			// Nothing of a delivered recording stays behind (no retention).
			waitGone(t, filepath.Join(srv.dataDir, "recordings", stopped.RecordingID+"."+tt.format))

			c.send(rtm.TypeSessionStop, nil)
			events := hooks.waitFor("call-1", func(e hookEvent) bool { return e.state() == "TERMINATED/TERM_BY_CLIENT" })
			want := []string{"session_state:CONNECTING", "session_state:CONNECTED", "recording_state:STARTED", "recording_state:STOPPED", "session_state:TERMINATED/TERM_BY_CLIENT"}
			if got := states(events); !slices.Equal(got, want) {
				t.Fatalf("webhooks = %v, want %v", got, want)
			}
			ids := map[string]bool{}
			for _, e := range events {
				if e.ClientID != "agent-7" || ids[e.ID] || e.Timestamp == "" {
					t.Fatalf("webhook %+v: wrong client id, duplicate id or no timestamp", e)
				}
				ids[e.ID] = true
			}
			if logs := srv.log(); strings.Contains(logs, "topsecret") || strings.Contains(logs, "hook-secret-token") {
				t.Fatal("a URL's query string appears in the server log")
			}
		})
	}
}

func TestFailedUploadIsKeptAndReported(t *testing.T) {
	target := newUploadTarget(t)
	target.setStatus(http.StatusForbidden)
	hooks := newHookReceiver(t, "")
	srv := runRTMRec(t, t.TempDir(), "-allow-private-urls")
	c := startCall(t, srv.wsURL(), "call-2", hooks.url(), nil, testclient.Tone)
	started := c.record(target.url("/rec/denied.ogg"), "")
	time.Sleep(2 * time.Second)
	c.send(rtm.TypeRecordingStop, nil)
	failed := testclient.Data[rtm.RecordingStateData](c.wait(testclient.IsRecording(c.id, rtm.RecordingFailed)))
	if failed.RecordingID != started.RecordingID || !strings.Contains(failed.Reason, "403") || strings.Contains(failed.Reason, "topsecret") {
		t.Fatalf("FAILED = %+v, want the 403 in the reason and no query string", failed)
	}
	if n := target.count(); n != 1 {
		t.Fatalf("%d upload attempts, want 1: a 403 is not retried", n)
	}
	file := filepath.Join(srv.dataDir, "recordings", started.RecordingID+".ogg")
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("failed recording was not kept: %v", err)
	}
	ffprobe(t, file)
}

func TestRecordingSurvivesAKill(t *testing.T) {
	target := newUploadTarget(t)
	hooks := newHookReceiver(t, "")
	dir := t.TempDir()
	srv := runRTMRec(t, dir, "-allow-private-urls")
	c := startCall(t, srv.wsURL(), "call-3", hooks.url(), nil, testclient.Tone, testclient.Camera)
	started := c.record(target.url("/rec/crash.webm"), "")
	time.Sleep(4 * time.Second)
	srv.kill() // kill -9 mid-recording

	again := runRTMRec(t, dir, "-allow-private-urls")
	_ = again
	up := target.wait("/rec/crash.webm")
	p := ffprobe(t, up.File)
	if p.codecs() != "audio/opus,video/vp8" || p.duration() < 2.5 {
		t.Fatalf("repaired file: %s, %.2f s", p.codecs(), p.duration())
	}
	events := hooks.waitFor("call-3", func(e hookEvent) bool { return e.Type == "recording_state" && e.state() == "STOPPED" })
	var got string
	for _, e := range events {
		if e.Type == "recording_state" && e.state() == "STOPPED" {
			got = testclient.Data[rtm.RecordingStateData](rtm.Message{Data: e.Data}).RecordingID
			if e.ClientID != "agent-7" {
				t.Fatalf("STOPPED after restart lost the client id: %+v", e)
			}
		}
	}
	if got != started.RecordingID {
		t.Fatalf("STOPPED for %q, want the original recording id %q", got, started.RecordingID)
	}
	// The session died with the process: its webhook hears so, before the
	// recording's STOPPED.
	want := []string{"session_state:CONNECTING", "session_state:CONNECTED", "recording_state:STARTED", "session_state:TERMINATED/TERM_BY_ERROR", "recording_state:STOPPED"}
	if got := states(events); !slices.Equal(got, want) {
		t.Fatalf("webhooks = %v, want %v", got, want)
	}
}

func TestGracefulShutdown(t *testing.T) {
	target := newUploadTarget(t)
	hooks := newHookReceiver(t, "")
	srv := runRTMRec(t, t.TempDir(), "-allow-private-urls")
	c := startCall(t, srv.wsURL(), "call-4", hooks.url(), nil, testclient.Tone)
	c.record(target.url("/rec/drain.ogg"), "")
	time.Sleep(2 * time.Second)
	if code, _ := srv.get("/readyz"); code != 200 {
		t.Fatalf("readyz = %d before shutdown", code)
	}
	if code := srv.terminate(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	m := c.wait(testclient.IsState(c.id, rtm.StateTerminated))
	if cause := testclient.Data[rtm.SessionState](m).TerminationCause; cause != rtm.CauseServerShutdown {
		t.Fatalf("cause = %s", cause)
	}
	// The drain finished the recording and uploaded it before exiting.
	up := target.wait("/rec/drain.ogg")
	ffprobe(t, up.File)
	hooks.waitFor("call-4", func(e hookEvent) bool { return e.Type == "recording_state" && e.state() == "STOPPED" })
}

// TestSIGTERMWhileManyRecord: SIGTERM while 20 sessions record. Every
// recording is finished and uploaded, and its STOPPED delivered, before the
// process exits, and the exit is 0. RTMREC_DRAIN_SESSIONS changes the
// number (the drain time is logged).
func TestSIGTERMWhileManyRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("records 20 sessions; not in -short mode")
	}
	n := 20
	if v, err := strconv.Atoi(os.Getenv("RTMREC_DRAIN_SESSIONS")); err == nil && v > 0 {
		n = v
	}
	target := newUploadTarget(t)
	hooks := newHookReceiver(t, "")
	srv := runRTMRec(t, t.TempDir(), "-allow-private-urls", "-log-level", "info", "-max-recordings", strconv.Itoa(n),
		"-conn-rate-per-ip", "0", "-max-conns-per-ip", "0") // one test client, many calls
	calls := make([]*call, n)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			calls[i] = startCall(t, srv.wsURL(), fmt.Sprintf("drain-%d", i), hooks.url(), nil, testclient.Tone)
		})
	}
	wg.Wait()
	for i, c := range calls {
		c.record(target.url(fmt.Sprintf("/drain/%d.ogg", i)), "")
	}
	time.Sleep(2 * time.Second)
	sent := time.Now()
	if code := srv.terminate(60 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	drain := time.Since(sent)
	// Everything is there the moment the process is gone.
	for i := range calls {
		up, ok := target.get(fmt.Sprintf("/drain/%d.ogg", i))
		if !ok {
			t.Errorf("recording %d was not uploaded before the exit", i)
			continue
		}
		if p := ffprobe(t, up.File); p.duration() < 1.5 {
			t.Errorf("recording %d: %.2f s", i, p.duration())
		}
	}
	stopped := 0
	for i := range calls {
		if hooks.has(fmt.Sprintf("drain-%d", i), func(e hookEvent) bool { return e.Type == "recording_state" && e.state() == "STOPPED" }) {
			stopped++
		}
	}
	if stopped != n {
		t.Errorf("%d of %d STOPPED delivered before the exit", stopped, n)
	}
	t.Logf("SIGTERM with %d recording sessions: exit after %v", n, drain.Round(time.Millisecond))
}

// waitGone waits until path no longer exists.
func waitGone(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(path); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is still there", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOneProcessPerDataDirectory: a second server on the same data
// directory refuses to start and names the process that holds it (two
// would upload and report the same recordings twice).
func TestOneProcessPerDataDirectory(t *testing.T) {
	dir := t.TempDir()
	first := runRTMRec(t, dir)
	p, err := tryRunRTMRec(t, dir)
	if err == nil {
		t.Fatal("a second server started on the same data directory")
	}
	<-p.exited
	if code := p.cmd.ProcessState.ExitCode(); code == 0 {
		t.Fatalf("the second server exited %d", code)
	}
	want := fmt.Sprintf("process %d", first.cmd.Process.Pid)
	if !strings.Contains(p.log(), want) {
		t.Fatalf("the refusal does not name the holder (%s):\n%s", want, p.log())
	}
	// Once the first is gone, the directory is free.
	if code := first.terminate(30 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	runRTMRec(t, dir)
}

// TestDevDrainUploadsToItsOwnSink: Ctrl-C on `rtmrec -dev` during a
// recording finishes it into the console's own upload sink before the sink
// goes away, and the client still hears STOPPED before its connection
// closes.
func TestDevDrainUploadsToItsOwnSink(t *testing.T) {
	dir := t.TempDir()
	srv := runRTMRec(t, dir, "-dev")
	c := startCall(t, srv.wsURL(), "dev-drain", srv.httpURL()+"/dev/webhooks", nil, testclient.Tone)
	rec := c.record(srv.httpURL()+"/dev/uploads/dev-drain.ogg", "")
	time.Sleep(1500 * time.Millisecond)
	_ = srv.cmd.Process.Signal(syscall.SIGINT)
	stopped := testclient.Data[rtm.RecordingStateData](c.wait(testclient.IsRecording(c.id, rtm.RecordingStopped)))
	if stopped.RecordingID != rec.RecordingID {
		t.Fatalf("STOPPED for %s, want %s", stopped.RecordingID, rec.RecordingID)
	}
	select {
	case <-srv.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGINT")
	}
	if code := srv.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	fi, err := os.Stat(filepath.Join(dir, "dev-uploads", "dev-drain.ogg"))
	if err != nil || stopped.SizeBytes == nil || fi.Size() != *stopped.SizeBytes {
		t.Fatalf("the dev sink holds %v (%v), STOPPED says %v bytes", fi, err, stopped.SizeBytes)
	}
}
