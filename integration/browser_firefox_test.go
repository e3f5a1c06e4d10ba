package integration

// The Firefox and H.264 scenarios of TestBrowserConsole: Debian's Firefox ESR,
// headless, driven over WebDriver BiDi by puppeteer-core in
// browser/crossbrowser.mjs, next to the suite's Chromium. They run in two
// concurrent lanes: the 20 s Firefox recording in one, everything else in
// the other, so they add about the recording's length to the suite.
//
// RTMREC_FIREFOX_RUNS=N runs only the 20 s Firefox recording, N times in a
// row, and reports the file-length error and re-anchors over the runs.
// RTMREC_FIREFOX overrides /usr/bin/firefox-esr.

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const browserFirefox = "/usr/bin/firefox-esr"

var browserBiDiLine = regexp.MustCompile(`WebDriver BiDi listening on (ws://\S+)`)

// crossResult is what browser/crossbrowser.mjs reports for one scenario:
// what scenario.mjs reports, and more.
type crossResult struct {
	browserScenarioResult
	Name     string         `json:"name"`
	WallMS   float64        `json:"wall_ms"`
	PhasesMS map[string]int `json:"phases_ms"`
	Pairs    []struct {
		Agent      string   `json:"agent"`
		ConnectMS  float64  `json:"connect_ms"`
		AgentCause string   `json:"agent_cause"`
		Errors     []string `json:"errors"`
		Supervisor struct {
			browserSupervise
			Browser string `json:"browser"`
		} `json:"supervisor"`
	} `json:"pairs"`
}

func (e *browserEnv) testOtherBrowsers(t *testing.T) {
	firefox := os.Getenv("RTMREC_FIREFOX")
	if firefox == "" {
		firefox = browserFirefox
	}
	if _, err := os.Stat(firefox); err != nil {
		browserMissing(t, "firefox-esr not installed: run scripts/install-browser.sh")
	}
	if _, err := os.Stat(filepath.Join(e.root, "integration/browser/node_modules/puppeteer-core/package.json")); err != nil {
		browserMissing(t, "puppeteer-core not installed in integration/browser/node_modules: run scripts/install-browser.sh")
	}
	start := time.Now()
	bidi := e.startFirefox(t, firefox)
	if runs, _ := strconv.Atoi(os.Getenv("RTMREC_FIREFOX_RUNS")); runs > 0 {
		e.measureFirefox(t, bidi, runs)
		return
	}
	results := map[string]crossResult{}
	for _, r := range e.crossbrowser(t, bidi, 20, []string{"firefox-record"}, []string{"firefox-audio", "cross-supervise", "chromium-h264"}) {
		results[r.Name] = r
	}
	t.Run("FirefoxRecords20s", func(t *testing.T) { e.checkFirefoxRecording(t, results["firefox-record"], 20) })
	t.Run("FirefoxAudioOnly", func(t *testing.T) { e.checkFirefoxAudio(t, results["firefox-audio"]) })
	t.Run("SupervisorsAcrossBrowsers", func(t *testing.T) { checkCrossSupervise(t, results["cross-supervise"]) })
	t.Run("ChromiumH264", func(t *testing.T) { e.checkH264(t, results["chromium-h264"]) })
	e.checkNoMDNSWarnings(t)
	t.Logf("MEASURED Firefox and H.264 scenarios: %.1f s wall time (Firefox start and file checks included)", time.Since(start).Seconds())
}

// startFirefox runs headless Firefox with a fresh profile (fake camera and
// microphone, no prompts, loopback ICE) and returns its WebDriver BiDi URL.
func (e *browserEnv) startFirefox(t *testing.T, firefox string) string {
	t.Helper()
	profile := filepath.Join(t.TempDir(), "firefox-profile")
	browserRun(t, filepath.Join(e.root, "integration", "browser"), e.node, "crossbrowser.mjs", "firefox-profile", profile)
	t0 := time.Now()
	bidi := browserStart(t, "firefox", browserBiDiLine, firefox,
		"--headless", "--no-remote", "--profile", profile, "--remote-debugging-port=0", "about:blank")
	t.Logf("firefox ready in %.1f s", time.Since(t0).Seconds())
	return bidi
}

// crossbrowser runs lanes of crossbrowser.mjs scenarios (lanes concurrently,
// a lane's scenarios in turn) and returns every scenario's result.
func (e *browserEnv) crossbrowser(t *testing.T, bidi string, seconds int, lanes ...[]string) []crossResult {
	t.Helper()
	longest := 0
	for _, l := range lanes {
		longest = max(longest, len(l))
	}
	cfg, _ := json.Marshal(map[string]any{"bidi": bidi, "cdp": e.cdp, "base": e.base, "seconds": seconds, "lanes": lanes})
	var res struct {
		OK        bool               `json:"ok"`
		Error     string             `json:"error"`
		ConnectMS map[string]float64 `json:"connect_ms"`
		Results   []crossResult      `json:"results"`
	}
	stderr := e.nodeJSON(t, time.Duration(longest)*(time.Duration(seconds)*time.Second+time.Minute), &res, "crossbrowser.mjs", "run", string(cfg))
	if !res.OK {
		t.Fatalf("crossbrowser.mjs failed: %s\nstderr: %s", res.Error, stderr)
	}
	t.Logf("puppeteer connected in %v ms", res.ConnectMS)
	for _, r := range res.Results {
		t.Logf("scenario %s: %.1f s %v", r.Name, r.WallMS/1000, r.PhasesMS)
		for _, c := range r.Console {
			t.Logf("browser console: %s", c)
		}
	}
	return res.Results
}

// scenarioOK fails the test when a scenario did not run through or its
// pages showed errors.
func scenarioOK(t *testing.T, r crossResult) {
	t.Helper()
	if !r.OK {
		t.Fatalf("scenario %s failed: %s", r.Name, r.Error)
	}
	if len(r.Errors) > 0 {
		t.Errorf("the pages showed errors: %q", r.Errors)
	}
}

// browserManifest is what the tests read of a recording's STOPPED event
// (its evidence), as the dev console's webhook sink received it.
type browserManifest struct {
	RecordingID string    `json:"recording_id"`
	State       string    `json:"state"`
	StartedAt   time.Time `json:"started_at"`
	StoppedAt   time.Time `json:"stopped_at"`
	Tracks      []struct {
		ID        string `json:"id"`
		Kind      string `json:"kind"`
		Reanchors int    `json:"reanchors"`
		Lost      int    `json:"packets_lost"`
	} `json:"tracks"`
}

// stoppedEvent finds a recording's STOPPED among the webhooks the dev
// console received.
func (e *browserEnv) stoppedEvent(t *testing.T, recordingID string) browserManifest {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var hooks []struct {
			Body struct {
				Type string          `json:"type"`
				Data browserManifest `json:"data"`
			} `json:"body"`
		}
		browserGetJSON(t, e.base+"/dev/webhooks", &hooks)
		for _, h := range hooks {
			if d := h.Body.Data; h.Body.Type == "recording_state" && d.RecordingID == recordingID && d.State == "STOPPED" {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no STOPPED for recording %s among the webhooks", recordingID)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// recording checks that a scenario ran through and that its recording was
// uploaded under a name ending in ext, with the content type of that format,
// and plays with these codecs. The file lasts as long as the recording on
// the server's clock, and every stream's packets go forward and end with
// it; the file also lasts as long as the Record-Stop clicks, unless the
// browser lagged so much that its clock and the server's disagree (which is
// logged). It returns the file, what ffprobe says of it, and its manifest.
func (e *browserEnv) recording(t *testing.T, r crossResult, ext, contentType, codecs string) (string, probe, browserManifest) {
	t.Helper()
	scenarioOK(t, r)
	rec := r.Recording
	if rec.State != "STOPPED" {
		t.Fatalf("recording ended %s (%s), want STOPPED", rec.State, rec.Reason)
	}
	if r.AgentEnd != "TERM_BY_CLIENT" {
		t.Errorf("the agent's session ended %s, want TERM_BY_CLIENT", r.AgentEnd)
	}
	// The console names the upload by the format the server writes.
	if !strings.HasSuffix(rec.UploadName, ext) {
		t.Errorf("upload named %s, want %s for %s", rec.UploadName, ext, codecs)
	}
	file := e.upload(t, rec.UploadName, contentType)
	p := ffprobe(t, file) // also decodes every frame
	p.wantCodecs(t, codecs)
	m := e.stoppedEvent(t, rec.RecordingID)
	span := m.StoppedAt.Sub(m.StartedAt).Seconds()
	p.wantDuration(t, span, 0.3)
	clicks := rec.RecordMS / 1000
	lagged := m.lagged(r)
	if lagged {
		t.Logf("the browser lagged: %.3f s between its Record and Stop clicks, %.3f s on the server; the file is compared with the server's clock only", clicks, span)
	} else {
		p.wantDuration(t, clicks, 0.3)
	}
	for idx, st := range packetTimes(t, file) {
		// Nothing may be placed after the end; a browser that lagged may have
		// sent nothing for a while before it.
		if !st.monotonic || st.last > span+0.1 || !lagged && st.last < span-0.5 {
			t.Errorf("stream %s: packets %.3f-%.3f s, monotonic %v; want them to go forward and end with the %.3f s recording",
				idx, st.first, st.last, st.monotonic, span)
		}
	}
	return file, p, m
}

// lagged reports whether the browser's clock and the server's disagree by
// more than 0.3 s on how long the recording lasted: a loaded browser runs
// its timers, clicks and messages late (seen here under a parallel
// `go test -race ./...`: the Stop message reached the server 0.47 s after
// the click).
func (m browserManifest) lagged(r crossResult) bool {
	return math.Abs(r.Recording.RecordMS/1000-m.StoppedAt.Sub(m.StartedAt).Seconds()) > 0.3
}

// checkFirefoxRecording checks a Firefox audio+video recording of seconds
// and returns the file's length error against the clicks, whether the
// browser lagged (then that error says nothing of the recorder), and the
// re-anchors of its timeline.
func (e *browserEnv) checkFirefoxRecording(t *testing.T, r crossResult, seconds float64) (lengthErr float64, lagged bool, reanchors int) {
	t.Helper()
	file, p, m := e.recording(t, r, ".webm", "video/webm", "audio/opus,video/vp8")
	rec := r.Recording
	lengthErr, lagged = p.duration()-rec.RecordMS/1000, m.lagged(r)
	if !lagged && math.Abs(rec.RecordMS/1000-seconds) < 0.1 {
		p.wantDuration(t, seconds, 0.3)
	}
	for _, tr := range m.Tracks {
		reanchors += tr.Reanchors
	}
	if reanchors != 0 {
		t.Errorf("the timeline re-anchored %d times: %+v", reanchors, m.Tracks)
	}
	t.Logf("MEASURED Firefox click → CONNECTED: %.0f ms (page timing %v)", r.ConnectMS, r.Timings)
	t.Logf("file %.3f s for %.3f s between the clicks (error %+.0f ms), %.3f s on the server; tracks %+v; video sizes %s",
		p.duration(), rec.RecordMS/1000, lengthErr*1000, m.StoppedAt.Sub(m.StartedAt).Seconds(), m.Tracks, videoSizes(t, file))
	return lengthErr, lagged, reanchors
}

// videoSizes lists the frame sizes of a file's video with the time each
// starts: Firefox's resolution steps.
func videoSizes(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "frame=pts_time,width,height", "-of", "csv=p=0", file).Output()
	if err != nil {
		t.Fatalf("ffprobe frames: %v", err)
	}
	var steps []string
	last := ""
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, ",")
		if len(f) != 3 || f[1]+"x"+f[2] == last {
			continue
		}
		last = f[1] + "x" + f[2]
		steps = append(steps, last+" from "+f[0]+" s")
	}
	return strings.Join(steps, ", ")
}

func (e *browserEnv) checkFirefoxAudio(t *testing.T, r crossResult) {
	e.recording(t, r, ".ogg", "audio/ogg", "audio/opus")
}

func checkCrossSupervise(t *testing.T, r crossResult) {
	scenarioOK(t, r)
	if len(r.Pairs) != 2 {
		t.Fatalf("%d agent/supervisor pairs, want 2", len(r.Pairs))
	}
	for _, pr := range r.Pairs {
		sup := pr.Supervisor
		st := sup.Stats
		decoded := false
		for _, v := range st.Video {
			decoded = decoded || v.FramesDecoded > 0
		}
		if st.Audio.PacketsReceived == 0 || !decoded {
			t.Errorf("%s watching a %s: audio %+v, video %+v; want audio packets and decoded frames", sup.Browser, pr.Agent, st.Audio, st.Video)
		}
		if len(sup.Errors) > 0 || len(pr.Errors) > 0 {
			t.Errorf("%s / %s pages showed errors: %q %q", pr.Agent, sup.Browser, pr.Errors, sup.Errors)
		}
		if pr.AgentCause != "TERM_BY_CLIENT" || sup.Cause != "TERM_BY_CLIENT" {
			t.Errorf("termination: %s %s, %s %s; want TERM_BY_CLIENT for both", pr.Agent, pr.AgentCause, sup.Browser, sup.Cause)
		}
		t.Logf("%s (CONNECTED in %.0f ms) watched by a %s (CONNECTED in %.0f ms): audio %+v, video %+v",
			pr.Agent, pr.ConnectMS, sup.Browser, sup.ConnectMS, st.Audio, st.Video)
	}
}

func (e *browserEnv) checkH264(t *testing.T, r crossResult) {
	file, p, _ := e.recording(t, r, ".mkv", "video/x-matroska", "audio/opus,video/h264")
	if st := packetTimes(t, file)[p.streamIndex("video")]; st == nil || !st.firstKey {
		t.Error("the video does not start on a keyframe")
	}
	t.Logf("H.264 from Chromium: %.3f s for %.3f s between the clicks", p.duration(), r.Recording.RecordMS/1000)
}

// checkNoMDNSWarnings: Firefox's mDNS host candidates are ignored on purpose
// and must not fill the server log with warnings.
func (e *browserEnv) checkNoMDNSWarnings(t *testing.T) {
	for _, line := range strings.Split(e.srv.log(), "\n") {
		var rec struct{ Level, Msg string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Level == "WARN" && strings.Contains(rec.Msg, "mDNS") {
			t.Errorf("server warned: %s", line)
		}
	}
}

// measureFirefox records 20 s from Firefox runs times in a row and reports
// the file-length error and the re-anchors over all runs.
func (e *browserEnv) measureFirefox(t *testing.T, bidi string, runs int) {
	lane := make([]string, runs)
	for i := range lane {
		lane[i] = "firefox-record"
	}
	var errs, connect []float64
	lags, reanchors := 0, 0
	for i, r := range e.crossbrowser(t, bidi, 20, lane) {
		t.Run("run"+strconv.Itoa(i+1), func(t *testing.T) {
			d, lagged, n := e.checkFirefoxRecording(t, r, 20)
			if lagged {
				lags++
			} else {
				errs = append(errs, math.Abs(d)*1000)
			}
			connect = append(connect, r.ConnectMS)
			reanchors += n
		})
	}
	slices.Sort(errs)
	slices.Sort(connect)
	if len(errs) == 0 {
		t.Fatal("the browser lagged in every run")
	}
	t.Logf("MEASURED %d Firefox 20 s recordings: |file length - click time| median %.0f ms, max %.0f ms (%d runs where the browser lagged left out); re-anchors %d; click → CONNECTED median %.0f ms, max %.0f ms",
		len(connect), errs[len(errs)/2], errs[len(errs)-1], lags, reanchors, connect[len(connect)/2], connect[len(connect)-1])
}
