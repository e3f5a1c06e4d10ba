package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// firstReleaseData is a data directory rtmrec's first release wrote, with
// its uploads and webhook events still queued and a recording cut off by a
// kill -9 (internal/upgrade/testdata/README.md says how it was made).
const firstReleaseData = "../internal/upgrade/testdata/firstrelease"

// firstRelease is what the first release's data directory holds, read
// from its files before today's release starts on it.
type firstRelease struct {
	dir string
	// events are the queued webhook events' ids, per session, in order.
	events map[string][]string
	total  int
	// uploads are the recordings whose upload was queued; refused those
	// whose upload was refused and reported; cut those the kill cut off.
	uploads, refused, cut []firstRecording
}

type firstRecording struct {
	id, session, urlPath, file, sha256 string
}

// copyFirstRelease copies the first release's data directory, pointing its
// upload and webhook URLs at this test's receivers, and reads what it
// holds.
func copyFirstRelease(t *testing.T, target *uploadTarget, hooks *hookReceiver) *firstRelease {
	t.Helper()
	var origins struct{ Upload, Webhook string }
	b, err := os.ReadFile(firstReleaseData + "/origins.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &origins); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	src := firstReleaseData + "/data"
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		dst := filepath.Join(dir, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o750)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !strings.HasSuffix(path, ".ogg") && !strings.HasSuffix(path, ".webm") {
			data = bytes.ReplaceAll(data, []byte(origins.Upload), []byte(target.srv.URL))
			data = bytes.ReplaceAll(data, []byte(origins.Webhook), []byte(hooks.srv.URL))
		}
		return os.WriteFile(dst, data, 0o640)
	})
	if err != nil {
		t.Fatal(err)
	}
	fr := &firstRelease{dir: dir, events: map[string][]string{}}

	evts, _ := filepath.Glob(filepath.Join(dir, "webhooks", "*.evt"))
	sort.Strings(evts) // named by sequence number
	for _, name := range evts {
		var ev struct{ ID, Body string }
		readJSON(t, name, &ev)
		var body struct {
			SessionID string `json:"session_id"`
		}
		if err := json.Unmarshal([]byte(ev.Body), &body); err != nil {
			t.Fatal(err)
		}
		fr.events[body.SessionID] = append(fr.events[body.SessionID], ev.ID)
		fr.total++
	}
	jobs, _ := filepath.Glob(filepath.Join(dir, "uploads", "*.job"))
	for _, name := range jobs {
		var rec struct {
			Job struct {
				ID, File, URL string
				Meta          struct {
					Route struct {
						SessionID string `json:"session_id"`
					}
				}
			}
			State string
			Acked bool
		}
		readJSON(t, name, &rec)
		r := fr.recording(rec.Job.ID, rec.Job.Meta.Route.SessionID, rec.Job.URL, filepath.Base(rec.Job.File))
		switch {
		case rec.State == "":
			fr.uploads = append(fr.uploads, r)
		case rec.State == "failed" && rec.Acked:
			fr.refused = append(fr.refused, r)
		default:
			t.Fatalf("the test data has a job in state %q (acked %v): add what it expects", rec.State, rec.Acked)
		}
	}
	manifests, _ := filepath.Glob(filepath.Join(dir, "recordings", "*.json"))
	for _, name := range manifests {
		var m struct {
			ID       string `json:"recording_id"`
			File     string
			State    string
			Delivery struct {
				SessionID string `json:"session_id"`
				UploadURL string `json:"upload_url"`
			}
		}
		readJSON(t, name, &m)
		if m.State == "recording" {
			fr.cut = append(fr.cut, fr.recording(m.ID, m.Delivery.SessionID, m.Delivery.UploadURL, m.File))
		}
	}
	if len(fr.uploads) == 0 || len(fr.refused) == 0 || len(fr.cut) == 0 || fr.total == 0 {
		t.Fatalf("the test data lacks a queued upload, a refused one, a cut recording or queued events: %+v", fr)
	}
	return fr
}

func (fr *firstRelease) recording(id, session, rawURL, file string) firstRecording {
	u, _ := url.Parse(rawURL)
	r := firstRecording{id: id, session: session, urlPath: u.Path, file: filepath.Join(fr.dir, "recordings", file)}
	if data, err := os.ReadFile(r.file); err == nil {
		sum := sha256.Sum256(data)
		r.sha256 = hex.EncodeToString(sum[:])
	}
	return r
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

const upgradeLogLine = "upgrade: the first release's queued work is now in the ledger"

// TestFirstReleaseDataDirIsDelivered starts today's rtmrec on a data
// directory of the first release: every queued upload arrives with its
// bytes, the cut recording is repaired and uploaded, every queued event is
// delivered once, in order and under its id, followed by what the
// recordings report now, with their original ids.
func TestFirstReleaseDataDirIsDelivered(t *testing.T) {
	target := newUploadTarget(t)
	hooks := newHookReceiver(t, "whsec-integration-test-secret")
	fr := copyFirstRelease(t, target, hooks)
	srv := runRTMRec(t, fr.dir, "-allow-private-urls", "-webhook-secret", "whsec-integration-test-secret")
	checkFirstReleaseDelivered(t, fr, target, hooks)
	if n := strings.Count(srv.log(), upgradeLogLine); n != 1 {
		t.Errorf("the upgrade logged its summary %d times, want once", n)
	}
	if code := srv.terminate(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	checkNothingMore(t, fr, target, hooks)
}

// TestFirstReleaseUpgradeSurvivesKills kills the server (SIGKILL, through
// the RTMREC_TEST_UPGRADE_KILL_AFTER seam) in the middle of the upgrade,
// right after a hand-over is committed and before its old file is
// removed, three times at different places; the next start still delivers
// everything once.
func TestFirstReleaseUpgradeSurvivesKills(t *testing.T) {
	target := newUploadTarget(t)
	hooks := newHookReceiver(t, "whsec-integration-test-secret")
	fr := copyFirstRelease(t, target, hooks)
	// Hand-overs come in this order: the events, the upload jobs, the
	// cut recordings. Each start counts only its own.
	jobs := len(fr.uploads) + len(fr.refused)
	manifests := jobs + len(fr.cut)
	left := func() [3]int {
		var n [3]int
		for i, pattern := range []string{"webhooks/*.evt", "uploads/*.job", "recordings/*.json"} {
			names, _ := filepath.Glob(filepath.Join(fr.dir, pattern))
			n[i] = len(names)
		}
		return n
	}
	for _, kill := range []struct {
		after int
		left  [3]int // events, jobs and manifests still there: the last commit's too
	}{
		{1, [3]int{fr.total, jobs, manifests}}, // the first event
		{fr.total, [3]int{0, jobs, manifests}}, // the other events, then the first job
		{jobs, [3]int{0, 0, manifests - jobs}}, // the other jobs, then the first cut recording
	} {
		after := kill.after
		t.Setenv("RTMREC_TEST_UPGRADE_KILL_AFTER", strconv.Itoa(after))
		p, err := tryRunRTMRec(t, fr.dir, "-allow-private-urls", "-webhook-secret", "whsec-integration-test-secret")
		if err == nil || p == nil || p.cmd.ProcessState == nil {
			t.Fatalf("rtmrec did not stop after %d hand-overs: %v", after, err)
		}
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("rtmrec exited without the kill after %d hand-overs: %v\n%s", after, err, p.log())
		}
		if got := left(); got != kill.left {
			t.Fatalf("after the kill at hand-over %d: %v events, jobs and manifests left, want %v", after, got, kill.left)
		}
	}
	t.Setenv("RTMREC_TEST_UPGRADE_KILL_AFTER", "")
	if target.count() != 0 || len(hooks.all()) != 0 {
		t.Fatal("something was delivered before the upgrade was over")
	}
	srv := runRTMRec(t, fr.dir, "-allow-private-urls", "-webhook-secret", "whsec-integration-test-secret")
	checkFirstReleaseDelivered(t, fr, target, hooks)
	srv.terminate(30 * time.Second)
	checkNothingMore(t, fr, target, hooks)
}

// checkFirstReleaseDelivered waits for everything the first release left
// to arrive, and checks it arrived once, in order, with the right bytes.
func checkFirstReleaseDelivered(t *testing.T, fr *firstRelease, target *uploadTarget, hooks *hookReceiver) {
	t.Helper()
	isStopped := func(e hookEvent) bool { return e.Type == "recording_state" && e.state() == "STOPPED" }
	want := map[string][]string{} // what each session hears after its old events
	for _, r := range fr.uploads {
		up := target.wait(r.urlPath)
		if up.SHA256 != r.sha256 {
			t.Errorf("upload of %s: sha256 %s, want the file's %s", r.id, up.SHA256, r.sha256)
		}
		want[r.session] = append(want[r.session], "recording_state:STOPPED:"+r.id)
	}
	for _, r := range fr.cut {
		up := target.wait(r.urlPath)
		if p := ffprobe(t, up.File); p.duration() < 1.5 || !strings.Contains(p.codecs(), "audio/opus") {
			t.Errorf("repaired recording %s: %s, %.2f s", r.id, p.codecs(), p.duration())
		}
		want[r.session] = append(want[r.session], "session_state:TERMINATED/TERM_BY_ERROR:", "recording_state:STOPPED:"+r.id)
	}
	for _, r := range fr.refused {
		if _, ok := want[r.session]; !ok {
			want[r.session] = nil // its queued events, nothing new
		}
	}
	for session, tail := range want {
		n := len(fr.events[session]) + len(tail)
		var got []hookEvent
		if len(tail) > 0 {
			got = hooks.waitFor(session, isStopped)
		}
		for deadline := time.Now().Add(30 * time.Second); len(got) < n && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			got = hooks.waitFor(session, func(hookEvent) bool { return true })
		}
		if len(got) != n {
			t.Fatalf("session %s: %d events (%v), want %d: its %d queued ones and %v", session, len(got), states(got), n, len(fr.events[session]), tail)
		}
		var ids, rest []string
		for i, e := range got {
			if i < len(fr.events[session]) {
				ids = append(ids, e.ID)
				continue
			}
			var d struct {
				ID string `json:"recording_id"`
			}
			_ = json.Unmarshal(e.Data, &d)
			rest = append(rest, e.Type+":"+e.state()+":"+d.ID)
			if e.ClientID != "agent-7" {
				t.Errorf("session %s: %s without the original client id: %+v", session, e.Type, e)
			}
		}
		if !slices.Equal(ids, fr.events[session]) {
			t.Errorf("session %s: first events %v, want the queued ones in order %v", session, ids, fr.events[session])
		}
		if !slices.Equal(rest, tail) {
			t.Errorf("session %s: then %v, want %v", session, rest, tail)
		}
	}
	for _, r := range fr.refused {
		if _, ok := target.get(r.urlPath); ok {
			t.Errorf("the refused upload of %s was tried again", r.id)
		}
		if _, err := os.Stat(r.file); err != nil {
			t.Errorf("the refused recording's file is not kept in place: %v", err)
		}
	}
	seen := map[string]bool{}
	for _, e := range hooks.all() {
		if seen[e.ID] {
			t.Errorf("event %s (%s %s) delivered twice", e.ID, e.Type, e.state())
		}
		seen[e.ID] = true
	}
	if n, want := target.count(), len(fr.uploads)+len(fr.cut); n != want {
		t.Errorf("%d uploads, want %d", n, want)
	}
}

// checkNothingMore runs `rtmrec recover` on the directory: it finds
// nothing left to hand over or deliver.
func checkNothingMore(t *testing.T, fr *firstRelease, target *uploadTarget, hooks *hookReceiver) {
	t.Helper()
	puts, events := target.count(), len(hooks.all())
	out, err := exec.Command(rtmrecBinary(t), "recover", "-data-dir", fr.dir, "-allow-private-urls", "-webhook-secret", "whsec-integration-test-secret").CombinedOutput()
	if err != nil {
		t.Fatalf("rtmrec recover: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "upgrade:") {
		t.Errorf("the second start upgraded again:\n%s", out)
	}
	if target.count() != puts || len(hooks.all()) != events {
		t.Errorf("the second start delivered more: %d uploads (was %d), %d events (was %d)", target.count(), puts, len(hooks.all()), events)
	}
	for _, old := range []string{"uploads", "webhooks"} {
		if _, err := os.Stat(filepath.Join(fr.dir, old)); err == nil {
			left, _ := os.ReadDir(filepath.Join(fr.dir, old))
			t.Errorf("%s/ is still there after the upgrade: %v", old, left)
		}
	}
}

// all returns every event received so far, in arrival order.
func (h *hookReceiver) all() []hookEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.events)
}
