package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
)

// TestChaosKillNineLosesNothing kills the real binary with SIGKILL at
// random moments, over and over, on one data directory, while several
// sessions (one with video) record, stop and start recordings, upload to a
// sometimes slow target and report to a sometimes slow webhook. Each
// restart both recovers what the last process left and takes new
// sessions. At the end every recording that was STARTED must have ended
// STOPPED, with its file uploaded whole and decoding cleanly, or FAILED
// with a reason: zero lost. It also counts uploads repeated after a 200
// (a 200 the killed process never committed) and final events sent under
// two ids.
//
// RTMREC_CHAOS_TRIALS sets the number of kills (default 30; 200 or more
// for a long run).
func TestChaosKillNineLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts the server for a few minutes; not in -short mode")
	}
	ffmpeg := requireTool(t, "ffmpeg", "every uploaded recording is decoded")
	trials := 30
	if v, err := strconv.Atoi(os.Getenv("RTMREC_CHAOS_TRIALS")); err == nil && v > 0 {
		trials = v
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("RTMREC_CHAOS_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (RTMREC_CHAOS_SEED to replay), %d trials", seed, trials)
	rnd := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	store := newChaosStore(t)
	hooks := newChaosHooks(t)
	dataDir := t.TempDir()
	begun := time.Now()
	var startedOnWS sync.Map // recording id → true, as clients heard STARTED
	modes := []string{"recording", "after-stop", "mid-upload", "mid-webhook"}
	for trial := range trials {
		mode := modes[trial%len(modes)]
		store.setSlow(mode == "mid-upload")
		hooks.setSlow(mode == "mid-webhook")
		srv := runRTMRec(t, dataDir, "-allow-private-urls", "-log-level", "info")
		calls := chaosCalls(t, srv, trial, hooks.url())
		for _, c := range calls {
			c.record(store)
		}
		// Every call records; some stop and start again.
		run := time.Duration(200+rnd.IntN(1200)) * time.Millisecond
		time.Sleep(run)
		switch mode {
		case "recording":
			// One recording is younger than a second at the kill.
			calls[len(calls)-1].stop()
			calls[len(calls)-1].record(store)
			time.Sleep(time.Duration(rnd.IntN(800)) * time.Millisecond)
		case "after-stop":
			for _, c := range calls {
				c.stop()
			}
			time.Sleep(time.Duration(rnd.IntN(20)) * time.Millisecond)
		case "mid-upload", "mid-webhook":
			for _, c := range calls {
				c.stop()
			}
			time.Sleep(time.Duration(50+rnd.IntN(400)) * time.Millisecond)
		}
		srv.kill()
		for _, c := range calls {
			for _, id := range c.startedIDs() {
				startedOnWS.Store(id, true)
			}
			c.close()
		}
	}
	store.setSlow(false)
	hooks.setSlow(false)
	killed := time.Since(begun)

	// A last start finishes everything; then every recording is accounted for.
	srv := runRTMRec(t, dataDir, "-allow-private-urls", "-log-level", "info")
	started := hooks.recordingsStarted()
	deadline := time.Now().Add(90 * time.Second)
	for hooks.unfinished(started) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if code := srv.terminate(60 * time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	startedOnWS.Range(func(k, _ any) bool {
		if !started[k.(string)] {
			t.Errorf("recording %s: a client heard STARTED, the webhook never did", k)
		}
		return true
	})

	var stopped, failed, lost, repeated, twoIDs, undecodable int
	for id := range started {
		finals := hooks.finals(id)
		switch {
		case len(finals) == 0:
			lost++
			t.Errorf("recording %s (session %s) was STARTED and never STOPPED or FAILED", id, hooks.sessionOf(id))
			continue
		case len(finals) > 1:
			twoIDs++
			t.Errorf("recording %s reported under %d ids: %v", id, len(finals), finals)
		}
		final := finals[0]
		if final.State == rtm.RecordingFailed {
			failed++
			if final.Reason == "" {
				t.Errorf("recording %s FAILED without a reason", id)
			}
			t.Logf("recording %s FAILED: %s", id, final.Reason)
			continue
		}
		stopped++
		path := hooks.uploadPath(id)
		ok := store.oks(path)
		if len(ok) == 0 {
			t.Errorf("recording %s STOPPED but %s never got a 200", id, path)
			continue
		}
		if len(ok) > 1 {
			// The target answered 200 to a process that died before it
			// committed the outcome: the next start uploads again. Never after
			// STOPPED was sent, though.
			repeated += len(ok) - 1
			if at := hooks.firstFinalAt(id); ok[len(ok)-1].began.After(at) {
				t.Errorf("recording %s uploaded again after its STOPPED was delivered", id)
			}
		}
		last := ok[len(ok)-1]
		if final.SizeBytes == nil || last.size != *final.SizeBytes {
			t.Errorf("recording %s: uploaded %d bytes, STOPPED says %v", id, last.size, final.SizeBytes)
		}
		if out, err := exec.Command(ffmpeg, "-v", "error", "-xerror", "-i", last.file, "-enc_time_base", "-1", "-f", "null", "-").CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
			undecodable++
			t.Errorf("recording %s does not decode cleanly: %v %s (file %s)", id, err, out, last.file)
		}
	}
	t.Logf("chaos: %d trials in %.0f s; %d recordings started: %d stopped, %d failed, %d lost, %d uploads repeated after a 200, %d reported under two ids, %d undecodable",
		trials, killed.Seconds(), len(started), stopped, failed, lost, repeated, twoIDs, undecodable)
}

// chaosCall is one session of a trial.
type chaosCall struct {
	t     *testing.T
	c     *testclient.Client
	p     *testclient.Peer
	id    string
	trial int
	n     int // recordings asked for
}

func chaosCalls(t *testing.T, srv *rtmrecProcess, trial int, hookURL string) []*chaosCall {
	t.Helper()
	sources := [][]testclient.Source{{testclient.Tone}, {testclient.Tone, testclient.Camera}, {testclient.Tone}}
	calls := make([]*chaosCall, len(sources))
	var wg sync.WaitGroup
	for i, src := range sources {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, _, err := testclient.Dial(ctx, srv.wsURL(), nil)
			if err != nil {
				t.Error(err)
				return
			}
			api, err := testclient.NewAPI()
			if err != nil {
				t.Error(err)
				return
			}
			p, err := testclient.NewPeer(api, src...)
			if err != nil {
				t.Error(err)
				return
			}
			id := fmt.Sprintf("t%d-s%d", trial, i)
			if err := c.Start(ctx, p, "chaos", id, hookURL); err != nil {
				t.Error(err)
				return
			}
			if _, err := c.Wait(ctx, testclient.IsState(id, rtm.StateConnected)); err != nil {
				t.Error(err)
				return
			}
			p.Stream(context.Background())
			calls[i] = &chaosCall{t: t, c: c, p: p, id: id, trial: trial}
		})
	}
	wg.Wait()
	for _, c := range calls {
		if c == nil {
			t.FailNow()
		}
	}
	return calls
}

// record starts the session's next recording; the upload path names the
// session and the recording's number, which the webhook's STARTED order
// gives back.
func (c *chaosCall) record(store *chaosStore) {
	c.n++
	_ = c.c.Send(rtm.TypeRecordingStart, "chaos", c.id, rtm.RecordingStart{UploadURL: store.url(fmt.Sprintf("/%s/%d", c.id, c.n))})
}

func (c *chaosCall) stop() {
	_ = c.c.Send(rtm.TypeRecordingStop, "chaos", c.id, nil)
}

// startedIDs are the recordings this client heard STARTED for.
func (c *chaosCall) startedIDs() []string {
	var ids []string
	for _, m := range c.c.Messages() {
		if testclient.IsRecording(c.id, rtm.RecordingStarted)(m) {
			ids = append(ids, testclient.Data[rtm.RecordingStateData](m).RecordingID)
		}
	}
	return ids
}

func (c *chaosCall) close() {
	c.c.Close()
	c.p.Close()
}

// chaosStore is the upload target: it keeps every complete body, and can
// answer slowly so that kills land mid-upload.
type chaosStore struct {
	t    *testing.T
	srv  *httptest.Server
	dir  string
	mu   sync.Mutex
	slow bool
	got  map[string][]stored // by path, in order of the 200s
	seq  int
}

type stored struct {
	file  string
	size  int64
	sum   string
	began time.Time
}

func newChaosStore(t *testing.T) *chaosStore {
	dir := t.TempDir()
	if keep := os.Getenv("RTMREC_CHAOS_KEEP"); keep != "" {
		dir = keep // to look at a failing run's uploads
	}
	s := &chaosStore{t: t, dir: dir, got: map[string][]stored{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		began := time.Now()
		s.mu.Lock()
		slow := s.slow
		s.seq++
		name := filepath.Join(s.dir, strconv.Itoa(s.seq))
		s.mu.Unlock()
		f, err := os.Create(name)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		h := sha256.New()
		var n int64
		for {
			k, err := io.CopyN(io.MultiWriter(f, h), r.Body, 4<<10)
			n += k
			if err != nil {
				break
			}
			if slow {
				time.Sleep(20 * time.Millisecond)
			}
		}
		_ = f.Close()
		if n != r.ContentLength {
			return // the sender died mid-body
		}
		if slow {
			time.Sleep(300 * time.Millisecond)
		}
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		s.mu.Lock()
		s.got[r.URL.Path] = append(s.got[r.URL.Path], stored{file: name, size: n, sum: hex.EncodeToString(h.Sum(nil)), began: began})
		s.mu.Unlock()
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *chaosStore) url(path string) string { return s.srv.URL + path + "?X-Amz-Signature=chaos" }

func (s *chaosStore) setSlow(v bool) {
	s.mu.Lock()
	s.slow = v
	s.mu.Unlock()
}

// oks lists the bodies answered 200 for path.
func (s *chaosStore) oks(path string) []stored {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]stored(nil), s.got[path]...)
}

// chaosHooks is the webhook receiver: it keeps every event, and can answer
// slowly so that kills land mid-delivery.
type chaosHooks struct {
	srv    *httptest.Server
	mu     sync.Mutex
	slow   bool
	events []hookEvent
	at     []time.Time // arrival of each event
}

func newChaosHooks(t *testing.T) *chaosHooks {
	h := &chaosHooks{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev hookEvent
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		slow := h.slow
		h.mu.Unlock()
		if slow {
			time.Sleep(200 * time.Millisecond)
		}
		h.mu.Lock()
		h.events = append(h.events, ev)
		h.at = append(h.at, time.Now())
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// firstFinalAt is when the recording's first STOPPED or FAILED arrived.
func (h *chaosHooks) firstFinalAt(id string) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, e := range h.events {
		var d rtm.RecordingStateData
		if e.Type == string(rtm.TypeRecordingState) && json.Unmarshal(e.Data, &d) == nil && d.RecordingID == id &&
			(d.State == rtm.RecordingStopped || d.State == rtm.RecordingFailed) {
			return h.at[i]
		}
	}
	return time.Time{}
}

func (h *chaosHooks) url() string { return h.srv.URL + "/hooks" }

func (h *chaosHooks) setSlow(v bool) {
	h.mu.Lock()
	h.slow = v
	h.mu.Unlock()
}

func (h *chaosHooks) recordingEvents() []struct {
	hookEvent
	rtm.RecordingStateData
} {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []struct {
		hookEvent
		rtm.RecordingStateData
	}
	for _, e := range h.events {
		if e.Type != string(rtm.TypeRecordingState) {
			continue
		}
		var d rtm.RecordingStateData
		_ = json.Unmarshal(e.Data, &d)
		out = append(out, struct {
			hookEvent
			rtm.RecordingStateData
		}{e, d})
	}
	return out
}

// recordingsStarted are the recordings whose STARTED reached the webhook.
func (h *chaosHooks) recordingsStarted() map[string]bool {
	out := map[string]bool{}
	for _, e := range h.recordingEvents() {
		if e.State == rtm.RecordingStarted {
			out[e.RecordingID] = true
		}
	}
	return out
}

// finals lists a recording's STOPPED and FAILED events, one per distinct id.
func (h *chaosHooks) finals(id string) []rtm.RecordingStateData {
	seen := map[string]bool{}
	var out []rtm.RecordingStateData
	for _, e := range h.recordingEvents() {
		if e.RecordingID == id && (e.State == rtm.RecordingStopped || e.State == rtm.RecordingFailed) && !seen[e.ID] {
			seen[e.ID] = true
			out = append(out, e.RecordingStateData)
		}
	}
	return out
}

func (h *chaosHooks) unfinished(started map[string]bool) int {
	n := 0
	for id := range started {
		if len(h.finals(id)) == 0 {
			n++
		}
	}
	return n
}

func (h *chaosHooks) sessionOf(id string) string {
	for _, e := range h.recordingEvents() {
		if e.RecordingID == id {
			return e.SessionID
		}
	}
	return ""
}

// uploadPath is where the recording was sent: its session's n-th STARTED
// is the session's n-th recording_start (a request the kill cut off never
// got a STARTED, and its session asked for nothing after it).
func (h *chaosHooks) uploadPath(id string) string {
	session := h.sessionOf(id)
	var order []string
	seen := map[string]bool{}
	for _, e := range h.recordingEvents() {
		if e.SessionID == session && e.State == rtm.RecordingStarted && !seen[e.RecordingID] {
			seen[e.RecordingID] = true
			order = append(order, e.RecordingID)
		}
	}
	n := 0
	for i, r := range order {
		if r == id {
			n = i + 1
		}
	}
	return fmt.Sprintf("/%s/%d", session, n)
}
