package integration

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/webhook"
)

// uploadTarget stands in for customer storage: it keeps every PUT body on
// disk and answers with the status the test chooses.
type uploadTarget struct {
	t      *testing.T
	srv    *httptest.Server
	dir    string
	mu     sync.Mutex
	status int
	got    map[string]upload
	puts   int
}

type upload struct {
	Path          string
	ContentType   string
	ContentLength int64
	SHA256        string
	File          string
}

func newUploadTarget(t *testing.T) *uploadTarget {
	u := &uploadTarget{t: t, dir: t.TempDir(), status: http.StatusOK, got: map[string]upload{}}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPut {
			http.Error(w, "PUT only", http.StatusMethodNotAllowed)
			return
		}
		u.mu.Lock()
		u.puts++
		status := u.status
		u.mu.Unlock()
		name := filepath.Join(u.dir, strings.ReplaceAll(strings.Trim(r.URL.Path, "/"), "/", "_"))
		f, err := os.Create(name)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(f, h), r.Body)
		_ = f.Close()
		if err != nil {
			return
		}
		if status == http.StatusOK {
			u.mu.Lock()
			u.got[r.URL.Path] = upload{Path: r.URL.Path, ContentType: r.Header.Get("Content-Type"), ContentLength: n, SHA256: hex.EncodeToString(h.Sum(nil)), File: name}
			u.mu.Unlock()
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *uploadTarget) setStatus(s int) {
	u.mu.Lock()
	u.status = s
	u.mu.Unlock()
}

// url is a pre-signed-looking URL for a path: the query must never show up
// in logs.
func (u *uploadTarget) url(path string) string {
	return u.srv.URL + path + "?X-Amz-Signature=topsecret-signature"
}

func (u *uploadTarget) wait(path string) upload {
	u.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		u.mu.Lock()
		up, ok := u.got[path]
		u.mu.Unlock()
		if ok {
			return up
		}
		time.Sleep(50 * time.Millisecond)
	}
	u.t.Fatalf("no upload to %s arrived", path)
	return upload{}
}

// get returns what arrived at path, if anything.
func (u *uploadTarget) get(path string) (upload, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	up, ok := u.got[path]
	return up, ok
}

func (u *uploadTarget) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.puts
}

// hookReceiver is the customer's webhook endpoint: it checks the Standard
// Webhooks signature of every event and keeps them in arrival order.
type hookReceiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret []byte
	mu     sync.Mutex
	events []hookEvent
	bad    []string
}

type hookEvent struct {
	ID        string          `json:"id"`
	Timestamp string          `json:"timestamp"`
	Type      string          `json:"type"`
	ClientID  string          `json:"client_id"`
	SessionID string          `json:"session_id"`
	Identity  string          `json:"identity"`
	Data      json.RawMessage `json:"data"`
	Header    http.Header     `json:"-"`
}

func (e hookEvent) state() string {
	var d struct {
		State string `json:"state"`
		Cause string `json:"termination_cause"`
		ID    string `json:"recording_id"`
	}
	_ = json.Unmarshal(e.Data, &d)
	if d.Cause != "" {
		return d.State + "/" + d.Cause
	}
	return d.State
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	h := &hookReceiver{t: t, secret: []byte(secret)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev hookEvent
		err := json.Unmarshal(body, &ev)
		if err == nil && len(h.secret) > 0 {
			err = webhook.Verify(h.secret, r.Header, body, time.Now(), 5*time.Minute)
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if err != nil {
			h.bad = append(h.bad, err.Error())
			http.Error(w, "bad signature", http.StatusBadRequest)
			return
		}
		if r.Header.Get("webhook-id") != ev.ID {
			h.bad = append(h.bad, "webhook-id header differs from body id")
		}
		ev.Header = r.Header
		h.events = append(h.events, ev)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) url() string { return h.srv.URL + "/hooks?token=hook-secret-token" }

// waitFor waits until an event matching match arrived and returns all
// events of the session so far.
func (h *hookReceiver) waitFor(sessionID string, match func(hookEvent) bool) []hookEvent {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		h.mu.Lock()
		var list []hookEvent
		found := false
		for _, e := range h.events {
			if e.SessionID == sessionID {
				list = append(list, e)
				found = found || match(e)
			}
		}
		bad := append([]string(nil), h.bad...)
		h.mu.Unlock()
		if len(bad) > 0 {
			h.t.Fatalf("webhook receiver refused events: %v", bad)
		}
		if found {
			return list
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("webhook for session %s never matched", sessionID)
	return nil
}

// has reports whether an event of the session matching match arrived.
func (h *hookReceiver) has(sessionID string, match func(hookEvent) bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.events {
		if e.SessionID == sessionID && match(e) {
			return true
		}
	}
	return false
}

func states(events []hookEvent) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.Type+":"+e.state())
	}
	return out
}
