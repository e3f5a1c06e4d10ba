package integration

// End-to-end tests of the compatibility endpoints with the real, unmodified
// browser SDKs of Ant Media (@antmedia/webrtc_adaptor) and Flashphoner WCS
// (@flashphoner/websdk), from npm, in headless Chromium: the real rtmrec
// binary, the pages of browser/compat served by the test, driven by
// browser/compat.mjs. The microphone is a 1 kHz tone; the recordings are
// uploaded to the test's upload target and checked with ffprobe/ffmpeg.
//
// Needs what browser_test.go needs, plus the SDKs in
// integration/browser/node_modules (scripts/install-browser.sh).

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// compatEnv is one rtmrec, one Chromium, the pages' server and the
// customer's upload target and webhook receiver, shared by the scenarios.
type compatEnv struct {
	root   string
	node   string
	cdp    string
	rtmrec *rtmrecProcess
	pages  *httptest.Server
	up     *uploadTarget
	hooks  *hookReceiver
}

func TestBrowserCompatSDKs(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end tests take about a minute; not in -short mode")
	}
	start := time.Now()
	env := newCompatEnv(t)
	t.Run("AntMediaPublishAndPlay", func(t *testing.T) { env.testPublishAndPlay(t, "ams", "ams-call") })
	t.Run("WCSPublishAndPlay", func(t *testing.T) { env.testPublishAndPlay(t, "wcs", "wcs-call") })
	t.Run("AntMediaRetryAfterLateAnswer", env.testRetry)
	t.Logf("MEASURED compat browser suite: %.1f s wall time (setup included)", time.Since(start).Seconds())
}

func newCompatEnv(t *testing.T) *compatEnv {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	chromium, node := browserTools(t, root)
	for _, pkg := range []string{"@antmedia/webrtc_adaptor", "@flashphoner/websdk"} {
		if _, err := os.Stat(filepath.Join(root, "integration/browser/node_modules", pkg, "package.json")); err != nil {
			msg := pkg + " not installed in integration/browser/node_modules: run scripts/install-browser.sh"
			if os.Getenv("RTMREC_REQUIRE_TOOLS") == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	tmp := t.TempDir()
	tone := filepath.Join(tmp, "tone.wav")
	browserRun(t, root, "ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=1000:duration=60", "-ar", "48000", tone)

	env := &compatEnv{root: root, node: node, up: newUploadTarget(t), hooks: newHookReceiver(t, "")}
	env.rtmrec = runRTMRec(t, filepath.Join(tmp, "data"), "-dev",
		"-compat-upload-url", env.up.srv.URL+"/{stream}-{recording_id}.{ext}",
		"-compat-webhook-url", env.hooks.url())
	t.Cleanup(func() {
		if code := env.rtmrec.terminate(20 * time.Second); code != 0 {
			t.Errorf("rtmrec exited %d after SIGTERM", code)
		}
	})
	env.pages = httptest.NewServer(env.pagesHandler())
	t.Cleanup(env.pages.Close)
	env.cdp = browserStartChromium(t, chromium, filepath.Join(tmp, "chromium-profile"), tone)
	return env
}

// pagesHandler serves the SDK pages and node_modules (127.0.0.1 is a
// secure context, as the SDKs need), and the relay of the retry scenario.
func (e *compatEnv) pagesHandler() http.Handler {
	mux := http.NewServeMux()
	files := http.FileServer(http.Dir(filepath.Join(e.root, "integration", "browser")))
	mux.Handle("GET /compat/", files)
	mux.Handle("GET /node_modules/", files)
	mux.HandleFunc("GET /relay/{app}/websocket", e.relay)
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	return mux
}

// relay passes an Ant Media WebSocket through to rtmrec, holding the
// client's first takeConfiguration (its offer) for 3.3 s: to the SDK, the
// answer comes later than the 3 s it waits before it stops and publishes
// again. Frames keep their order.
func (e *compatEnv) relay(w http.ResponseWriter, r *http.Request) {
	up, _, err := websocket.DefaultDialer.Dial("ws://"+e.rtmrec.addr+"/"+r.PathValue("app")+"/websocket", nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer up.Close()
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	down, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer down.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		defer down.Close()
		for {
			kind, b, err := up.ReadMessage()
			if err != nil || down.WriteMessage(kind, b) != nil {
				return
			}
		}
	})
	held := false
	for {
		kind, b, err := down.ReadMessage()
		if err != nil {
			break
		}
		if !held && bytes.Contains(b, []byte(`"command":"takeConfiguration"`)) {
			held = true
			time.Sleep(3300 * time.Millisecond)
		}
		if up.WriteMessage(kind, b) != nil {
			break
		}
	}
	_ = up.Close()
	wg.Wait()
}

// compatResult is what browser/compat.mjs prints.
type compatResult struct {
	OK       bool     `json:"ok"`
	Error    string   `json:"error"`
	Console  []string `json:"console"`
	Timeline []string `json:"timeline"`
	Listed   *struct {
		SessionID string `json:"session_id"`
		State     string `json:"state"`
		Recording string `json:"recording_id"`
		Tracks    []struct {
			Kind    string `json:"kind"`
			Packets int    `json:"packets"`
		} `json:"tracks"`
	} `json:"listed"`
	Publish struct {
		PublishMS        float64     `json:"publish_ms"`
		RecordMS         float64     `json:"record_ms"`
		StopToFinishedMS float64     `json:"stop_to_finished_ms"`
		RecordName       string      `json:"record_name"`
		Events           []pageEvent `json:"events"`
		Errors           []pageEvent `json:"errors"`
	} `json:"publish"`
	Play struct {
		FirstFrameMS     float64 `json:"first_frame_ms"`
		StopToFinishedMS float64 `json:"stop_to_finished_ms"`
		Frames           struct {
			Count     int     `json:"count"`
			Width     int     `json:"width"`
			Height    int     `json:"height"`
			MediaTime float64 `json:"mediaTime"`
		} `json:"frames"`
		Events []pageEvent `json:"events"`
		Errors []pageEvent `json:"errors"`
	} `json:"play"`
}

type pageEvent struct {
	Name    string  `json:"name"`
	At      float64 `json:"at"`
	Message string  `json:"message"`
}

func eventNames(evs []pageEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Name)
	}
	return out
}

// scenario runs one scenario of browser/compat.mjs for stream.
func (e *compatEnv) scenario(t *testing.T, name, stream string, seconds int) compatResult {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{
		"cdp": e.cdp, "pages": e.pages.URL, "ws": "ws://" + e.rtmrec.addr,
		"relay":    "ws" + strings.TrimPrefix(e.pages.URL, "http") + "/relay",
		"sessions": e.rtmrec.httpURL() + "/dev/sessions", "stream": stream, "seconds": seconds,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.node, "compat.mjs", name, string(cfg))
	cmd.Dir = filepath.Join(e.root, "integration", "browser")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	stdout, err := cmd.Output()
	t.Logf("scenario %s: %.1f s", name, time.Since(t0).Seconds())
	var res compatResult
	if jerr := json.Unmarshal(browserLastLine(stdout), &res); jerr != nil {
		t.Fatalf("scenario %s: %v; no result (%v)\nstdout: %s\nstderr: %s", name, err, jerr, stdout, stderr.String())
	}
	for _, c := range res.Console {
		t.Logf("browser console: %s", c)
	}
	t.Logf("timeline: %v", res.Timeline)
	if !res.OK {
		t.Fatalf("scenario %s failed: %s\nstderr: %s", name, res.Error, stderr.String())
	}
	if len(res.Publish.Errors) > 0 || len(res.Play.Errors) > 0 {
		t.Errorf("the SDKs reported errors: publish %+v, play %+v", res.Publish.Errors, res.Play.Errors)
	}
	return res
}

// recording waits for the webhook of the stream's recording STOPPED and
// checks the uploaded file: Opus and VP8, the length the page published,
// a clean decode and the 1 kHz tone. It returns the stream's webhooks.
func (e *compatEnv) recording(t *testing.T, stream string, seconds float64) []hookEvent {
	t.Helper()
	events := e.hooks.waitFor(stream, func(h hookEvent) bool { return h.Type == "recording_state" && h.state() == "STOPPED" })
	var rec struct {
		ID     string `json:"recording_id"`
		Format string `json:"format"`
	}
	for _, h := range events {
		if h.Type == "recording_state" && h.state() == "STOPPED" {
			_ = json.Unmarshal(h.Data, &rec)
		}
	}
	up := e.up.wait("/" + stream + "-" + rec.ID + "." + rec.Format)
	if up.ContentType != "video/webm" {
		t.Errorf("upload Content-Type %q, want video/webm", up.ContentType)
	}
	p := ffprobe(t, up.File) // decodes every frame
	p.wantCodecs(t, "audio/opus,video/vp8")
	p.wantDuration(t, seconds, 0.5)
	if hz := browserToneHz(t, up.File); math.Abs(hz-1000) > 20 {
		t.Errorf("recorded tone: %.1f Hz, want 1000 ±20", hz)
	} else {
		t.Logf("recording %s: %.2f s, tone %.1f Hz", rec.ID, p.duration(), hz)
	}
	return events
}

func (e *compatEnv) testPublishAndPlay(t *testing.T, sdk, stream string) {
	res := e.scenario(t, sdk, stream, 8)
	pub, play := res.Publish, res.Play
	t.Logf("MEASURED %s: publish() → %s %.0f ms; play() → first decoded frame %.0f ms (%d frames %dx%d); stop → finished: publish %.0f ms, play %.0f ms",
		sdk, map[string]string{"ams": "publish_started", "wcs": "PUBLISHING"}[sdk], pub.PublishMS, play.FirstFrameMS,
		play.Frames.Count, play.Frames.Width, play.Frames.Height, pub.StopToFinishedMS, play.StopToFinishedMS)

	// The dev console lists the publish as a session, recording, with media.
	if l := res.Listed; l == nil || l.Recording == "" || l.State != "CONNECTED" || len(l.Tracks) != 2 {
		t.Errorf("/dev/sessions during the publish: %+v; want %s CONNECTED, recording, two tracks", l, stream)
	}
	if sdk == "wcs" && !strings.HasSuffix(pub.RecordName, ".webm") {
		t.Errorf("PUBLISHING recordName %q, want the recording's name", pub.RecordName)
	}

	events := e.recording(t, stream, pub.RecordMS/1000)
	got := states(events)
	for _, want := range []string{"session_state:CONNECTED", "recording_state:STARTED", "session_state:TERMINATED/TERM_BY_CLIENT", "recording_state:STOPPED"} {
		if !contains(got, want) {
			t.Errorf("webhooks of %s: %v; missing %s", stream, got, want)
		}
	}
	// The play was a supervisor session of its own, ended by the player.
	e.hooks.mu.Lock()
	var played []string
	for _, h := range e.hooks.events {
		if strings.HasPrefix(h.SessionID, stream+"~play-") && h.Type == "session_state" {
			played = append(played, h.state())
		}
	}
	e.hooks.mu.Unlock()
	if !contains(played, "CONNECTED") || !contains(played, "TERMINATED/TERM_BY_CLIENT") {
		t.Errorf("webhooks of the play's supervisor session: %v; want CONNECTED and TERMINATED/TERM_BY_CLIENT", played)
	}
}

func (e *compatEnv) testRetry(t *testing.T) {
	const stream = "ams-retry"
	res := e.scenario(t, "ams-retry", stream, 4)
	pub := res.Publish
	names := eventNames(pub.Events)
	t.Logf("retry: page events %v; publish() → publish_started %.0f ms", names, pub.PublishMS)
	if !contains(names, "reconnection_attempt_for_publisher") || pub.PublishMS < 3000 {
		t.Fatalf("the SDK did not retry (events %v, publish_started after %.0f ms): the relay did not delay the answer", names, pub.PublishMS)
	}
	events := e.recording(t, stream, pub.RecordMS/1000)
	// Two sessions (the abandoned one never connected), one recording.
	var starts, terminated, connected int
	for _, h := range events {
		switch h.Type + ":" + h.state() {
		case "recording_state:STARTED":
			starts++
		case "session_state:CONNECTED":
			connected++
		case "session_state:TERMINATED/TERM_BY_CLIENT":
			terminated++
		}
	}
	if starts != 1 || connected != 1 || terminated != 2 {
		t.Errorf("webhooks %v: want two sessions ended by the client, one connected and recorded", states(events))
	}
	if got := e.up.paths("/" + stream + "-"); len(got) != 1 {
		t.Errorf("uploads of %s: %v, want one", stream, got)
	}
}

// paths lists the uploads whose path begins with prefix.
func (u *uploadTarget) paths(prefix string) []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for p := range u.got {
		if strings.HasPrefix(p, prefix) {
			out = append(out, p)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
