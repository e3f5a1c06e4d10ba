package delivery

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/evidence"
	"github.com/rtmrec/rtmrec/internal/ledger"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
)

// TestOutcomes: a recording is uploaded and reported STOPPED, or reported
// FAILED with a reason from the documented vocabulary, file kept.
func TestOutcomes(t *testing.T) {
	tests := []struct {
		name   string
		script []string
		state  rtm.RecordingState
		reason string // a regular expression; "" for none
		puts   int
	}{
		{"200", []string{"200"}, rtm.RecordingStopped, "", 1},
		{"500 then 200", []string{"500", "500", "200"}, rtm.RecordingStopped, "", 3},
		{"403 is refused at once", []string{"403"}, rtm.RecordingFailed, `^upload_refused: HTTP 403 Forbidden$`, 1},
		{"always 500 gives up", []string{"500"}, rtm.RecordingFailed, `^upload_unreachable: HTTP 500 Internal Server Error after 5 attempts over \d+s$`, 5},
		{"nobody listens", []string{"closed"}, rtm.RecordingFailed, `^upload_unreachable: connection refused after 5 attempts over \d+s$`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg, h := newTarget(t, tt.script...), newHooks(t)
			if tt.script[0] == "closed" {
				tg.srv.Close()
			}
			dir := t.TempDir()
			e := start(t, dir, nil)
			rec := record(t, filepath.Join(dir, "recordings"), "r1", time.Second)
			e.begin(rec, route(tg, h, "r1"))
			e.finish(rec)
			final := h.waitFinal(t, "r1")
			if got := strings.Join(h.states("r1"), ","); got != "STARTED,"+string(tt.state) {
				t.Fatalf("events %s, want STARTED,%s", got, tt.state)
			}
			if len(tg.received()) != tt.puts {
				t.Errorf("%d uploads, want %d", len(tg.received()), tt.puts)
			}
			d := final.Data
			if d.DurationMS == nil || *d.DurationMS < 900 || d.SizeBytes == nil || d.Format != "ogg" {
				t.Errorf("final event lacks the recording's facts: %+v", d)
			}
			if tt.reason == "" {
				if d.Reason != "" {
					t.Errorf("reason on success: %q", d.Reason)
				}
				last := tg.received()[len(tg.received())-1]
				if int64(len(last.body)) != *d.SizeBytes {
					t.Errorf("uploaded %d bytes, the recording has %d", len(last.body), *d.SizeBytes)
				}
				waitFor(t, "the uploaded file and its journey to go", func() bool {
					return !exists(rec.Path()) && e.journeyCount() == 0
				})
			} else {
				if !regexp.MustCompile(tt.reason).MatchString(d.Reason) {
					t.Errorf("reason %q, want %s", d.Reason, tt.reason)
				}
				noLeak(t, d.Reason)
				if !exists(rec.Path()) {
					t.Error("the file of a failed recording was removed")
				}
			}
			select {
			case m := <-e.announce:
				if m.Type != rtm.TypeRecordingState || !bytes.Contains(m.Data, []byte(tt.state)) {
					t.Errorf("announced %s", m.Data)
				}
			case <-time.After(time.Second):
				t.Error("the outcome was not announced")
			}
		})
	}
}

// TestResumeEachState: every journey an earlier process left is taken up
// from its state, each on its own, and one that cannot be resumed ends
// FAILED with a reason and its original ids without holding up the
// others.
func TestResumeEachState(t *testing.T) {
	tg, h := newTarget(t, "200"), newHooks(t)
	dir := t.TempDir()
	recs := filepath.Join(dir, "recordings")
	e := start(t, dir, func(c *Config) { c.Retention = time.Hour })

	// Cut off mid-recording: a real file, never stopped.
	cut := record(t, recs, "cut", 2*time.Second)
	e.begin(cut, route(tg, h, "cut"))
	e.journeys.Paused("cut", true, []recorder.PauseSpan{{StartMS: 500, EndMS: 500, StartedAt: time.Now()}}, nil)
	e.journeys.Audit("cut", recorder.AuditEvent{Time: time.Now(), Kind: "supervisor_joined", SessionID: "boss-1", Identity: "boss"})
	// Killed before its file held anything playable.
	young := record(t, recs, "young", 0)
	e.begin(young, route(tg, h, "young"))
	// Its file is gone.
	gone := record(t, recs, "gone", time.Second)
	e.begin(gone, route(tg, h, "gone"))
	// Finished, not yet uploaded.
	done := record(t, recs, "finished", time.Second)
	e.begin(done, route(tg, h, "finished"))

	// The process dies: files as the disk has them, the ledger as committed.
	time.Sleep(1100 * time.Millisecond) // the writer's periodic sync
	youngBytes, _ := os.ReadFile(young.Path())
	cutBytes, _ := os.ReadFile(cut.Path())
	tg.setScript("500")
	e.finish(done) // its upload keeps failing until the restart
	waitFor(t, "a failed attempt", func() bool { return len(tg.received()) > 0 })
	e.stop()
	for _, r := range []*recorder.Recording{cut, young, gone} {
		_, _ = r.Stop()
	}
	_ = os.WriteFile(cut.Path(), cutBytes, 0o600)
	_ = os.WriteFile(young.Path(), youngBytes[:20], 0o600) // cut inside its first page
	_ = os.Remove(gone.Path())
	// A journey the ledger cannot read, and a media file no journey knows.
	l, err := ledger.Open(dir, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Update(func(tx *ledger.Tx) error {
		b, _ := ledger.Bucket(tx, bucketJourneys)
		return b.Put([]byte("garbled"), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	_ = os.WriteFile(filepath.Join(recs, "stray.ogg"), []byte("x"), 0o600)

	tg.setScript("200")
	e2 := start(t, dir, func(c *Config) { c.Retention = time.Hour })
	for id, want := range map[string]string{
		"cut":      "STARTED,PAUSED,STOPPED",
		"young":    "STARTED,FAILED",
		"gone":     "STARTED,FAILED",
		"finished": "STARTED,STOPPED",
	} {
		final := h.waitFinal(t, id)
		if got := strings.Join(h.states(id), ","); got != want {
			t.Errorf("%s: %s, want %s", id, got, want)
		}
		if final.SessionID != "s-"+id {
			t.Errorf("%s: reported for session %q, not its own", id, final.SessionID)
		}
	}
	reasons := map[string]string{}
	for _, ev := range h.list() {
		reasons[ev.Data.RecordingID] = ev.Data.Reason
	}
	if !strings.HasPrefix(reasons["young"], "recording_unrepairable: ") || !strings.HasPrefix(reasons["gone"], "recording_missing: ") {
		t.Errorf("reasons %q", reasons)
	}
	noLeak(t, reasons["young"])
	noLeak(t, reasons["gone"])
	// The repaired recording kept its pause and its supervisor.
	var j journey
	_ = e2.ledger.View(func(tx *ledger.Tx) error {
		return json.Unmarshal(tx.Bucket(bucketJourneys).Get([]byte("cut")), &j)
	})
	if !j.Repaired || len(j.Manifest.Pauses) != 1 || len(j.Manifest.Audit) != 1 || j.Manifest.Pauses[0].EndedAt == nil {
		t.Errorf("repaired journey %+v, manifest %+v", j, j.Manifest)
	}
	if j.Manifest.DurationMS < 1400 {
		t.Errorf("repaired recording is %d ms; 2 s were written and 1.5 s released to the file", j.Manifest.DurationMS)
	}
	if !exists(filepath.Join(recs, "orphaned", "stray.ogg")) {
		t.Error("the stray file was not moved aside")
	}
	if v := e2.journeys.m.corrupt; testutilValue(v) != 1 {
		t.Errorf("unreadable journeys counted %v", testutilValue(v))
	}
}

// TestRetention: an uploaded file and its journey stay for the retention,
// then go.
func TestRetention(t *testing.T) {
	tg, h := newTarget(t, "200"), newHooks(t)
	dir := t.TempDir()
	e := start(t, dir, func(c *Config) { c.Retention = 300 * time.Millisecond })
	rec := record(t, filepath.Join(dir, "recordings"), "r", time.Second)
	e.begin(rec, route(tg, h, "r"))
	e.finish(rec)
	h.waitFinal(t, "r")
	if !exists(rec.Path()) || e.journeyCount() != 1 {
		t.Fatal("file or journey gone before the retention")
	}
	waitFor(t, "the retention to pass", func() bool { return !exists(rec.Path()) && e.journeyCount() == 0 })
}

// TestDrainFinishesUploads: a drain uploads and reports what it can before
// its deadline, and leaves the rest for the next start.
func TestDrainFinishesUploads(t *testing.T) {
	tg, h := newTarget(t, "500", "200"), newHooks(t)
	dir := t.TempDir()
	e := start(t, dir, func(c *Config) { c.BaseBackoff, c.MaxBackoff = 50*time.Millisecond, 50*time.Millisecond })
	rec := record(t, filepath.Join(dir, "recordings"), "d", time.Second)
	e.begin(rec, route(tg, h, "d"))
	e.finish(rec)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	e.journeys.Drain(ctx)
	cancel()
	if got := len(tg.received()); got != 2 {
		t.Fatalf("%d attempts during the drain, want the retry too", got)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	e.outbox.Drain(ctx)
	cancel()
	if got := strings.Join(h.states("d"), ","); got != "STARTED,STOPPED" {
		t.Fatalf("events after the drain: %s", got)
	}

	// A retry after the deadline is left for the next start.
	tg2, h2 := newTarget(t, "503-retry-after-2", "200"), newHooks(t)
	dir2 := t.TempDir()
	e2 := start(t, dir2, nil)
	rec2 := record(t, filepath.Join(dir2, "recordings"), "late", time.Second)
	e2.begin(rec2, route(tg2, h2, "late"))
	e2.finish(rec2)
	waitFor(t, "the first attempt", func() bool { return len(tg2.received()) == 1 })
	ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
	begun := time.Now()
	e2.journeys.Drain(ctx)
	cancel()
	if time.Since(begun) > 200*time.Millisecond {
		t.Errorf("the drain waited %v for a retry due after its deadline", time.Since(begun))
	}
	e2.stop()
	start(t, dir2, nil)
	h2.waitFinal(t, "late")
	if got := strings.Join(h2.states("late"), ","); got != "STARTED,STOPPED" || len(tg2.received()) != 2 {
		t.Fatalf("after the restart: %s, %d uploads", got, len(tg2.received()))
	}
}

// The crash tests run the journeys in a child process (this test binary)
// and kill it with SIGKILL at the worst moments.
const crashEnv = "RTMREC_DELIVERY_CRASH_CHILD"

func TestCrashChild(t *testing.T) {
	mode := os.Getenv(crashEnv)
	if mode == "" {
		t.Skip("helper for TestCrash*")
	}
	dir := os.Getenv("CRASH_DIR")
	e := start(t, dir, func(c *Config) {
		if mode == "after-200" {
			c.Announce = func(string, rtm.Message) { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }
		}
	})
	if os.Getenv("CRASH_NEW") == "1" {
		rec := record(t, filepath.Join(dir, "recordings"), "crash", time.Second)
		r := Route{SessionID: "s", UploadURL: os.Getenv("CRASH_UPLOAD"), WebhookURL: os.Getenv("CRASH_HOOK"), OrderKey: "s"}
		e.begin(rec, r)
		e.finish(rec)
	}
	select {} // until killed
}

func runCrashChild(t *testing.T, mode, dir, uploadURL, hookURL string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+mode, "CRASH_DIR="+dir, "CRASH_NEW=1", "CRASH_UPLOAD="+uploadURL, "CRASH_HOOK="+hookURL)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// TestCrashMidUpload kills the process while the body is being sent; the
// next start uploads the whole file again and reports it once.
func TestCrashMidUpload(t *testing.T) {
	tg, h := newTarget(t, "stall", "200"), newHooks(t)
	dir := t.TempDir()
	cmd := runCrashChild(t, "mid-upload", dir, tg.srv.URL+"/crash.ogg", h.srv.URL)
	waitFor(t, "the child to start uploading", func() bool {
		tg.mu.Lock()
		defer tg.mu.Unlock()
		return tg.stalled > 0
	})
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	tg.setScript("200")
	start(t, dir, nil)
	final := h.waitFinal(t, "crash")
	if final.Data.State != rtm.RecordingStopped || len(tg.received()) != 1 {
		t.Fatalf("after the crash: %s, %d complete uploads", final.Data.State, len(tg.received()))
	}
	if got := int64(len(tg.received()[0].body)); got != *final.Data.SizeBytes {
		t.Fatalf("uploaded %d bytes of %d", got, *final.Data.SizeBytes)
	}
}

// TestCrashAfterUpload kills the process right after the target answered
// 200 and the outcome was committed: the next start does not upload again,
// and STOPPED is delivered once, under its one id.
func TestCrashAfterUpload(t *testing.T) {
	tg, h := newTarget(t, "200"), newHooks(t)
	dir := t.TempDir()
	cmd := runCrashChild(t, "after-200", dir, tg.srv.URL+"/crash.ogg", h.srv.URL)
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("child did not die by signal: %v", err)
	}
	start(t, dir, nil)
	h.waitFinal(t, "crash")
	time.Sleep(200 * time.Millisecond)
	if n := len(tg.received()); n != 1 {
		t.Fatalf("uploaded %d times", n)
	}
	ids := map[string]int{}
	for _, ev := range h.list() {
		if ev.Data.State == rtm.RecordingStopped {
			ids[ev.ID]++
		}
	}
	if len(ids) != 1 {
		t.Fatalf("STOPPED under %d ids: %v", len(ids), ids)
	}
}

// TestSignedManifestGoesWithTheFile: with an evidence key the manifest is
// signed once the file is final, sent to the manifest URL after the file,
// and carried in STOPPED with the evidence; it verifies against the file.
func TestSignedManifestGoesWithTheFile(t *testing.T) {
	tg, h := newTarget(t, "200"), newHooks(t)
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e := start(t, dir, func(c *Config) { c.EvidenceKey = key })
	rec := record(t, filepath.Join(dir, "recordings"), "m", time.Second)
	r := route(tg, h, "m")
	r.ManifestURL = tg.srv.URL + "/m.manifest.json?sig=topsecret"
	e.begin(rec, r)
	e.finish(rec)
	final := h.waitFinal(t, "m")
	puts := tg.received()
	if final.Data.State != rtm.RecordingStopped || len(puts) != 2 || puts[0].path != "/m.ogg" || puts[1].path != "/m.manifest.json" {
		t.Fatalf("%s with uploads %v", final.Data.State, puts)
	}
	if _, err := evidence.Verify(bytes.NewReader(puts[0].body), puts[1].body, pub); err != nil {
		t.Fatalf("the uploaded manifest does not verify the uploaded file: %v", err)
	}
	var stopped struct {
		SHA256   string          `json:"sha256"`
		Manifest json.RawMessage `json:"manifest"`
	}
	for _, ev := range h.rawList() {
		if bytes.Contains(ev, []byte(`"STOPPED"`)) {
			_ = json.Unmarshal(ev, &struct {
				Data *struct {
					SHA256   *string          `json:"sha256"`
					Manifest *json.RawMessage `json:"manifest"`
				} `json:"data"`
			}{Data: &struct {
				SHA256   *string          `json:"sha256"`
				Manifest *json.RawMessage `json:"manifest"`
			}{&stopped.SHA256, &stopped.Manifest}})
		}
	}
	if !bytes.Equal(stopped.Manifest, puts[1].body) || stopped.SHA256 == "" {
		t.Fatalf("STOPPED carries sha256 %q and a manifest of %d bytes", stopped.SHA256, len(stopped.Manifest))
	}
}

// TestProgress: a status page sees each step of a journey as it happens:
// recording, the attempts of an upload that is retrying with the next one
// due and the last reason, then the failure with its reason and the file
// kept where Progress says.
func TestProgress(t *testing.T) {
	tg, h := newTarget(t, "503-retry-after-2"), newHooks(t)
	dir := t.TempDir()
	e := start(t, dir, func(c *Config) { c.MaxAttempts = 2 })
	if _, ok, err := e.journeys.Progress("r1"); ok || err != nil {
		t.Fatalf("Progress of an unknown recording: ok %v, err %v", ok, err)
	}
	rec := record(t, filepath.Join(dir, "recordings"), "r1", time.Second)
	e.begin(rec, route(tg, h, "r1"))
	p, ok, err := e.journeys.Progress("r1")
	if !ok || err != nil || p.State != "recording" || p.SessionID != "s-r1" || p.Attempts != 0 {
		t.Fatalf("while recording: %+v, %v, %v", p, ok, err)
	}
	e.finish(rec)
	waitFor(t, "the first attempt to fail", func() bool {
		p, _, _ = e.journeys.Progress("r1")
		return p.Attempts == 1 && p.Reason != ""
	})
	if p.State != "finished" || p.MaxAttempts != 2 || p.LastStatus != 503 || !strings.Contains(p.Reason, "503") ||
		time.Until(p.NextAttempt) < time.Second || p.GiveUpAt.IsZero() {
		t.Errorf("after a 503 with Retry-After 2: %+v", p)
	}
	h.waitFinal(t, "r1")
	p, ok, err = e.journeys.Progress("r1")
	if !ok || err != nil || p.State != "failed" || p.Attempts != 2 || !strings.HasPrefix(p.Reason, "upload_unreachable: ") || !p.NextAttempt.IsZero() {
		t.Errorf("after the last attempt: %+v, %v, %v", p, ok, err)
	}
	if p.File != rec.Path() || !exists(p.File) {
		t.Errorf("Progress says the file is at %q; it is at %q", p.File, rec.Path())
	}
	noLeak(t, p.Reason)
}
