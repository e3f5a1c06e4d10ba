package upload

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestEnqueueIdempotent(t *testing.T) {
	rc := newReceiver(t, "200")
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.Retention = time.Hour // keep the file so a second Enqueue is possible
	h := start(t, cfg)
	file, _ := writeFile(t, t.TempDir(), 1000)
	job := Job{ID: "once", File: file, URL: rc.url("/once")}
	for range 3 {
		if err := h.q.Enqueue(job); err != nil {
			t.Fatal(err)
		}
	}
	if res := h.result(t); !res.OK {
		t.Fatalf("result %+v", res)
	}
	h.noResult(t, 100*time.Millisecond)
	h.stop()

	// A new process, the same job again: it already succeeded.
	h2 := start(t, cfg)
	if err := h2.q.Enqueue(job); err != nil {
		t.Fatal(err)
	}
	h2.noResult(t, 200*time.Millisecond)
	if n := len(rc.requests()); n != 1 {
		t.Fatalf("uploaded %d times", n)
	}
}

func TestRetention(t *testing.T) {
	rc := newReceiver(t, "200")
	cfg := testConfig(t, t.TempDir())
	cfg.Retention = 300 * time.Millisecond
	h := start(t, cfg)
	file, _ := writeFile(t, t.TempDir(), 1000)
	if err := h.q.Enqueue(Job{ID: "r", File: file, URL: rc.url("/r")}); err != nil {
		t.Fatal(err)
	}
	if res := h.result(t); !res.OK {
		t.Fatalf("result %+v", res)
	}
	if !exists(file) {
		t.Fatal("file deleted before retention ended")
	}
	deadline := time.Now().Add(5 * time.Second)
	for exists(file) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if exists(file) {
		t.Fatal("file not deleted after retention")
	}
}

func TestDeadline(t *testing.T) {
	rc := newReceiver(t, "500")
	cfg := testConfig(t, t.TempDir())
	cfg.MaxAttempts = 1000
	cfg.Deadline = 200 * time.Millisecond
	h := start(t, cfg)
	file, _ := writeFile(t, t.TempDir(), 1000)
	if err := h.q.Enqueue(Job{ID: "d", File: file, URL: rc.url("/d")}); err != nil {
		t.Fatal(err)
	}
	res := h.result(t)
	if res.OK || res.Attempts < 2 || res.Status != 500 {
		t.Fatalf("result %+v", res)
	}
	if !exists(file) {
		t.Fatal("file deleted after failure")
	}
}

// TestRestartResumes: a job that could not finish before Drain is picked
// up by the next queue on the same directory.
func TestRestartResumes(t *testing.T) {
	rc := newReceiver(t, "503")
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	cfg.MaxAttempts = 100
	cfg.BaseBackoff, cfg.MaxBackoff = 50*time.Millisecond, 50*time.Millisecond
	h := start(t, cfg)
	file, sum := writeFile(t, t.TempDir(), 1<<20)
	if err := h.q.Enqueue(Job{ID: "p", File: file, ContentType: "audio/ogg", URL: rc.url("/p")}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	h.q.Drain(ctx)
	cancel()
	h.stop()
	h.noResult(t, 0)
	before := len(rc.requests())
	if before == 0 {
		t.Fatal("no attempt before drain")
	}
	time.Sleep(100 * time.Millisecond)
	if n := len(rc.requests()); n != before {
		t.Fatalf("%d attempts after Drain", n-before)
	}

	rc.setScript("200")
	h2 := start(t, cfg)
	res := h2.result(t)
	if !res.OK || res.Attempts != before+1 {
		t.Fatalf("result %+v, want ok after %d attempts", res, before+1)
	}
	reqs := rc.requests()
	if last := reqs[len(reqs)-1]; last.sum != sum || last.contentType != "audio/ogg" {
		t.Fatal("resumed upload differs from the file")
	}
}

// TestResultRedelivered: a result decided but not acknowledged (crash
// inside OnResult) is reported again by the next Run, without uploading.
func TestResultRedelivered(t *testing.T) {
	dir := t.TempDir()
	file, _ := writeFile(t, t.TempDir(), 100)
	rc := newReceiver(t, "200")
	st := store{dir: dir}
	for _, r := range []*record{
		{Job: Job{ID: "ok", File: file, URL: rc.url("/ok")}, State: stateSucceeded, Attempts: 2, Status: 200, Size: 100, Decided: time.Now()},
		{Job: Job{ID: "bad", File: file, URL: rc.url("/bad")}, State: stateFailed, Attempts: 1, Status: 403, Reason: "no", Decided: time.Now()},
		{Job: Job{ID: "done", File: file, URL: rc.url("/done")}, State: stateFailed, Attempts: 1, Status: 403, Decided: time.Now(), Acked: true},
	} {
		if err := st.save(r); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(t, dir)
	cfg.Retention = time.Hour
	h := start(t, cfg)
	got := map[string]Result{}
	for range 2 {
		r := h.result(t)
		got[r.Job.ID] = r
	}
	h.noResult(t, 100*time.Millisecond)
	if r := got["ok"]; !r.OK || r.Attempts != 2 || r.Size != 100 {
		t.Errorf("ok: %+v", r)
	}
	if r := got["bad"]; r.OK || r.Status != 403 || r.Reason != "no" {
		t.Errorf("bad: %+v", r)
	}
	if len(rc.requests()) != 0 {
		t.Fatal("decided jobs uploaded again")
	}
	h.stop()
	if r := readRecord(t, dir, "ok"); !r.Acked {
		t.Fatal("redelivered result not acknowledged")
	}
}

// The crash tests run a queue in a child process (this test binary) and
// kill it with SIGKILL at the worst moments.
const crashEnv = "RTMREC_UPLOAD_CRASH_CHILD"

func TestCrashChild(t *testing.T) {
	mode := os.Getenv(crashEnv)
	if mode == "" {
		t.Skip("helper for TestCrash*")
	}
	cfg := testConfig(t, os.Getenv("CRASH_DIR"))
	if mode == "in-onresult" {
		cfg.OnResult = func(Result) { syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	}
	q, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Enqueue(Job{ID: "crash", File: os.Getenv("CRASH_FILE"), ContentType: "video/webm", URL: os.Getenv("CRASH_URL")}); err != nil {
		t.Fatal(err)
	}
	q.Run(context.Background()) // until killed
}

func runCrashChild(t *testing.T, mode, dir, file, url string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+mode, "CRASH_DIR="+dir, "CRASH_FILE="+file, "CRASH_URL="+url)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// TestCrashMidUpload kills the process while the body is being sent; the
// next queue uploads the whole file again.
func TestCrashMidUpload(t *testing.T) {
	rc := newReceiver(t, "stall", "200")
	dir := t.TempDir()
	file, sum := writeFile(t, t.TempDir(), 8<<20)
	cmd := runCrashChild(t, "mid-upload", dir, file, rc.url("/crash"))
	deadline := time.Now().Add(20 * time.Second)
	for len(rc.requests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(rc.requests()) == 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("child never started uploading")
	}
	cmd.Process.Kill() // SIGKILL
	cmd.Wait()

	h := start(t, testConfig(t, dir))
	res := h.result(t)
	if !res.OK || res.Attempts != 2 {
		t.Fatalf("result %+v, want ok at attempt 2 (the killed one counts)", res)
	}
	reqs := rc.requests()
	if len(reqs) != 2 || reqs[1].sum != sum {
		t.Fatalf("%d requests, last complete %v", len(reqs), len(reqs) > 1 && reqs[1].sum == sum)
	}
	h.stop()
	if exists(file) {
		t.Fatal("file kept after success")
	}
}

// TestCrashBeforeAck kills the process inside OnResult after a successful
// upload: the next queue reports the success again and does not upload.
func TestCrashBeforeAck(t *testing.T) {
	rc := newReceiver(t, "200")
	dir := t.TempDir()
	file, _ := writeFile(t, t.TempDir(), 1<<20)
	cmd := runCrashChild(t, "in-onresult", dir, file, rc.url("/crash"))
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("child did not die by signal: %v", err)
	}
	if n := len(rc.requests()); n != 1 {
		t.Fatalf("child made %d requests", n)
	}
	h := start(t, testConfig(t, dir))
	res := h.result(t)
	if !res.OK || res.Attempts != 1 || res.Job.ID != "crash" {
		t.Fatalf("result %+v", res)
	}
	if err := h.q.Enqueue(Job{ID: "crash", File: file, URL: rc.url("/crash")}); err != nil {
		t.Fatal(err)
	}
	h.noResult(t, 200*time.Millisecond)
	if n := len(rc.requests()); n != 1 {
		t.Fatalf("uploaded %d times in all", n)
	}
}
