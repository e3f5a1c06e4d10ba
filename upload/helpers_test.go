package upload

import (
	"bufio"
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
	"github.com/rtmrec/rtmrec/internal/testlog"
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

// testUploader returns an uploader with a short idle timeout, logging
// into logs.
func testUploader(t testing.TB, mutate func(*Config)) (*Uploader, *testlog.Buffer) {
	t.Helper()
	logs := &testlog.Buffer{}
	cfg := Config{
		Guard:          netguard.New(netguard.Config{AllowPrivate: true}),
		RequestTimeout: 300 * time.Millisecond,
		Logger:         slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	u, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.CloseIdle)
	return u, logs
}

func put(u *Uploader, job Job) Outcome {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return u.Put(ctx, job)
}
