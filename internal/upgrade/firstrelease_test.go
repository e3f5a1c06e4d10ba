package upgrade

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rtmrec/rtmrec/delivery"
)

// The readers' inputs below are in the first release's formats (see
// ac102c5:upload/job.go, webhook/event.go, recorder/manifest.go);
// TestReadersReadTheFirstReleasesFiles reads the real files too.

const (
	goodJob = `{"job":{"id":"rec_1","file":"/data/recordings/rec_1.ogg","content_type":"audio/ogg",` +
		`"url":"http://127.0.0.1:1/rec/a.ogg?X-Amz-Signature=s",` +
		`"meta":{"route":{"session_id":"call-1","client_id":"agent-7","upload_url":"http://127.0.0.1:1/rec/a.ogg","webhook_url":"http://127.0.0.1:2/hooks"},"format":"ogg","duration_ms":2000,"size_bytes":1234}},` +
		`"created":"2026-11-30T10:00:00Z","attempts":3,"status":503,"reason":"target answered 503"}`
	goodEvent = `{"seq":7,"id":"evt_ABC","key":"0:/call-1","url":"http://127.0.0.1:2/hooks",` +
		`"body":"{\"id\":\"evt_ABC\",\"timestamp\":\"2026-11-30T10:00:00Z\",\"type\":\"session_state\"}","created":"2026-11-30T10:00:00Z","attempts":2}`
	goodManifest = `{"recording_id":"rec_2","session_id":"call-2","client_id":"agent-7","format":"webm","content_type":"video/webm",` +
		`"file":"rec_2.webm","pause_mode":"continuous","state":"recording","started_at":"2026-11-30T10:00:00Z",` +
		`"duration_ms":0,"size_bytes":0,"tracks":[],"pauses":[],"audit":[],"packets_dropped":0,` +
		`"delivery":{"session_id":"call-2","client_id":"agent-7","upload_url":"http://127.0.0.1:1/rec/b.webm","webhook_url":"http://127.0.0.1:2/hooks"}}`
)

// parseCase is one input of a reader: err names what its error must say
// ("" for none).
type parseCase struct {
	name, in, err string
}

// checkParse runs parse on every case; check looks at what it read.
func checkParse[T any](t *testing.T, tests []parseCase, parse func([]byte) (*T, error), check func(*T) bool) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := parse([]byte(tt.in))
			switch {
			case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("error %v, want one saying %q", err, tt.err)
			case tt.err == "" && err != nil:
				t.Fatal(err)
			case tt.err == "" && !check(v):
				t.Fatalf("read %+v", v)
			}
		})
	}
}

func TestParseJob(t *testing.T) {
	checkParse(t, []parseCase{
		{"pending", goodJob, ""},
		{"succeeded", strings.Replace(goodJob, `"attempts"`, `"state":"succeeded","acked":true,"attempts"`, 1), ""},
		{"failed", strings.Replace(goodJob, `"attempts"`, `"state":"failed","attempts"`, 1), ""},
		{"unknown state", strings.Replace(goodJob, `"attempts"`, `"state":"lost","attempts"`, 1), "unknown state"},
		{"torn", goodJob[:len(goodJob)/2], "not an upload job"},
		{"empty", "", "not an upload job"},
		{"not an object", `[1,2]`, "not an upload job"},
		{"no id", strings.Replace(goodJob, `"id":"rec_1"`, `"id":""`, 1), "no recording id"},
		{"no URL", strings.Replace(goodJob, `"url":"http://127.0.0.1:1/rec/a.ogg?X-Amz-Signature=s"`, `"url":""`, 1), "no upload URL"},
		{"no file", strings.Replace(goodJob, `"file":"/data/recordings/rec_1.ogg"`, `"file":""`, 1), "names no file"},
		{"no meta", strings.Replace(goodJob, `"meta"`, `"other"`, 1), "which session"},
		{"meta without session", strings.Replace(goodJob, `"session_id":"call-1"`, `"session_id":""`, 1), "which session"},
	}, parseJob, func(j *firstJob) bool {
		return j.Job.ID == "rec_1" && j.meta.Route.SessionID == "call-1" && j.meta.Route.ClientID == "agent-7" && j.Attempts == 3
	})
}

func TestParseEvent(t *testing.T) {
	checkParse(t, []parseCase{
		{"queued", goodEvent, ""},
		{"torn", goodEvent[:20], "not a webhook event"},
		{"empty", "", "not a webhook event"},
		{"no id", strings.Replace(goodEvent, `"id":"evt_ABC","key"`, `"id":"","key"`, 1), "no id"},
		{"no sequence", strings.Replace(goodEvent, `"seq":7`, `"seq":0`, 1), "no id"},
		{"no key", strings.Replace(goodEvent, `"key":"0:/call-1"`, `"key":""`, 1), "no id"},
		{"no URL", strings.Replace(goodEvent, `"url":"http://127.0.0.1:2/hooks"`, `"url":""`, 1), "no id"},
		{"wrong type", strings.Replace(goodEvent, `"seq":7`, `"seq":"7"`, 1), "not a webhook event"},
	}, parseEvent, func(ev *firstEvent) bool {
		return ev.Seq == 7 && ev.ID == "evt_ABC" && strings.HasPrefix(ev.Body, `{"id":"evt_ABC"`) && ev.Attempts == 2
	})
}

func TestParseManifest(t *testing.T) {
	checkParse(t, []parseCase{
		{"recording", goodManifest, ""},
		{"finished", strings.Replace(goodManifest, `"state":"recording"`, `"state":"finished"`, 1), ""},
		{"repaired", strings.Replace(goodManifest, `"state":"recording"`, `"state":"repaired"`, 1), ""},
		{"unknown state", strings.Replace(goodManifest, `"state":"recording"`, `"state":"odd"`, 1), "unknown state"},
		{"torn", goodManifest[:100], "not a recording manifest"},
		{"no id", strings.Replace(goodManifest, `"recording_id":"rec_2"`, `"recording_id":""`, 1), "names no recording"},
		{"file in another dir", strings.Replace(goodManifest, `"file":"rec_2.webm"`, `"file":"../rec_2.webm"`, 1), "no media file"},
		{"no delivery", strings.Replace(goodManifest, `"delivery"`, `"other"`, 1), "where the recording goes"},
		{"delivery not an object", strings.Replace(goodManifest, `"delivery":{`, `"delivery":7,"x":{`, 1), "where the recording goes"},
		{"no upload URL", strings.Replace(goodManifest, `"upload_url":"http://127.0.0.1:1/rec/b.webm",`, ``, 1), "where the recording goes"},
		// This release's signed manifests are never read (see readDir's keep),
		// but one that got there would not pass either.
		{"signed manifest", `{"manifest":{"recording_id":"rec_2"},"signature":"x"}`, "unknown state"},
	}, parseManifest, func(m *firstManifest) bool {
		return m.RecordingID == "rec_2" && m.route.route() == delivery.Route{
			SessionID: "call-2", ClientID: "agent-7", UploadURL: "http://127.0.0.1:1/rec/b.webm",
			WebhookURL: "http://127.0.0.1:2/hooks", OrderKey: "0:/call-2",
		}
	})
}

// TestReadersReadTheFirstReleasesFiles reads every file of the data
// directory the first release made: none is set aside.
func TestReadersReadTheFirstReleasesFiles(t *testing.T) {
	dir := copyData(t)
	jobs, bad, err := readDir(filepath.Join(dir, dirUploads), jobExt, all, parseJob)
	if err != nil || len(bad) > 0 || len(jobs) == 0 {
		t.Fatalf("jobs: %d read, set aside %v, error %v", len(jobs), bad, err)
	}
	evs, bad, err := readDir(filepath.Join(dir, dirWebhooks), eventExt, all, parseEvent)
	if err != nil || len(bad) > 0 || len(evs) == 0 {
		t.Fatalf("events: %d read, set aside %v, error %v", len(evs), bad, err)
	}
	ms, bad, err := readDir(filepath.Join(dir, dirRecordings), manifestExt, all, parseManifest)
	if err != nil || len(bad) > 0 || len(ms) == 0 {
		t.Fatalf("manifests: %d read, set aside %v, error %v", len(ms), bad, err)
	}
	for _, j := range jobs {
		if filepath.Base(j.path) != jobName(j.v.Job.ID) {
			t.Errorf("job file %s is not named for its recording %s", j.path, j.v.Job.ID)
		}
	}
}

// TestReadDirSetsUnreadableFilesAside: a torn or foreign file is renamed
// *.corrupt (kept) and reported; the others are still read, and the
// renamed file is not read again.
func TestReadDirSetsUnreadableFilesAside(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("00000000000000000001.evt", goodEvent)
	write("00000000000000000002.evt", goodEvent[:30])
	write("00000000000000000003.evt", "\x00\x01binary")
	write(".00000000000000000004.evt.tmp123", goodEvent) // an interrupted write: not read
	write("notes.txt", "not an event")
	good, bad, err := readDir(dir, eventExt, all, parseEvent)
	if err != nil || len(good) != 1 || len(bad) != 2 {
		t.Fatalf("read %d, set aside %v, error %v", len(good), bad, err)
	}
	for _, n := range []string{"00000000000000000002.evt", "00000000000000000003.evt"} {
		if _, err := os.Stat(filepath.Join(dir, n+asideExt)); err != nil {
			t.Errorf("%s not set aside: %v", n, err)
		}
	}
	good, bad, err = readDir(dir, eventExt, all, parseEvent)
	if err != nil || len(good) != 1 || len(bad) != 0 {
		t.Fatalf("second read: %d, set aside %v, error %v", len(good), bad, err)
	}
	if good, bad, err := readDir(filepath.Join(dir, "missing"), eventExt, all, parseEvent); err != nil || good != nil || bad != nil {
		t.Fatalf("a missing directory: %v %v %v", good, bad, err)
	}
}
