package upload

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rtmrec/rtmrec/internal/netguard"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// received is one request as the receiver saw it.
type received struct {
	method, path, contentType string
	contentLength             int64
	n                         int64 // body bytes read
	sum                       [32]byte
	behaviour                 string
	at                        time.Time
}

// receiver is an upload target that follows a script: request i gets
// behaviour script[i] (the last one repeats).
type receiver struct {
	srv *httptest.Server

	mu     sync.Mutex
	script []string
	reqs   []received
}

func newReceiver(t *testing.T, script ...string) *receiver {
	t.Helper()
	rc := &receiver{script: script}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) url(path string) string { return rc.srv.URL + path + "?X-Amz-Signature=topsecret" }

func (rc *receiver) setScript(script ...string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.script = script
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	rc.mu.Lock()
	i := len(rc.reqs)
	b := rc.script[min(i, len(rc.script)-1)]
	rc.reqs = append(rc.reqs, received{})
	rc.mu.Unlock()

	rec := received{method: r.Method, path: r.URL.Path, contentType: r.Header.Get("Content-Type"),
		contentLength: r.ContentLength, behaviour: b, at: time.Now()}
	readAll := func() {
		h := sha256.New()
		rec.n, _ = io.Copy(h, r.Body)
		copy(rec.sum[:], h.Sum(nil))
	}
	hijackClose := func() {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	switch b {
	case "200", "201", "204", "500", "503", "502":
		readAll()
		code, _ := strconv.Atoi(b)
		w.WriteHeader(code)
	case "403", "404":
		code, _ := strconv.Atoi(b)
		w.WriteHeader(code)
	case "429":
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
	case "429date":
		w.Header().Set("Retry-After", time.Now().Add(2*time.Second).UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusTooManyRequests)
	case "slow": // takes the body, then never answers in time
		readAll()
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		w.WriteHeader(http.StatusOK)
	case "stall": // takes a little of the body, then stops reading
		io.CopyN(io.Discard, r.Body, 1000)
		time.Sleep(time.Second)
	case "reset":
		hijackClose()
	case "partial": // reads part of the body, then drops the connection
		io.CopyN(io.Discard, bufio.NewReader(r.Body), 1000)
		hijackClose()
	case "partial200": // answers 200 without taking the whole body
		rec.n, _ = io.CopyN(io.Discard, r.Body, 1000)
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusOK)
	case "307":
		http.Redirect(w, r, "/moved"+r.URL.Path+"?"+r.URL.RawQuery, http.StatusTemporaryRedirect)
	case "301":
		http.Redirect(w, r, "/moved"+r.URL.Path, http.StatusMovedPermanently)
	default:
		panic("unknown behaviour " + b)
	}
	rc.mu.Lock()
	rc.reqs[i] = rec
	rc.mu.Unlock()
}

// writeFile makes a file of n random bytes and returns its path and hash.
func writeFile(t testing.TB, dir string, n int) (string, [32]byte) {
	t.Helper()
	data := make([]byte, n)
	rand.Read(data)
	p := filepath.Join(dir, "rec-"+strconv.Itoa(n)+"-"+strconv.FormatInt(time.Now().UnixNano(), 36)+".webm")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, sha256.Sum256(data)
}

// logBuffer collects log output so tests can look for leaked secrets.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// harness is a queue under test with its results and logs.
type harness struct {
	q       *Queue
	cfg     Config
	results chan Result
	logs    *logBuffer
	cancel  context.CancelFunc
	done    chan error
}

// testConfig returns a config with small durations so retries take
// milliseconds.
func testConfig(t testing.TB, dir string) Config {
	return Config{
		Dir:            dir,
		Guard:          netguard.New(netguard.Config{AllowPrivate: true}),
		MaxAttempts:    5,
		BaseBackoff:    5 * time.Millisecond,
		MaxBackoff:     50 * time.Millisecond,
		RequestTimeout: 2 * time.Second,
		Workers:        2,
	}
}

// start creates a queue from cfg and runs it until the test ends.
func start(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{results: make(chan Result, 100), logs: &logBuffer{}, done: make(chan error, 1)}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.OnResult == nil {
		cfg.OnResult = func(r Result) { h.results <- r }
	}
	q, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.q, h.cfg = q, cfg
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- q.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

// stop cancels Run and waits for it to return.
func (h *harness) stop() {
	h.cancel()
	if h.done != nil {
		<-h.done
		h.done = nil
	}
}

func (h *harness) result(t *testing.T) Result {
	t.Helper()
	select {
	case r := <-h.results:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no result within 20s")
		return Result{}
	}
}

func (h *harness) noResult(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case r := <-h.results:
		t.Fatalf("unexpected result %+v", r)
	case <-time.After(d):
	}
}

func readRecord(t *testing.T, dir, id string) *record {
	t.Helper()
	recs, _, err := store{dir: dir}.load()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Job.ID == id {
			return r
		}
	}
	t.Fatalf("no record for %s", id)
	return nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
