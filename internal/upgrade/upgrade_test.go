package upgrade

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rtmrec/rtmrec/delivery"
	"github.com/rtmrec/rtmrec/internal/ledger"
	"github.com/rtmrec/rtmrec/internal/netguard"
	"github.com/rtmrec/rtmrec/upload"
	"github.com/rtmrec/rtmrec/webhook"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// firstReleaseData is a data directory written by the first release (see
// testdata/README.md).
const firstReleaseData = "testdata/firstrelease/data"

// copyData copies the first release's data directory into a temporary one.
func copyData(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	err := filepath.WalkDir(firstReleaseData, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(firstReleaseData, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, rel), 0o750)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, rel), data, 0o640)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// node is the ledger and outbox of a start on a data directory.
type node struct {
	t      *testing.T
	dir    string
	ledger *ledger.Ledger
	outbox *webhook.Outbox
}

func open(t *testing.T, dir string) *node {
	t.Helper()
	l, err := ledger.Open(dir, ledger.Options{})
	if err != nil {
		t.Fatal(err)
	}
	o, err := webhook.New(webhook.Config{Ledger: l, Guard: netguard.New(netguard.Config{AllowPrivate: true})})
	if err != nil {
		t.Fatal(errors.Join(err, l.Close()))
	}
	n := &node{t: t, dir: dir, ledger: l, outbox: o}
	t.Cleanup(n.close)
	return n
}

func (n *node) close() {
	if err := n.ledger.Close(); err != nil {
		n.t.Error(err)
	}
}

func (n *node) run(afterCommit func(int)) (Report, error) {
	return Run(Config{DataDir: n.dir, Ledger: n.ledger, Outbox: n.outbox, AfterCommit: afterCommit})
}

// queued lists the outbox's pending events (id and order key) in their
// delivery order, straight from the ledger.
func (n *node) queued() []string {
	n.t.Helper()
	var out []string
	err := n.ledger.View(func(tx *ledger.Tx) error {
		b := tx.Bucket([]byte("webhook_events"))
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var ev struct{ ID, Key, Body string }
			if err := json.Unmarshal(v, &ev); err != nil {
				return err
			}
			var body struct {
				Type string
				Data struct {
					State string
					ID    string `json:"recording_id"`
				}
			}
			_ = json.Unmarshal([]byte(ev.Body), &body)
			out = append(out, fmt.Sprintf("%s %s %s:%s %s", ev.Key, ev.ID, body.Type, body.Data.State, body.Data.ID))
			return nil
		})
	})
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

// journeys opens this release's journeys on the directory, as rtmrec does
// after the upgrade, and reads where each recording stands.
func (n *node) journeys(ids ...string) map[string]string {
	n.t.Helper()
	up, err := upload.New(upload.Config{Guard: netguard.New(netguard.Config{AllowPrivate: true})})
	if err != nil {
		n.t.Fatal(err)
	}
	j, err := delivery.New(delivery.Config{Ledger: n.ledger, Outbox: n.outbox, Uploader: up, Dir: filepath.Join(n.dir, dirRecordings)})
	if err != nil {
		n.t.Fatal(err)
	}
	out := map[string]string{}
	for _, id := range ids {
		p, ok, err := j.Progress(id)
		if err != nil {
			n.t.Fatal(err)
		}
		if ok {
			out[id] = fmt.Sprintf("%s attempts=%d reason=%q", p.State, p.Attempts, p.Reason)
		}
	}
	return out
}

// firstJobs reads the job files of dir by recording id and state.
func firstJobs(t *testing.T, dir string) map[string]*firstJob {
	t.Helper()
	jobs, bad, err := readDir(filepath.Join(dir, dirUploads), jobExt, all, parseJob)
	if err != nil || len(bad) > 0 {
		t.Fatal(err, bad)
	}
	out := map[string]*firstJob{}
	for _, j := range jobs {
		out[j.v.Job.ID] = j.v
	}
	return out
}

// addJob writes a job in the first release's format: a variant of a real
// one, in a state a kill -9 leaves (decided, not yet reported) that a
// running first release cannot be made to stop in on purpose.
func addJob(t *testing.T, dir string, base *firstJob, id string, edit func(m map[string]any)) {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(dir, dirUploads, jobName(base.Job.ID)))
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	job := m["job"].(map[string]any)
	file := filepath.Join(dir, dirRecordings, id+filepath.Ext(base.Job.File))
	media, err := os.ReadFile(filepath.Join(dir, dirRecordings, filepath.Base(base.Job.File)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, media, 0o640); err != nil {
		t.Fatal(err)
	}
	job["id"], job["file"] = id, file
	edit(m)
	b, _ = json.Marshal(m)
	if err := os.WriteFile(filepath.Join(dir, dirUploads, jobName(id)), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// addNeverQueued copies a finished recording's manifest and file under a
// new id, without its job: a recording the first release finished but did
// not queue.
func addNeverQueued(t *testing.T, dir, id string) {
	t.Helper()
	ms, _, err := readDir(filepath.Join(dir, dirRecordings), manifestExt, all, parseManifest)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.v.State != "finished" {
			continue
		}
		b, _ := os.ReadFile(m.path)
		var raw map[string]any
		if err := json.Unmarshal(b, &raw); err != nil {
			t.Fatal(err)
		}
		media, err := os.ReadFile(filepath.Join(dir, dirRecordings, m.v.File))
		if err != nil {
			t.Fatal(err)
		}
		file := id + filepath.Ext(m.v.File)
		raw["recording_id"], raw["file"] = id, file
		b, _ = json.Marshal(raw)
		if err := os.WriteFile(filepath.Join(dir, dirRecordings, file), media, 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dirRecordings, id+manifestExt), b, 0o640); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatal("the test data has no finished recording")
}

// addDeadLetter adds a dead letter as the first release kept them: a real
// event, with its last error, in webhooks/dead.
func addDeadLetter(t *testing.T, dir string) (id string) {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, dirWebhooks, "*"+eventExt))
	if len(names) == 0 {
		t.Fatal("the test data has no queued event")
	}
	b, _ := os.ReadFile(names[0])
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	id = "evt_DEADLETTEROFTHEFIRSTRELEASE"
	raw["body"] = strings.Replace(raw["body"].(string), raw["id"].(string), id, 1)
	raw["id"], raw["seq"], raw["last_error"] = id, 99999, "receiver answered 500 Internal Server Error"
	b, _ = json.Marshal(raw)
	dead := filepath.Join(dir, dirWebhooks, dirDead)
	if err := os.MkdirAll(dead, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dead, "00000000000000099999.evt"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return id
}

// variants adds to dir the states the real data lacks, and returns their
// ids: uploads succeeded and failed but not reported, succeeded and
// reported with the file gone, and a finished recording never queued. It
// also adds a dead letter.
func variants(t *testing.T, dir string) (stopped, failed, gone, unqueued string) {
	t.Helper()
	var pending *firstJob
	for _, j := range firstJobs(t, dir) {
		if j.State == "" {
			pending = j
		}
	}
	if pending == nil {
		t.Fatal("the test data has no pending upload")
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	stopped, failed, gone = "rec_decided_succeeded", "rec_decided_failed", "rec_done"
	addJob(t, dir, pending, stopped, func(m map[string]any) {
		m["state"], m["decided"], m["status"], m["reason"] = "succeeded", now, 200, ""
	})
	addJob(t, dir, pending, failed, func(m map[string]any) {
		m["state"], m["decided"], m["status"], m["reason"] = "failed", now, 403, "target answered 403 Forbidden"
	})
	addJob(t, dir, pending, gone, func(m map[string]any) {
		m["state"], m["decided"], m["status"], m["acked"], m["file_deleted"] = "succeeded", now, 200, true, true
	})
	if err := os.Remove(filepath.Join(dir, dirRecordings, gone+".ogg")); err != nil {
		t.Fatal(err)
	}
	unqueued = "rec_never_queued"
	addNeverQueued(t, dir, unqueued)
	addDeadLetter(t, dir)
	return stopped, failed, gone, unqueued
}

// TestRunHandsEverythingOver runs the upgrade on the first release's data
// directory (plus the decided states a kill leaves): every queued event is
// in the outbox in its order and under its id, every recording has its
// journey, the decided ones that were never reported have their STOPPED or
// FAILED queued behind their session's events, the cut recording's session
// its TERMINATED; the old files are gone; a second run does nothing.
func TestRunHandsEverythingOver(t *testing.T) {
	dir := copyData(t)
	stopped, failed, gone, unqueued := variants(t, dir)
	jobs := firstJobs(t, dir)
	evs, _, _ := readDir(filepath.Join(dir, dirWebhooks), eventExt, all, parseEvent)
	ms, _, _ := readDir(filepath.Join(dir, dirRecordings), manifestExt, all, parseManifest)
	var cut []*firstManifest
	for _, m := range ms {
		if m.v.State == "recording" {
			cut = append(cut, m.v)
		}
	}
	if len(cut) == 0 {
		t.Fatal("the test data has no recording cut off by the kill")
	}

	n := open(t, dir)
	rep, err := n.run(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Report{Events: len(evs), DeadLetters: 1, Uploads: 1, Outcomes: 4, Repairs: len(cut)} // the refused upload and three variants
	if rep != want {
		t.Fatalf("report %+v, want %+v", rep, want)
	}

	var wantQueue []string
	for _, e := range evs {
		var body struct {
			Type string
			Data struct {
				State string
				ID    string `json:"recording_id"`
			}
		}
		if err := json.Unmarshal([]byte(e.v.Body), &body); err != nil {
			t.Fatal(err)
		}
		wantQueue = append(wantQueue, fmt.Sprintf("%s %s %s:%s %s", e.v.Key, e.v.ID, body.Type, body.Data.State, body.Data.ID))
	}
	got := n.queued()
	if len(got) < len(wantQueue) || !slices.Equal(got[:len(wantQueue)], wantQueue) {
		t.Fatalf("outbox starts with\n%s\nwant the first release's queue\n%s", strings.Join(got, "\n"), strings.Join(wantQueue, "\n"))
	}
	var tail []string
	for _, e := range got[len(wantQueue):] {
		f := strings.Fields(e)
		tail = append(tail, f[2]+" "+strings.Join(f[3:], ""))
	}
	wantTail := []string{"recording_state:STOPPED " + stopped, "recording_state:FAILED " + failed, "recording_state:FAILED " + unqueued, "session_state:TERMINATED "}
	slices.Sort(tail)
	slices.Sort(wantTail)
	if !slices.Equal(tail, wantTail) {
		t.Fatalf("then %q, want %q", tail, wantTail)
	}

	ids := []string{stopped, failed, gone, unqueued, cut[0].RecordingID}
	for id := range jobs {
		ids = append(ids, id)
	}
	states := n.journeys(ids...)
	for id, j := range jobs {
		var want string
		switch {
		case id == gone:
			want = "" // nothing left to do: no journey
		case id == stopped:
			want = fmt.Sprintf("uploaded attempts=%d", j.Attempts)
		case id == failed:
			want = fmt.Sprintf("failed attempts=%d reason=%q", j.Attempts, "upload_refused: target answered 403 Forbidden")
		case j.State == "":
			want = fmt.Sprintf("finished attempts=%d", j.Attempts)
		case j.State == "failed":
			want = fmt.Sprintf("failed attempts=%d reason=%q", j.Attempts, failureReason(j.Reason))
		}
		if got := states[id]; !strings.HasPrefix(got, want) || (want == "" && got != "") {
			t.Errorf("journey of %s (first release: %q, acked %v): %q, want %q", id, j.State, j.Acked, got, want)
		}
	}
	if got, want := states[unqueued], fmt.Sprintf("failed attempts=0 reason=%q", reasonNeverQueued); got != want {
		t.Errorf("journey of the recording never queued: %q, want %q", got, want)
	}
	if got := states[cut[0].RecordingID]; !strings.HasPrefix(got, "recording ") {
		t.Errorf("journey of the cut recording: %q, want it waiting for its repair", got)
	}
	// The journeys know every media file: none was moved aside.
	if orphans, _ := os.ReadDir(filepath.Join(dir, dirRecordings, "orphaned")); len(orphans) > 0 {
		t.Errorf("media files moved aside: %v", orphans)
	}
	for _, old := range []string{dirUploads, dirWebhooks} {
		if _, err := os.Stat(filepath.Join(dir, old)); !os.IsNotExist(err) {
			t.Errorf("%s/ is still there: %v", old, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, dirRecordings, "*.json")); len(left) > 0 {
		t.Errorf("manifests left: %v", left)
	}

	dead, err := n.outbox.DeadLetters()
	if err != nil || len(dead) != 1 || dead[0].ID != "evt_DEADLETTEROFTHEFIRSTRELEASE" || !dead[0].Queueable ||
		dead[0].LastError != "receiver answered 500 Internal Server Error" {
		t.Fatalf("dead letters %+v, %v: want the first release's, replayable", dead, err)
	}

	before := n.queued()
	rep, err = n.run(nil)
	if err != nil || !rep.nothing() {
		t.Fatalf("second run: %+v, %v", rep, err)
	}
	if after := n.queued(); !slices.Equal(after, before) {
		t.Fatalf("second run changed the outbox:\n%v\n%v", before, after)
	}
}

// errKilled stands for a kill -9 in AfterCommit.
type errKilled struct{}

// TestRunSurvivesAKillAfterEachCommit stops the upgrade after its k-th
// commit, before it removes the old file, for every k, and runs it again
// on the same directory: the outbox and the journeys end up exactly as
// after a run that was never interrupted.
func TestRunSurvivesAKillAfterEachCommit(t *testing.T) {
	clean := copyData(t)
	variants(t, clean)
	n := open(t, clean)
	var total int // commits
	if _, err := n.run(func(i int) { total = i }); err != nil {
		t.Fatal(err)
	}
	wantQueue := n.queued()
	n.close()

	for k := 1; k <= total; k++ {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			dir := copyData(t)
			variants(t, dir)
			n := open(t, dir)
			func() {
				defer func() {
					if r := recover(); r != (errKilled{}) {
						t.Fatalf("the run was not stopped after commit %d: %v", k, r)
					}
				}()
				_, _ = n.run(func(i int) {
					if i == k {
						panic(errKilled{})
					}
				})
			}()
			n.close()
			n = open(t, dir)
			if _, err := n.run(nil); err != nil {
				t.Fatal(err)
			}
			if got := n.queued(); !slices.Equal(got, wantQueue) {
				t.Fatalf("outbox after a kill at commit %d:\n%s\nwant\n%s", k, strings.Join(got, "\n"), strings.Join(wantQueue, "\n"))
			}
			if left, _ := filepath.Glob(filepath.Join(dir, "*", "*.job")); len(left) > 0 {
				t.Fatalf("jobs left: %v", left)
			}
			if dead, err := n.outbox.DeadLetters(); err != nil || len(dead) != 1 {
				t.Fatalf("dead letters %+v, %v: want the first release's one", dead, err)
			}
		})
	}
}

// TestRunSetsUnreadableFilesAside: a torn job, event and manifest are set
// aside and logged; everything else is handed over; the directories that
// hold them stay.
func TestRunSetsUnreadableFilesAside(t *testing.T) {
	dir := copyData(t)
	for _, f := range []string{
		filepath.Join(dirUploads, jobName("rec_torn")),
		filepath.Join(dirWebhooks, "00000000000000000999.evt"),
		filepath.Join(dirRecordings, "rec_torn.json"),
	} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(`{"job":{"id":"rec_t`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n := open(t, dir)
	rep, err := n.run(nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SetAside != 3 || rep.Events == 0 || rep.Uploads == 0 || rep.Repairs == 0 {
		t.Fatalf("report %+v", rep)
	}
	for _, f := range []string{
		filepath.Join(dirUploads, jobName("rec_torn")+asideExt),
		filepath.Join(dirWebhooks, "00000000000000000999.evt"+asideExt),
		filepath.Join(dirRecordings, "rec_torn.json"+asideExt),
	} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("not kept aside: %v", err)
		}
	}
	if rep, err := n.run(nil); err != nil || !rep.nothing() {
		t.Fatalf("second run: %+v, %v", rep, err)
	}
}

// TestRunOnThisReleasesDirectory does nothing on a directory without the
// first release's files, this release's signed manifests included.
func TestRunOnThisReleasesDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, dirRecordings), 0o750); err != nil {
		t.Fatal(err)
	}
	signed := filepath.Join(dir, dirRecordings, "rec_1.manifest.json")
	if err := os.WriteFile(signed, []byte(`{"manifest":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	n := open(t, dir)
	if rep, err := n.run(nil); err != nil || !rep.nothing() {
		t.Fatalf("%+v, %v", rep, err)
	}
	if _, err := os.Stat(signed); err != nil {
		t.Fatal(err)
	}
}
