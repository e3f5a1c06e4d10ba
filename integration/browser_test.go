package integration

// End-to-end tests with a real browser: the real rtmrec binary in -dev mode,
// headless Chromium (the Debian package) driven through playwright-core by
// browser/scenario.mjs, clicking through the dev console; and Firefox ESR
// with Chromium driven through puppeteer-core by browser/crossbrowser.mjs
// (browser_firefox_test.go). The recordings land in the console's upload
// sink and are checked with ffprobe/ffmpeg.
//
// Needs chromium, firefox-esr, node with integration/browser/node_modules,
// ffmpeg and ffprobe: scripts/install-browser.sh installs them. Without them
// the test is skipped, unless RTMREC_REQUIRE_TOOLS=1 (CI), where it fails.
//
// RTMREC_UPDATE_DOCS_SCREENSHOT=1 also writes docs/screenshot-console.png.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// browserChromium is where Debian's chromium package puts the browser;
// RTMREC_CHROMIUM overrides it.
const browserChromium = "/usr/bin/chromium"

// browserEnv is one server and one Chromium shared by the scenarios.
type browserEnv struct {
	srv     *rtmrecProcess
	root    string // repository root
	dataDir string
	base    string // http://127.0.0.1:PORT
	cdp     string // Chromium's DevTools WebSocket
	shots   string // integration/screenshots
	node    string
	// refusing is an upload target that answers every PUT with 503 and
	// Retry-After: 2, counting them.
	refusing     *httptest.Server
	refusingPuts atomic.Int32
}

func TestBrowserConsole(t *testing.T) {
	if testing.Short() {
		t.Skip("browser end-to-end tests take about a minute; not in -short mode")
	}
	start := time.Now()
	env := newBrowserEnv(t)
	t.Run("RecordAudioVideoWithSupervisor", env.testRecord)
	t.Run("PauseKeepsTimeline", env.testPause)
	t.Run("ScreenShareMidCall", env.testScreenShare)
	t.Run("TabClosedMidRecording", env.testTabClose)
	t.Run("JoinEndedSessionThenAnother", env.testJoinEnded)
	t.Run("UploadRetriesThenFails", env.testFailedUpload)
	t.Run("FirefoxAndH264", env.testOtherBrowsers)
	t.Logf("browser suite: %.1f s wall time (setup included)", time.Since(start).Seconds())
	// Real browsers' sessions leave the log quiet: the one warning is the
	// recording whose upload was refused on purpose.
	for _, l := range strings.Split(env.srv.log(), "\n") {
		if (strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`)) && !strings.Contains(l, `"msg":"recording failed"`) {
			t.Errorf("server log: %s", l)
		}
	}
}

// browserTools finds what the suite needs, or skips (fails with
// RTMREC_REQUIRE_TOOLS=1) saying how to install it.
func browserTools(t *testing.T, root string) (chromium, node string) {
	t.Helper()
	missing := func(why string) { t.Helper(); browserMissing(t, why) }
	chromium = os.Getenv("RTMREC_CHROMIUM")
	if chromium == "" {
		chromium = browserChromium
	}
	if _, err := os.Stat(chromium); err != nil {
		missing("chromium not installed: run scripts/install-browser.sh")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node not installed: install Node.js >= 20, then run scripts/install-browser.sh")
	}
	if _, err := os.Stat(filepath.Join(root, "integration/browser/node_modules/playwright-core/package.json")); err != nil {
		missing("playwright-core not installed in integration/browser/node_modules: run scripts/install-browser.sh")
	}
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(tool + " not installed: run scripts/install-browser.sh")
		}
	}
	return chromium, node
}

// browserMissing skips the test for a missing tool, or fails it with
// RTMREC_REQUIRE_TOOLS=1 (CI).
func browserMissing(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("RTMREC_REQUIRE_TOOLS") == "1" {
		t.Fatal(why)
	}
	t.Skip(why)
}

func newBrowserEnv(t *testing.T) *browserEnv {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	chromium, node := browserTools(t, root)
	tmp := t.TempDir()
	env := &browserEnv{root: root, dataDir: filepath.Join(tmp, "data"), shots: filepath.Join(root, "integration", "screenshots"), node: node}
	if err := os.MkdirAll(env.shots, 0o755); err != nil {
		t.Fatal(err)
	}

	// The microphone plays a 1 kHz tone, so the recording's pitch can be
	// measured; 30 s outlasts every scenario.
	tone := filepath.Join(tmp, "tone.wav")
	browserRun(t, root, "ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=1000:duration=30", "-ar", "48000", tone)

	// Two upload attempts, so that the refused upload of UploadRetriesThenFails
	// fails after one retry; the other scenarios' uploads succeed at once.
	srv := runRTMRec(t, env.dataDir, "-dev", "-upload-max-attempts", "2")
	// Registered after runRTMRec's own cleanup, so it runs first: the
	// server is stopped the way it is meant to stop, and must exit 0.
	t.Cleanup(func() {
		if code := srv.terminate(20 * time.Second); code != 0 {
			t.Errorf("rtmrec exited %d after SIGTERM", code)
		}
	})
	env.srv, env.base = srv, srv.httpURL()
	env.cdp = browserStartChromium(t, chromium, filepath.Join(tmp, "chromium-profile"), tone)
	env.refusing = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		env.refusingPuts.Add(1)
		w.Header().Set("Retry-After", "2")
		http.Error(w, "try later", http.StatusServiceUnavailable)
	}))
	t.Cleanup(env.refusing.Close)
	return env
}

// browserRun runs a command to completion, failing the test with its output.
func browserRun(t *testing.T, dir, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

var browserDevtoolsLine = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

// browserStartChromium runs headless Chromium with fake camera and screen
// and the tone file as microphone, and returns its DevTools WebSocket URL.
func browserStartChromium(t *testing.T, chromium, profile, tone string) string {
	t.Helper()
	return browserStart(t, "chromium", browserDevtoolsLine, chromium,
		"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+profile,
		"--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
		"--use-file-for-fake-audio-capture="+tone,
		"--autoplay-policy=no-user-gesture-required",
		"--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"about:blank",
	)
}

// browserStart runs a browser in its own process group and returns the
// first submatch of ready in its stderr (its automation WebSocket). The
// group is killed on every exit path: t.Cleanup for the test's own ends,
// Pdeathsig if the test binary dies.
func browserStart(t *testing.T, name string, ready *regexp.Regexp, exe string, args ...string) string {
	t.Helper()
	cmd := exec.Command(exe, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	var logMu sync.Mutex
	var logBuf bytes.Buffer
	wsCh := make(chan string, 1)
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logBuf.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if m := ready.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case wsCh <- m[1]:
				default:
				}
			}
		}
	}()
	exited := make(chan struct{})
	go func() {
		<-logDone
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pgid %d) did not exit after SIGKILL", name, cmd.Process.Pid)
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("%s log:\n%s", name, browserTail(logBuf.String(), 40))
			logMu.Unlock()
		}
	})
	select {
	case ws := <-wsCh:
		return ws
	case <-exited:
		t.Fatalf("%s exited at start:\n%s", name, logBuf.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not print its automation address within 30 s", name)
	}
	return ""
}

func browserTail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// browserScenarioResult is what browser/scenario.mjs prints.
type browserScenarioResult struct {
	OK        bool              `json:"ok"`
	Error     string            `json:"error"`
	Console   []string          `json:"console"`
	Errors    []string          `json:"errors"`
	SessionID string            `json:"session_id"`
	ConnectMS float64           `json:"connect_ms"`
	Timings   map[string]any    `json:"timings"`
	Recording browserRecording  `json:"recording"`
	Playback  float64           `json:"playback_duration_s"`
	AgentEnd  string            `json:"agent_cause"`
	Super     *browserSupervise `json:"supervisor"`
	Signal    browserSignalling `json:"signalling"`
	// The agent page's webhook panel and message log (record).
	Webhooks []struct {
		SessionID string `json:"session_id"`
		Type      string `json:"type"`
		Signed    string `json:"signed"`
		Label     string `json:"label"`
	} `json:"webhooks"`
	Messages []browserMessage `json:"messages"`
	// The players of the recording (screen): one per video track.
	Players []struct {
		Width  int     `json:"width"`
		Time   float64 `json:"time"`
		Frames int     `json:"frames"`
		Track  string  `json:"track"`
	} `json:"playback"`
	// joinended
	RootURL string `json:"root_url"`
	Refused struct {
		Errors       []string         `json:"errors"`
		SupervisorID string           `json:"supervisor_id"`
		SessionState string           `json:"session_state"`
		Messages     []browserMessage `json:"messages"`
	} `json:"refused"`
	// failedupload
	WhileRetrying struct {
		UploadStatus string          `json:"upload_status"`
		Badge        string          `json:"badge"`
		Buttons      map[string]bool `json:"buttons"` // disabled
	} `json:"while_retrying"`
	Elapsed struct {
		AtStop string `json:"at_stop"`
		AtEnd  string `json:"at_end"`
	} `json:"elapsed"`
	Shown struct {
		Badge         string `json:"badge"`
		Detail        string `json:"detail"`
		UploadStatus  string `json:"upload_status"`
		RecordEnabled bool   `json:"record_enabled"`
	} `json:"shown"`
	PageErrors []string `json:"page_errors"`
}

// browserMessage is a row of a page's message log.
type browserMessage struct {
	Time      string `json:"time"`
	Out       bool   `json:"out"`
	Type      string `json:"type"`
	SessionID string `json:"session_id"`
	Sum       string `json:"sum"`
}

// browserSignalling counts RTM messages in a page's message log.
type browserSignalling struct {
	CandidatesSent           int `json:"candidates_sent"`
	EndOfCandidatesSent      int `json:"end_of_candidates_sent"`
	CandidatesReceived       int `json:"candidates_received"`
	EndOfCandidatesReceived  int `json:"end_of_candidates_received"`
	SDPUpdateOffersSent      int `json:"sdp_update_offers_sent"`
	SDPUpdateAnswersReceived int `json:"sdp_update_answers_received"`
	SDPUpdateOffersReceived  int `json:"sdp_update_offers_received"`
	SDPUpdateAnswersSent     int `json:"sdp_update_answers_sent"`
}

type browserRecording struct {
	RecordingID     string  `json:"recording_id"`
	UploadName      string  `json:"upload_name"`
	State           string  `json:"state"`
	Reason          string  `json:"reason"`
	RecordMS        float64 `json:"record_ms"`
	StopToDecidedMS float64 `json:"stop_to_decided_ms"`
	Pauses          []struct {
		PauseMS float64 `json:"pause_ms"`
	} `json:"pauses"`
	// Retries are the failed attempts the page saw with the next one due.
	Retries []struct {
		Attempt   int     `json:"attempt"`
		Reason    string  `json:"reason"`
		Status    int     `json:"status"`
		RetryInMS float64 `json:"retry_in_ms"`
	} `json:"retries"`
}

type browserSupervise struct {
	ConnectMS float64 `json:"connect_ms"`
	Cause     string  `json:"cause"`
	Stats     struct {
		Audio struct {
			PacketsReceived int     `json:"packetsReceived"`
			AudioLevel      float64 `json:"audioLevel"`
		} `json:"audio"`
		Video []struct {
			PacketsReceived int `json:"packetsReceived"`
			FramesDecoded   int `json:"framesDecoded"`
		} `json:"video"`
	} `json:"stats"`
	Errors []string          `json:"errors"`
	Signal browserSignalling `json:"signalling"`
	// At the end of the monitored call (screen).
	FinalErrors []string `json:"final_errors"`
	Notices     []string `json:"notices"`
}

// scenario runs one scenario of browser/scenario.mjs.
func (e *browserEnv) scenario(t *testing.T, name string) browserScenarioResult {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{"cdp": e.cdp, "base": e.base, "shots": e.shots, "seconds": 10, "refusing_upload": e.refusing.URL + "/bucket/"})
	var res browserScenarioResult
	stderr := e.nodeJSON(t, 2*time.Minute, &res, "scenario.mjs", name, string(cfg))
	for _, c := range res.Console {
		t.Logf("browser console: %s", c)
	}
	if !res.OK {
		t.Fatalf("scenario %s failed: %s\nstderr: %s", name, res.Error, stderr)
	}
	if len(res.Errors) > 0 {
		t.Errorf("the page showed errors: %q", res.Errors)
	}
	return res
}

// nodeJSON runs a script of integration/browser in its own process group
// (killed when the timeout passes or the test binary dies), decodes the last
// line it prints into v, and returns its stderr.
func (e *browserEnv) nodeJSON(t *testing.T, timeout time.Duration, v any, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.node, args...)
	cmd.Dir = filepath.Join(e.root, "integration", "browser")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	stdout, err := cmd.Output()
	t.Logf("node %s %s: %.1f s", args[0], args[1], time.Since(t0).Seconds())
	if jerr := json.Unmarshal(browserLastLine(stdout), v); jerr != nil {
		t.Fatalf("node %s %s: %v; no result (%v)\nstdout: %s\nstderr: %s", args[0], args[1], err, jerr, stdout, stderr.String())
	}
	return stderr.String()
}

func browserLastLine(b []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return lines[len(lines)-1]
}

func (e *browserEnv) testRecord(t *testing.T) {
	res := e.scenario(t, "record")
	rec := res.Recording
	if rec.State != "STOPPED" {
		t.Fatalf("recording ended %s (%s), want STOPPED", rec.State, rec.Reason)
	}
	t.Logf("MEASURED click → CONNECTED: %.0f ms (page timing %v); supervisor join → CONNECTED: %.0f ms",
		res.ConnectMS, res.Timings, res.Super.ConnectMS)
	t.Logf("MEASURED recording_stop → STOPPED (file uploaded, playable): %.0f ms", rec.StopToDecidedMS)

	if len(res.Super.Errors) > 0 {
		t.Errorf("the supervisor page showed errors: %q", res.Super.Errors)
	}
	// The supervisor really received both media.
	st := res.Super.Stats
	if st.Audio.PacketsReceived == 0 || st.Audio.AudioLevel <= 0 {
		t.Errorf("supervisor audio: %d packets, level %.3f; want both > 0", st.Audio.PacketsReceived, st.Audio.AudioLevel)
	}
	if len(st.Video) == 0 || st.Video[0].PacketsReceived == 0 || st.Video[0].FramesDecoded == 0 {
		t.Errorf("supervisor video: %+v; want packets and decoded frames", st.Video)
	}
	// Trickle ICE both ways, each side ending with the empty candidate. The
	// server trickles only what it gathered after its answer (the rest is in
	// the answer SDP), which on one machine is usually nothing.
	if sg := res.Signal; sg.CandidatesSent == 0 || sg.EndOfCandidatesSent != 1 || sg.EndOfCandidatesReceived != 1 || sg.SDPUpdateAnswersReceived != 1 {
		t.Errorf("signalling: %+v; want trickled candidates, one end-of-candidates each way, one answer", sg)
	}
	t.Logf("signalling: %+v", res.Signal)
	// The supervisor left mid-recording (which must not disturb it: the
	// file checks below cover the whole 10 s).
	if res.AgentEnd != "TERM_BY_CLIENT" || res.Super.Cause != "TERM_BY_CLIENT" {
		t.Errorf("termination: agent %s, supervisor %s; want TERM_BY_CLIENT for both", res.AgentEnd, res.Super.Cause)
	}

	file := e.upload(t, rec.UploadName, "video/webm")
	p := ffprobe(t, file) // also decodes every frame
	p.wantCodecs(t, "audio/opus,video/vp8")
	p.wantDuration(t, 10, 0.3)
	p.wantDuration(t, rec.RecordMS/1000, 0.3)
	t.Logf("file: %.3f s for %.3f s between the Record and Stop clicks", p.duration(), rec.RecordMS/1000)
	if math.Abs(res.Playback-p.duration()) > 0.5 {
		t.Errorf("the page's <video> says %.2f s, ffprobe %.2f s", res.Playback, p.duration())
	}
	// Audio from recording_start, video from its first keyframe (requested
	// at recording_start), on one clock, timestamps never going back.
	first, key, monotonic := firstPackets(t, file)
	if !monotonic {
		t.Error("packet timestamps go backwards")
	}
	a, v := p.streamIndex("audio"), p.streamIndex("video")
	if !key[v] {
		t.Error("the video stream does not start on a keyframe")
	}
	// Video starts on the keyframe the PLI sent at recording_start asks
	// for: the fake camera's next capture (20 fps, so within 50 ms) plus
	// encoding, which on a busy 2-core machine has taken 220 ms. Starting
	// earlier would mean decoding from an older keyframe with frames
	// missing, which smears; 400 ms or more would mean the browser ignored
	// that PLI and the recorder's retry (after 500 ms) or a periodic
	// keyframe started the video.
	offset := math.Abs(first[v] - first[a])
	t.Logf("MEASURED audio/video start offset: %.0f ms (audio %.3f s, video %.3f s)", offset*1000, first[a], first[v])
	if offset >= 0.4 {
		t.Errorf("audio and video start %.0f ms apart, want the keyframe asked for at recording_start (< 400 ms)", offset*1000)
	}
	if hz := browserToneHz(t, file); math.Abs(hz-1000) > 20 {
		t.Errorf("recorded tone: %.1f Hz, want 1000 ±20", hz)
	} else {
		t.Logf("recorded tone: %.1f Hz", hz)
	}

	// The webhook panel shows the agent's own session only (the
	// supervisor's events went to the same sink), each verified with the
	// dev secret the server signs with.
	if len(res.Webhooks) < 5 {
		t.Errorf("the webhook panel shows %d events, want the session's 5 or more: %+v", len(res.Webhooks), res.Webhooks)
	}
	for _, w := range res.Webhooks {
		if w.SessionID != res.SessionID || w.Signed != "verified" || w.Label != "signed ✓" {
			t.Errorf("webhook panel row %+v; want session %s, signed ✓", w, res.SessionID)
		}
	}
	clock := regexp.MustCompile(`^\d{2}:\d{2}:\d{2}\.\d{3}$`)
	for _, m := range res.Messages {
		if !clock.MatchString(m.Time) {
			t.Errorf("message log row without a timestamp: %+v", m)
			break
		}
	}
	e.updateDocsScreenshot(t)
}

func (e *browserEnv) testPause(t *testing.T) {
	res := e.scenario(t, "pause")
	rec := res.Recording
	if rec.State != "STOPPED" {
		t.Fatalf("recording ended %s (%s), want STOPPED", rec.State, rec.Reason)
	}
	file := e.upload(t, rec.UploadName, "video/webm")
	p := ffprobe(t, file)
	p.wantCodecs(t, "audio/opus,video/vp8")
	// pause_mode silence: the file's clock is the call's, pause included.
	p.wantDuration(t, rec.RecordMS/1000, 0.3)

	// The pause is marked in the file itself: a "paused" chapter that players show.
	paused := p.chapter("paused")
	if len(paused) != 1 {
		t.Fatalf("chapters %+v, want one \"paused\"", p.Chapters)
	}
	span := paused[0][1] - paused[0][0]
	clicked := rec.Pauses[0].PauseMS / 1000
	// The page pauses for 3 s of its own timers, which run late on a loaded
	// machine: the chapter must match what the page did.
	if math.Abs(span-clicked) > 0.3 || clicked < 2.9 {
		t.Errorf("the paused chapter lasts %.2f s; the page paused for %.2f s (3 s or a little more)", span, clicked)
	}
	t.Logf("pause: chapter %.2f s at %.2f s, page %.2f s; file %.2f s for %.2f s of wall clock",
		span, paused[0][0], clicked, p.duration(), rec.RecordMS/1000)
}

func (e *browserEnv) testScreenShare(t *testing.T) {
	res := e.scenario(t, "screen")
	rec := res.Recording
	if rec.State != "STOPPED" {
		t.Fatalf("recording ended %s (%s), want STOPPED", rec.State, rec.Reason)
	}
	file := e.upload(t, rec.UploadName, "video/webm")
	ffprobe(t, file).wantCodecs(t, "audio/opus,video/vp8,video/vp8")

	// The agent renegotiated with an sdp_update offer; the supervisor got the
	// screen through a server offer that its page answered, and decodes it.
	// (The first answer is session_start's.)
	if sg := res.Signal; sg.SDPUpdateOffersSent < 1 || sg.SDPUpdateAnswersReceived != sg.SDPUpdateOffersSent+1 {
		t.Errorf("agent renegotiation: %+v; want sdp_update offers answered", sg)
	}
	if sg := res.Super.Signal; sg.SDPUpdateOffersReceived < 1 || sg.SDPUpdateAnswersSent != sg.SDPUpdateOffersReceived {
		t.Errorf("supervisor renegotiation: %+v; want server offers answered", sg)
	}
	decoded := 0
	for _, v := range res.Super.Stats.Video {
		if v.FramesDecoded > 0 {
			decoded++
		}
	}
	if decoded < 2 {
		t.Errorf("supervisor decodes %d videos, want camera and screen: %+v", decoded, res.Super.Stats.Video)
	}
	if res.Super.Cause != "TERM_BY_MONITORED_SESSION_END" {
		t.Errorf("supervisor ended %s, want TERM_BY_MONITORED_SESSION_END", res.Super.Cause)
	}
	// The end of the call reads as an ending, not as an error.
	if len(res.Super.FinalErrors) > 0 || len(res.Super.Notices) != 1 {
		t.Errorf("at the end of the monitored call the supervisor page shows errors %q and notices %q; want no error, one notice",
			res.Super.FinalErrors, res.Super.Notices)
	}
	// In-page playback shows both videos and plays them.
	if len(res.Players) != 2 || res.Players[1].Track == "" {
		t.Errorf("players %+v; want the file's first video and its second video track", res.Players)
	}
	for i, p := range res.Players {
		if p.Width == 0 || p.Frames <= 2 {
			t.Errorf("player %d: %+v; want a picture and frames played", i, p)
		}
	}
	t.Logf("playback: %+v", res.Players)
	t.Logf("signalling: agent %+v; supervisor %+v", res.Signal, res.Super.Signal)
}

func (e *browserEnv) testTabClose(t *testing.T) {
	res := e.scenario(t, "tabclose")
	rid := res.Recording.RecordingID
	if rid == "" {
		t.Fatal("no recording id before the tab closed")
	}
	// The session ends TERM_BY_DISCONNECT, the recording is still uploaded.
	var terminated, stopped bool
	deadline := time.Now().Add(30 * time.Second)
	for !(terminated && stopped) && time.Now().Before(deadline) {
		var hooks []struct {
			Body struct {
				Type      string `json:"type"`
				SessionID string `json:"session_id"`
				Data      struct {
					State       string `json:"state"`
					Cause       string `json:"termination_cause"`
					RecordingID string `json:"recording_id"`
				} `json:"data"`
			} `json:"body"`
		}
		browserGetJSON(t, e.base+"/dev/webhooks", &hooks)
		for _, h := range hooks {
			b := h.Body
			if b.SessionID != res.SessionID {
				continue
			}
			if b.Type == "session_state" && b.Data.State == "TERMINATED" {
				if b.Data.Cause != "TERM_BY_DISCONNECT" {
					t.Fatalf("session ended %s, want TERM_BY_DISCONNECT", b.Data.Cause)
				}
				terminated = true
			}
			if b.Type == "recording_state" && b.Data.RecordingID == rid && b.Data.State == "STOPPED" {
				stopped = true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !terminated || !stopped {
		t.Fatalf("webhooks after the tab closed: TERMINATED/TERM_BY_DISCONNECT %v, recording STOPPED %v; want both", terminated, stopped)
	}
	file := e.upload(t, res.Recording.UploadName, "video/webm")
	p := ffprobe(t, file)
	p.wantCodecs(t, "audio/opus,video/vp8")
	if p.duration() < 2.5 {
		t.Errorf("recording of a tab closed after 3 s lasts %.2f s", p.duration())
	}
}

// testJoinEnded: the console is one click from the server's root; a
// supervisor joining a session that has just ended sees one clear error,
// its page sends nothing more for the refused session, and it joins the
// next session.
func (e *browserEnv) testJoinEnded(t *testing.T) {
	res := e.scenario(t, "joinended")
	if res.RootURL != e.base+"/dev/" {
		t.Errorf("the server's root led to %s, want %s/dev/", res.RootURL, e.base)
	}
	r := res.Refused
	if len(r.Errors) != 1 || !strings.Contains(r.Errors[0], "session_not_found") {
		t.Errorf("joining an ended session showed %q; want one session_not_found error", r.Errors)
	}
	if r.SessionState != "REFUSED" {
		t.Errorf("the refused supervisor session is %q, want REFUSED", r.SessionState)
	}
	refusedAt := -1
	for i, m := range r.Messages {
		if m.SessionID != r.SupervisorID {
			continue
		}
		if !m.Out && m.Type == "error" && refusedAt < 0 {
			refusedAt = i
		}
		if m.Out && refusedAt >= 0 {
			t.Errorf("after the refusal the page still sent %s for the refused session", m.Type)
		}
	}
	if refusedAt < 0 {
		t.Errorf("no error for the refused session %s in the message log: %+v", r.SupervisorID, r.Messages)
	}
	if len(res.Super.Errors) > 0 || res.Super.Stats.Audio.PacketsReceived == 0 {
		t.Errorf("joining the next session: errors %q, %d audio packets; want none and some", res.Super.Errors, res.Super.Stats.Audio.PacketsReceived)
	}
}

// testFailedUpload: an upload URL that refuses (503) shows its failed
// attempt and the next one coming while the recording's buttons are those
// of a stopped recording and Elapsed is stopped; then FAILED with the
// reason and where the server keeps the file, which plays.
func (e *browserEnv) testFailedUpload(t *testing.T) {
	e.refusingPuts.Store(0)
	res := e.scenario(t, "failedupload")
	rec := res.Recording
	reason := regexp.MustCompile(`^upload_unreachable: HTTP 503 Service Unavailable after 2 attempts over \d+s$`)
	if rec.State != "FAILED" || !reason.MatchString(rec.Reason) {
		t.Fatalf("recording %s (%s); want FAILED with %s", rec.State, rec.Reason, reason)
	}
	if n := e.refusingPuts.Load(); n != 2 {
		t.Errorf("the refusing target got %d PUTs, want 2 (-upload-max-attempts 2)", n)
	}
	if len(rec.Retries) != 1 || rec.Retries[0].Attempt != 1 || rec.Retries[0].Status != 503 || rec.Retries[0].RetryInMS < 500 {
		t.Errorf("retries the page saw: %+v; want attempt 1 refused with 503 and the next ~2 s later", rec.Retries)
	}
	w := res.WhileRetrying
	if w.Badge != "UPLOADING" || !strings.Contains(w.UploadStatus, "attempt 1 of 2 failed: HTTP 503") || !strings.Contains(w.UploadStatus, "next attempt in") {
		t.Errorf("while retrying the page showed %q: %q", w.Badge, w.UploadStatus)
	}
	for _, b := range []string{"rec-pause", "rec-resume", "rec-stop"} {
		if !w.Buttons[b] {
			t.Errorf("while uploading, %s is enabled", b)
		}
	}
	if res.Elapsed.AtStop == "" || res.Elapsed.AtStop == "—" || res.Elapsed.AtStop != res.Elapsed.AtEnd {
		t.Errorf("Elapsed went from %q at the stop to %q; want it stopped", res.Elapsed.AtStop, res.Elapsed.AtEnd)
	}
	file := filepath.Join(e.dataDir, "recordings", rec.RecordingID+".ogg")
	if sh := res.Shown; sh.Badge != "FAILED" || sh.Detail != rec.Reason || sh.UploadStatus != "the server keeps the file at "+file || !sh.RecordEnabled {
		t.Errorf("after FAILED the page shows %+v; want FAILED, the reason, the file at %s, Record enabled", sh, file)
	}
	ffprobe(t, file).wantCodecs(t, "audio/opus")
	if len(res.PageErrors) != 1 || !strings.Contains(res.PageErrors[0], "FAILED") {
		t.Errorf("page errors %q, want the one FAILED", res.PageErrors)
	}
}

// upload checks the dev sink serves the file with the right type and
// returns its path on disk.
func (e *browserEnv) upload(t *testing.T, name, wantType string) string {
	t.Helper()
	resp, err := http.Get(e.base + "/dev/uploads/" + name)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != wantType {
		t.Errorf("GET /dev/uploads/%s: %d %s, want 200 %s", name, resp.StatusCode, resp.Header.Get("Content-Type"), wantType)
	}
	return filepath.Join(e.dataDir, "dev-uploads", name)
}

// updateDocsScreenshot shrinks the agent screenshot into the docs when asked:
// a 128-colour palette keeps it well under 200 KB.
func (e *browserEnv) updateDocsScreenshot(t *testing.T) {
	if os.Getenv("RTMREC_UPDATE_DOCS_SCREENSHOT") != "1" {
		return
	}
	dst := filepath.Join(e.root, "docs", "screenshot-console.png")
	browserRun(t, e.root, "ffmpeg", "-v", "error", "-y", "-i", filepath.Join(e.shots, "agent-recording.png"),
		"-vf", "split[a][b];[a]palettegen=max_colors=128:stats_mode=full[p];[b][p]paletteuse=dither=none", dst)
	if st, err := os.Stat(dst); err == nil {
		t.Logf("wrote %s (%d KB)", dst, st.Size()>>10)
	}
}

var browserZeroCrossings = regexp.MustCompile(`Zero crossings rate: ([0-9.]+)`)

// browserToneHz measures the pitch of the recorded tone: a pure tone's frequency
// is its zero-crossing rate × sample rate / 2.
func browserToneHz(t *testing.T, file string) float64 {
	t.Helper()
	cmd := exec.Command("ffmpeg", "-nostdin", "-ss", "0.5", "-i", file, "-map", "0:a:0",
		"-af", "aformat=sample_rates=48000:channel_layouts=mono,astats=measure_perchannel=Zero_crossings_rate:measure_overall=none",
		"-f", "null", "-")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg astats: %v\n%s", err, out)
	}
	m := browserZeroCrossings.FindSubmatch(out)
	if m == nil {
		t.Fatalf("ffmpeg astats printed no zero-crossing rate:\n%s", out)
	}
	rate, _ := strconv.ParseFloat(string(m[1]), 64)
	return rate * 24000
}

func browserGetJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
