package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/console"
	"github.com/rtmrec/rtmrec/internal/testlog"
	"github.com/rtmrec/rtmrec/webhook"
)

// devTestServer runs the real server (run) on a loopback port with the given
// flags and returns its base URL and data directory; it is drained when the
// test ends.
func devTestServer(t *testing.T, args ...string) (base, dataDir string) {
	t.Helper()
	return devTestServerLog(t, io.Discard, args...)
}

// devTestServerLog is devTestServer with the server's JSON log written to w.
func devTestServerLog(t *testing.T, w io.Writer, args ...string) (base, dataDir string) {
	t.Helper()
	dataDir = t.TempDir()
	cfg, err := parseConfig(append([]string{"-listen", "127.0.0.1:0", "-data-dir", dataDir}, args...), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan listening, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewJSONHandler(w, nil))
	go func() { done <- run(ctx, cfg, log, ready) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("the server did not drain within 15 s")
		}
	})
	select {
	case l := <-ready:
		return "http://" + l.Addr.String(), dataDir
	case err := <-done:
		t.Fatalf("run: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("the server did not start within 15 s")
	}
	return "", ""
}

func devDo(t *testing.T, method, url string, body []byte, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, b
}

func TestDevConsoleIsOffWithoutDev(t *testing.T) {
	base, dataDir := devTestServer(t)
	for _, r := range []struct{ method, path string }{
		{"GET", "/dev/"}, {"GET", "/dev/agent.html"}, {"GET", "/dev/supervisor.html"}, {"GET", "/dev/rtm.js"},
		{"GET", "/"}, {"GET", "/dev/config"}, {"GET", "/dev/recordings/r1"},
		{"GET", "/dev/sessions"}, {"GET", "/dev/token?role=client"},
		{"PUT", "/dev/uploads/x.webm"}, {"GET", "/dev/uploads/x.webm"}, {"GET", "/dev/uploads"},
		{"POST", "/dev/webhooks"}, {"GET", "/dev/webhooks"}, {"GET", "/dev/webhooks/stream"},
	} {
		resp, _ := devDo(t, r.method, base+r.path, []byte("{}"), nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s without -dev: %d, want 404", r.method, r.path, resp.StatusCode)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "dev-uploads")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("without -dev the upload sink directory exists (%v)", err)
	}
}

func TestDevConsolePages(t *testing.T) {
	base, _ := devTestServer(t, "-dev")
	for path, want := range map[string]struct{ ctype, contains string }{
		"/dev/":                {"text/html", `src="agent.js"`},
		"/dev/agent.html":      {"text/html", `src="agent.js"`},
		"/dev/supervisor.html": {"text/html", `src="supervisor.js"`},
		"/dev/rtm.js":          {"text/javascript", "export class RTMClient"},
		"/dev/agent.js":        {"text/javascript", "echoCancellation: false"},
		"/dev/supervisor.js":   {"text/javascript", "supervisor"},
		"/dev/playback.js":     {"text/javascript", "export function parseMatroska"},
		"/dev/style.css":       {"text/css", "--accent"},
	} {
		resp, body := devDo(t, "GET", base+path, nil, nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), want.ctype) || !bytes.Contains(body, []byte(want.contains)) {
			t.Errorf("GET %s: %d %s, %d bytes; want 200 %s containing %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), want.ctype, want.contains)
		}
	}
	if resp, _ := devDo(t, "GET", base+"/dev/nothing.js", nil, nil); resp.StatusCode != 404 {
		t.Errorf("GET /dev/nothing.js: %d, want 404", resp.StatusCode)
	}
	resp, body := devDo(t, "GET", base+"/dev/sessions", nil, nil)
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("GET /dev/sessions: %d %s, want 200 []", resp.StatusCode, body)
	}
}

// TestDevFirstURL: the start-up log gives the console's full URL, and the
// server's root leads there.
func TestDevFirstURL(t *testing.T) {
	var logs testlog.Buffer
	base, _ := devTestServerLog(t, &logs, "-dev")
	var url string
	for _, line := range strings.Split(logs.String(), "\n") {
		var rec struct{ Msg, URL string }
		if json.Unmarshal([]byte(line), &rec) == nil && strings.HasPrefix(rec.Msg, "dev console") {
			url = rec.URL
		}
	}
	if url != base+"/dev/" {
		t.Fatalf("the log gives the console as %q, want %q:\n%s", url, base+"/dev/", logs.String())
	}
	resp, body := devDo(t, "GET", base+"/", nil, nil) // follows the redirect
	if resp.StatusCode != 200 || resp.Request.URL.String() != url || !bytes.Contains(body, []byte(`src="agent.js"`)) {
		t.Errorf("GET /: %d at %s; want the agent page at %s", resp.StatusCode, resp.Request.URL, url)
	}
	if resp, _ := devDo(t, "GET", base+"/elsewhere", nil, nil); resp.StatusCode != 404 {
		t.Errorf("GET /elsewhere: %d, want 404 (only the root redirects)", resp.StatusCode)
	}
}

// TestDevWebhookSecret: without -webhook-secret, -dev signs with a whsec_
// secret of its own that the console shows and its sink verifies with; an
// operator's secret is used and not shown.
func TestDevWebhookSecret(t *testing.T) {
	base, _ := devTestServer(t, "-dev")
	var cfg devConfig
	_, b := devDo(t, "GET", base+"/dev/config", nil, nil)
	if err := json.Unmarshal(b, &cfg); err != nil || !cfg.WebhooksSigned || !strings.HasPrefix(cfg.WebhookSecret, "whsec_") {
		t.Fatalf("GET /dev/config: %s (%v)", b, err)
	}
	key, err := webhook.ParseSecret(cfg.WebhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	post := func(key []byte) string {
		body := []byte(`{"id":"e1","type":"session_state","session_id":"s-1"}`)
		ts := time.Now().Unix()
		devDo(t, "POST", base+"/dev/webhooks", body, http.Header{
			"Webhook-Id": {"e1"}, "Webhook-Timestamp": {strconv.FormatInt(ts, 10)},
			"Webhook-Signature": {webhook.Sign(key, "e1", ts, body)},
		})
		var events []console.WebhookEvent
		_, b := devDo(t, "GET", base+"/dev/webhooks", nil, nil)
		if err := json.Unmarshal(b, &events); err != nil || len(events) == 0 {
			t.Fatalf("GET /dev/webhooks: %s", b)
		}
		return events[len(events)-1].Signed
	}
	if got := post(key); got != console.SignatureVerified {
		t.Errorf("signed with the dev secret: %q, want verified", got)
	}
	if got := post([]byte("another key entirely")); got != console.SignatureInvalid {
		t.Errorf("signed with another key: %q, want invalid", got)
	}

	base, _ = devTestServer(t, "-dev", "-webhook-secret", "an-operator-secret")
	_, b = devDo(t, "GET", base+"/dev/config", nil, nil)
	cfg = devConfig{}
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.WebhookSecret != "" || !cfg.WebhooksSigned {
		t.Errorf("with -webhook-secret, GET /dev/config: %s", b)
	}
	if got := post([]byte("an-operator-secret")); got != console.SignatureVerified {
		t.Errorf("signed with the operator's secret: %q, want verified", got)
	}
}

func TestDevRecordingStatusOfAnUnknownRecording(t *testing.T) {
	base, _ := devTestServer(t, "-dev")
	if resp, _ := devDo(t, "GET", base+"/dev/recordings/nope", nil, nil); resp.StatusCode != 404 {
		t.Errorf("GET /dev/recordings/nope: %d, want 404", resp.StatusCode)
	}
}

func TestDevUploadSink(t *testing.T) {
	base, dataDir := devTestServer(t, "-dev")
	// An EBML header with DocType webm, then some payload.
	media := append([]byte{0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x82, 0x84}, []byte("webm")...)
	media = append(media, bytes.Repeat([]byte{7}, 100_000)...)

	resp, _ := devDo(t, "PUT", base+"/dev/uploads/s-1-2026.webm", media, http.Header{"Content-Type": {"video/webm"}})
	if resp.StatusCode != 200 {
		t.Fatalf("PUT: %d, want 200 (rtmrec counts only 200 as success)", resp.StatusCode)
	}
	onDisk, err := os.ReadFile(filepath.Join(dataDir, "dev-uploads", "s-1-2026.webm"))
	if err != nil || !bytes.Equal(onDisk, media) {
		t.Fatalf("stored file: %d bytes, err %v; want the %d bytes sent", len(onDisk), err, len(media))
	}
	resp, body := devDo(t, "GET", base+"/dev/uploads/s-1-2026.webm", nil, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "video/webm" || !bytes.Equal(body, media) {
		t.Errorf("GET: %d %s, %d bytes; want 200 video/webm with the upload", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	// Range requests, so a <video> can seek.
	resp, body = devDo(t, "GET", base+"/dev/uploads/s-1-2026.webm", nil, http.Header{"Range": {"bytes=4-7"}})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, media[4:8]) {
		t.Errorf("GET with Range: %d %x", resp.StatusCode, body)
	}
	// Ogg is recognised by its content whatever the name says.
	devDo(t, "PUT", base+"/dev/uploads/audio.bin", []byte("OggS\x00rest"), nil)
	if resp, _ := devDo(t, "GET", base+"/dev/uploads/audio.bin", nil, nil); resp.Header.Get("Content-Type") != "audio/ogg" {
		t.Errorf("Ogg upload served as %s", resp.Header.Get("Content-Type"))
	}

	var list []struct {
		Name        string `json:"name"`
		Size        int64  `json:"size"`
		ContentType string `json:"content_type"`
		URL         string `json:"url"`
	}
	resp, body = devDo(t, "GET", base+"/dev/uploads", nil, nil)
	if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /dev/uploads: %d %s (%v)", resp.StatusCode, body, err)
	}
	found := false
	for _, u := range list {
		if u.Name == "s-1-2026.webm" {
			found = u.Size == int64(len(media)) && u.ContentType == "video/webm" && u.URL == "/dev/uploads/s-1-2026.webm"
		}
	}
	if len(list) != 2 || !found {
		t.Errorf("listing: %+v", list)
	}
	if resp, _ := devDo(t, "GET", base+"/dev/uploads/missing.webm", nil, nil); resp.StatusCode != 404 {
		t.Errorf("GET of a missing upload: %d, want 404", resp.StatusCode)
	}
}

// TestDevUploadSinkRefusesTraversal sends names that try to leave the sink's
// directory, raw on the wire (no client-side path cleaning), and checks
// nothing was written outside it.
func TestDevUploadSinkRefusesTraversal(t *testing.T) {
	base, dataDir := devTestServer(t, "-dev")
	addr := strings.TrimPrefix(base, "http://")
	for _, path := range []string{
		"/dev/uploads/..%2Fescape.webm",
		"/dev/uploads/..%2F..%2Fescape.webm",
		"/dev/uploads/%2E%2E%2Fescape.webm",
		"/dev/uploads/../escape.webm",
		"/dev/uploads/..%5Cescape.webm",
		"/dev/uploads/.hidden",
		"/dev/uploads/..",
		"/dev/uploads/a%00b.webm",
		"/dev/uploads/%2Fetc%2Fescape",
		"/dev/uploads/name%20with%20spaces.webm",
	} {
		status := devRawPut(t, addr, path, "payload")
		t.Logf("PUT %s: %d", path, status)
		if status == http.StatusOK {
			t.Errorf("PUT %s: 200, want a refusal", path)
		}
	}
	err := filepath.WalkDir(dataDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.Contains(d.Name(), "escape") {
			t.Errorf("traversal wrote %s", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dataDir, "dev-uploads")); len(entries) != 0 {
		t.Errorf("refused uploads left files behind: %v", entries)
	}
}

// devRawPut writes a PUT request line exactly as given.
func devRawPut(t *testing.T, addr, path, body string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "PUT "+path+" HTTP/1.1\r\nHost: "+addr+"\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\nConnection: close\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("PUT %s: %v", path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestDevWebhookSink(t *testing.T) {
	base, _ := devTestServer(t, "-dev")

	// Follow the live stream from before the first event.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/dev/webhooks/stream", nil)
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	if ct := stream.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("stream Content-Type %q", ct)
	}

	body := `{"id":"ev-1","type":"session_state","session_id":"s-1","data":{"state":"TERMINATED","termination_cause":"TERM_BY_DISCONNECT"}}`
	resp, _ := devDo(t, "POST", base+"/dev/webhooks", []byte(body), http.Header{"Content-Type": {"application/json"}, "Webhook-Id": {"ev-1"}})
	if resp.StatusCode != 200 {
		t.Fatalf("POST: %d", resp.StatusCode)
	}
	devDo(t, "POST", base+"/dev/webhooks", []byte("not json"), nil)

	var events []struct {
		Seq       uint64          `json:"seq"`
		WebhookID string          `json:"webhook_id"`
		Body      json.RawMessage `json:"body"`
	}
	_, b := devDo(t, "GET", base+"/dev/webhooks", nil, nil)
	if err := json.Unmarshal(b, &events); err != nil {
		t.Fatalf("GET /dev/webhooks: %v: %s", err, b)
	}
	if len(events) != 2 || events[0].WebhookID != "ev-1" || string(events[0].Body) != body || string(events[1].Body) != `"not json"` {
		t.Fatalf("events: %s", b)
	}
	_, b = devDo(t, "GET", base+"/dev/webhooks?after=1", nil, nil)
	if err := json.Unmarshal(b, &events); err != nil || len(events) != 1 || events[0].Seq != 2 {
		t.Errorf("?after=1: %s", b)
	}

	// The stream delivered the first event.
	sc := bufio.NewScanner(stream.Body)
	got := map[string]string{}
	for sc.Scan() && sc.Text() != "" {
		k, v, _ := strings.Cut(sc.Text(), ": ")
		got[k] = v
	}
	if got["id"] != "1" || got["event"] != "webhook" || !strings.Contains(got["data"], `"TERM_BY_DISCONNECT"`) {
		t.Errorf("first SSE event: %v", got)
	}
}

func TestDevTokens(t *testing.T) {
	t.Run("without auth", func(t *testing.T) {
		base, _ := devTestServer(t, "-dev")
		_, b := devDo(t, "GET", base+"/dev/token?role=client", nil, nil)
		var tok devToken
		if err := json.Unmarshal(b, &tok); err != nil || tok.Auth || tok.Token != "" {
			t.Errorf("token without auth: %s", b)
		}
	})
	t.Run("with auth", func(t *testing.T) {
		secret := strings.Repeat("s", 32)
		base, _ := devTestServer(t, "-dev", "-auth-hs256-secret", secret)
		v, err := auth.NewVerifier(auth.Config{HS256Secrets: [][]byte{[]byte(secret)}})
		if err != nil {
			t.Fatal(err)
		}
		for _, role := range []auth.Role{auth.RoleClient, auth.RoleSupervisor} {
			_, b := devDo(t, "GET", base+"/dev/token?role="+string(role), nil, nil)
			var tok devToken
			if err := json.Unmarshal(b, &tok); err != nil || !tok.Auth || tok.Token == "" {
				t.Fatalf("token for %s: %s", role, b)
			}
			c, err := v.Verify(tok.Token)
			if err != nil {
				t.Fatalf("issued %s token does not verify: %v", role, err)
			}
			if c.Role != role || c.Subject != devSubject {
				t.Errorf("claims: %+v", c)
			}
			if role == auth.RoleSupervisor && !c.MaySupervise("any-session") {
				t.Errorf("a console supervisor token must allow any session: %+v", c)
			}
			// The token opens /rtm (without it: 401).
			resp, _ := devDo(t, "GET", base+"/rtm?access_token="+tok.Token, nil, nil)
			if resp.StatusCode == http.StatusUnauthorized {
				t.Errorf("/rtm refused the console's %s token", role)
			}
		}
		if resp, _ := devDo(t, "GET", base+"/rtm", nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("/rtm without a token: %d, want 401", resp.StatusCode)
		}
		if resp, _ := devDo(t, "GET", base+"/dev/token?role=admin", nil, nil); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("role=admin: %d, want 400", resp.StatusCode)
		}
	})
}
