package console

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/webhook"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"s-1-2026-11-22T01-57-04-405Z.webm": true,
		"a.ogg":                             true,
		"A_b-9.mkv":                         true,
		"":                                  false,
		".":                                 false,
		"..":                                false,
		".hidden":                           false,
		"../x":                              false,
		"a/b":                               false,
		`a\b`:                               false,
		"a b":                               false,
		"a\x00b":                            false,
		"ü.webm":                            false,
		strings.Repeat("a", maxNameLen):     true,
		strings.Repeat("a", maxNameLen+1):   false,
	} {
		if got := ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}

func newSinkServer(t *testing.T, maxBytes int64) (*httptest.Server, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "uploads")
	s, err := NewUploadSink(dir, maxBytes, quiet)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /u/{name}", s.Put)
	mux.HandleFunc("GET /u/{name}", s.Get)
	mux.HandleFunc("GET /u", s.List("/u/"))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, dir
}

func put(t *testing.T, url string, body io.Reader, length int64) int {
	t.Helper()
	req, _ := http.NewRequest("PUT", url, body)
	req.ContentLength = length
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestUploadSinkBoundsTheSize(t *testing.T) {
	srv, dir := newSinkServer(t, 1000)
	if got := put(t, srv.URL+"/u/ok.webm", strings.NewReader(strings.Repeat("x", 1000)), 1000); got != 200 {
		t.Errorf("1000 bytes: %d, want 200", got)
	}
	// Announced too large: refused before reading.
	if got := put(t, srv.URL+"/u/big.webm", strings.NewReader(strings.Repeat("x", 1001)), 1001); got != http.StatusRequestEntityTooLarge {
		t.Errorf("Content-Length 1001: %d, want 413", got)
	}
	// Chunked (no Content-Length) and too large: cut off while streaming.
	if got := put(t, srv.URL+"/u/chunked.webm", io.MultiReader(strings.NewReader(strings.Repeat("x", 5000))), -1); got != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked 5000 bytes: %d, want 413", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "ok.webm" {
		t.Errorf("the sink holds %v; refused uploads must leave nothing", entries)
	}
}

func TestUploadSinkReplacesAtomically(t *testing.T) {
	srv, dir := newSinkServer(t, 0)
	put(t, srv.URL+"/u/a.ogg", strings.NewReader("OggS first"), 10)
	put(t, srv.URL+"/u/a.ogg", strings.NewReader("OggS second"), 11)
	b, _ := os.ReadFile(filepath.Join(dir, "a.ogg"))
	if string(b) != "OggS second" {
		t.Errorf("file holds %q after the second upload", b)
	}
}

func TestMediaType(t *testing.T) {
	for _, c := range []struct {
		head, name, want string
	}{
		{"OggS....", "x.webm", "audio/ogg"},
		{"\x1a\x45\xdf\xa3\x9f\x42\x82\x84webm", "x.bin", "video/webm"},
		{"\x1a\x45\xdf\xa3\xa3\x42\x82\x88matroska", "x.webm", "video/x-matroska"},
		{"????", "x.webm", "video/webm"},
		{"????", "x.ogg", "audio/ogg"},
		{"????", "x.mkv", "video/x-matroska"},
		{"????", "x", "application/octet-stream"},
	} {
		r := strings.NewReader(c.head)
		if got := mediaType(r, c.name); got != c.want {
			t.Errorf("mediaType(%q, %s) = %s, want %s", c.head, c.name, got, c.want)
		}
		if n, _ := r.Seek(0, io.SeekCurrent); n != 0 {
			t.Errorf("mediaType left the reader at %d", n)
		}
	}
}

func TestWebhookSinkKeepsTheLastEvents(t *testing.T) {
	s := NewWebhookSink(3, nil, nil, quiet)
	srv := httptest.NewServer(http.HandlerFunc(s.Post))
	defer srv.Close()
	for i := range 5 {
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"n":`+string(rune('0'+i))+`}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST: %d", resp.StatusCode)
		}
	}
	ev := s.Events(0)
	if len(ev) != 3 || ev[0].Seq != 3 || ev[2].Seq != 5 || string(ev[2].Body) != `{"n":4}` {
		t.Errorf("ring: %+v; want events 3..5", ev)
	}
	if ev := s.Events(4); len(ev) != 1 || ev[0].Seq != 5 {
		t.Errorf("Events(4): %+v", ev)
	}
	// Over the body limit: refused, not stored.
	resp, err := http.Post(srv.URL, "application/json", strings.NewReader(strings.Repeat(" ", maxWebhookBody+1)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || len(s.Events(5)) != 0 {
		t.Errorf("oversized body: %d, stored %d", resp.StatusCode, len(s.Events(5)))
	}
}

// TestWebhookSinkChecksSignatures: the sink verifies each event as a
// customer's receiver would, with any of the server's keys (a rotation),
// and says what it found.
func TestWebhookSinkChecksSignatures(t *testing.T) {
	oldKey, newKey := []byte("old key of sixteen+"), []byte("new key of sixteen+")
	s := NewWebhookSink(10, [][]byte{newKey, oldKey}, nil, quiet)
	srv := httptest.NewServer(http.HandlerFunc(s.Post))
	defer srv.Close()
	body := []byte(`{"id":"e1","type":"session_state"}`)
	now := time.Now().Unix()
	tests := []struct {
		name, sig string
		ts        int64
		want      string
	}{
		{"signed with the old key", webhook.Sign(oldKey, "e1", now, body), now, SignatureVerified},
		{"both keys, as during a rotation", webhook.Sign(newKey, "e1", now, body) + " " + webhook.Sign(oldKey, "e1", now, body), now, SignatureVerified},
		{"another key", webhook.Sign([]byte("someone else's key"), "e1", now, body), now, SignatureInvalid},
		{"too old", webhook.Sign(newKey, "e1", now-3600, body), now - 3600, SignatureInvalid},
		{"unsigned", "", now, SignatureUnsigned},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		req.Header.Set(webhook.HeaderID, "e1")
		req.Header.Set(webhook.HeaderTimestamp, strconv.FormatInt(tt.ts, 10))
		if tt.sig != "" {
			req.Header.Set(webhook.HeaderSignature, tt.sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		ev := s.Events(0)
		got := ev[len(ev)-1]
		if resp.StatusCode != 200 || got.Signed != tt.want || (tt.want == SignatureInvalid) != (got.SignatureError != "") {
			t.Errorf("%s: %d, signed %q (%s); want 200, %q", tt.name, resp.StatusCode, got.Signed, got.SignatureError, tt.want)
		}
	}
	keyless := NewWebhookSink(1, nil, nil, quiet)
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.Header.Set(webhook.HeaderSignature, "v1,xyz")
	keyless.Post(httptest.NewRecorder(), req)
	if got := keyless.Events(0)[0].Signed; got != SignatureUnchecked {
		t.Errorf("a sink without keys: %q, want %q", got, SignatureUnchecked)
	}
}

func TestWebhookStreamResumesAndStops(t *testing.T) {
	var stopped atomic.Bool
	s := NewWebhookSink(10, nil, stopped.Load, quiet)
	for range 3 {
		s.add(WebhookEvent{Body: []byte(`{}`)})
	}
	srv := httptest.NewServer(http.HandlerFunc(s.Stream))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	req.Header.Set("Last-Event-ID", "1") // the browser reconnecting after event 1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	var ids []string
	next := func() {
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "id: "); ok {
				ids = append(ids, id)
				return
			}
		}
	}
	next()
	next()
	s.add(WebhookEvent{Body: []byte(`{}`)}) // live
	next()
	if strings.Join(ids, ",") != "2,3,4" {
		t.Errorf("stream ids %v, want 2,3,4", ids)
	}
	// Shutting down ends the stream (or it would hold up the HTTP server's
	// graceful shutdown).
	stopped.Store(true)
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, resp.Body)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("the stream did not end after stopped() turned true")
	}
}

func TestPagesServeTheAgentAtTheRoot(t *testing.T) {
	srv := httptest.NewServer(http.StripPrefix("/dev", Pages()))
	defer srv.Close()
	for _, p := range []string{"/dev/", "/dev/index.html", "/dev/agent.html"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), "agent.js") {
			t.Errorf("GET %s: %d, want the agent page", p, resp.StatusCode)
		}
	}
}
