package delivery

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"

	"github.com/rtmrec/rtmrec/internal/ledger"
	"github.com/rtmrec/rtmrec/internal/netguard"
	"github.com/rtmrec/rtmrec/internal/wording"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/upload"
	"github.com/rtmrec/rtmrec/webhook"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// target is an upload target whose answers follow a script (the last one
// repeats), and which keeps what it received.
type target struct {
	srv *httptest.Server

	mu      sync.Mutex
	script  []string
	puts    []put
	stalled int // requests held by "stall"
}

type put struct {
	path   string
	status int
	body   []byte
}

func newTarget(t testing.TB, script ...string) *target {
	t.Helper()
	tg := &target{script: script}
	tg.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.mu.Lock()
		b := tg.script[min(len(tg.puts), len(tg.script)-1)]
		tg.mu.Unlock()
		if b == "stall" { // takes the body, never answers, until the client goes
			tg.mu.Lock()
			tg.stalled++
			tg.mu.Unlock()
			if c, _, err := w.(http.Hijacker).Hijack(); err == nil {
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}
			return
		}
		body, _ := io.ReadAll(r.Body)
		status := http.StatusOK
		switch b {
		case "403":
			status = http.StatusForbidden
		case "500":
			status = http.StatusInternalServerError
		case "503-retry-after-2":
			w.Header().Set("Retry-After", "2")
			status = http.StatusServiceUnavailable
		}
		tg.mu.Lock()
		tg.puts = append(tg.puts, put{path: r.URL.Path, status: status, body: body})
		tg.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(tg.srv.Close)
	return tg
}

func (tg *target) setScript(script ...string) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	tg.script = script
}

func (tg *target) received() []put {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]put(nil), tg.puts...)
}

// hooks is a webhook receiver that keeps every delivered event.
type hooks struct {
	srv *httptest.Server

	mu     sync.Mutex
	events []hook
	raw    [][]byte
}

// rawList is every delivered body, as received.
func (h *hooks) rawList() [][]byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.raw...)
}

type hook struct {
	ID        string
	Type      rtm.Type
	SessionID string `json:"session_id"`
	Data      rtm.RecordingStateData
}

func newHooks(t testing.TB) *hooks {
	t.Helper()
	h := &hooks{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev hook
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &ev); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.events = append(h.events, ev)
		h.raw = append(h.raw, b)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hooks) list() []hook {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hook(nil), h.events...)
}

// states lists the recording states delivered for id, in order.
func (h *hooks) states(id string) []string {
	var out []string
	for _, ev := range h.list() {
		if ev.Data.RecordingID == id {
			out = append(out, string(ev.Data.State))
		}
	}
	return out
}

// final is the recording's STOPPED or FAILED state, "" before it came.
func (h *hooks) final(id string) string {
	for _, ev := range h.list() {
		if ev.Data.RecordingID == id && (ev.Data.State == rtm.RecordingStopped || ev.Data.State == rtm.RecordingFailed) {
			return string(ev.Data.State)
		}
	}
	return ""
}

// waitFinal waits until the recording's STOPPED or FAILED arrived.
func (h *hooks) waitFinal(t *testing.T, id string) hook {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, ev := range h.list() {
			if ev.Data.RecordingID == id && (ev.Data.State == rtm.RecordingStopped || ev.Data.State == rtm.RecordingFailed) {
				return ev
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no STOPPED or FAILED for %s; got %v", id, h.states(id))
	return hook{}
}

// env is one process's worth of delivery: ledger, outbox, uploader,
// journeys, all running until stop.
type env struct {
	t        testing.TB
	commits  atomic.Int64 // ledger commits
	dir      string
	ledger   *ledger.Ledger
	outbox   *webhook.Outbox
	journeys *Journeys
	announce chan rtm.Message
	stopOnce sync.Once
	cancel   context.CancelFunc
	done     sync.WaitGroup
}

// start opens the data directory dir as a new process would.
func start(t testing.TB, dir string, mutate func(*Config)) *env {
	t.Helper()
	e := &env{t: t, dir: dir, announce: make(chan rtm.Message, 64)}
	var err error
	if e.ledger, err = ledger.Open(dir, ledger.Options{OnCommit: func() { e.commits.Add(1) }}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	guard := netguard.New(netguard.Config{AllowPrivate: true})
	if e.outbox, err = webhook.New(webhook.Config{Ledger: e.ledger, Guard: guard, BaseBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Logger: log}); err != nil {
		t.Fatal(err)
	}
	up, err := upload.New(upload.Config{Guard: guard, RequestTimeout: 2 * time.Second, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Ledger: e.ledger, Outbox: e.outbox, Uploader: up, Dir: filepath.Join(dir, "recordings"),
		MaxAttempts: 5, BaseBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Logger: log,
		Announce: func(_ string, m rtm.Message) {
			select {
			case e.announce <- m:
			default:
			}
		},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	if e.journeys, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.done.Go(func() { _ = e.outbox.Run(ctx) })
	e.done.Go(func() { _ = e.journeys.Run(ctx) })
	t.Cleanup(e.stop)
	return e
}

// stop ends the process: what is in flight is cut off, the ledger closed.
func (e *env) stop() {
	e.stopOnce.Do(func() {
		e.cancel()
		e.done.Wait()
		if err := e.ledger.Close(); err != nil {
			e.t.Error(err)
		}
	})
}

// record makes a real recording of dur of Opus in the env's recordings
// directory and returns it unstopped (as a crash would leave it) or
// stopped.
func record(t testing.TB, dir, id string, dur time.Duration) *recorder.Recording {
	t.Helper()
	rec, err := recorder.Start(recorder.Config{Dir: dir, RecordingID: id, SessionID: "s-" + id, Format: recorder.FormatOgg,
		Tracks: []recorder.TrackInfo{{ID: "mid0", Codec: recorder.CodecOpus}}})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := rec.AddTrack(recorder.TrackInfo{ID: "mid0", Codec: recorder.CodecOpus})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	pkt := make([]byte, 12+3)
	for i := range int(dur / (20 * time.Millisecond)) {
		pkt[0], pkt[1] = 0x80, 111
		binary.BigEndian.PutUint16(pkt[2:], uint16(i))
		binary.BigEndian.PutUint32(pkt[4:], uint32(i*960))
		binary.BigEndian.PutUint32(pkt[8:], 42)
		copy(pkt[12:], []byte{0xf8, 0xff, 0xfe}) // a 20 ms Opus frame
		tr.WriteRTP(pkt, now.Add(time.Duration(i)*20*time.Millisecond))
	}
	return rec
}

func route(tg *target, h *hooks, id string) Route {
	return Route{SessionID: "s-" + id, ClientID: "c-" + id, UploadURL: tg.srv.URL + "/" + id + ".ogg?sig=topsecret", WebhookURL: h.srv.URL, OrderKey: "s-" + id}
}

// begin starts a journey for rec.
func (e *env) begin(rec *recorder.Recording, r Route) {
	e.t.Helper()
	if err := e.journeys.Begin(r, rec.Manifest(), nil); err != nil {
		e.t.Fatal(err)
	}
}

// finish stops rec and hands it to the journeys.
func (e *env) finish(rec *recorder.Recording) {
	e.t.Helper()
	m, err := rec.Stop()
	if err := e.journeys.Finish(rec.ID(), m, err); err != nil {
		e.t.Fatal(err)
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// journeyCount is the number of journeys the ledger keeps.
func (e *env) journeyCount() int {
	n := 0
	_ = e.ledger.View(func(tx *ledger.Tx) error {
		if b := tx.Bucket(bucketJourneys); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// noLeak checks a FAILED reason: a failure of the vocabulary, then words a
// customer can act on.
func noLeak(t *testing.T, s string) {
	t.Helper()
	if _, ok := rtm.FailureOf(s); !ok {
		t.Errorf("reason %q does not start with a failure of rtm.Failures", s)
	}
	if strings.Contains(s, "topsecret") {
		t.Errorf("reason %q carries the URL's query", s)
	}
	if err := wording.Check(s); err != nil {
		t.Error(err)
	}
}

func testutilValue(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
