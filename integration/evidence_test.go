package integration

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
)

// writeKeyPair writes an Ed25519 key pair as PEM files (PKCS#8 private,
// PKIX public), as an operator would with openssl.
func writeKeyPair(t *testing.T, dir string) (priv, pub string) {
	t.Helper()
	pk, sk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	skDER, _ := x509.MarshalPKCS8PrivateKey(sk)
	pkDER, _ := x509.MarshalPKIXPublicKey(pk)
	priv, pub = filepath.Join(dir, "evidence.pem"), filepath.Join(dir, "evidence.pub.pem")
	if err := os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: skDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// stoppedEvidence is what STOPPED carries (docs/evidence.md).
type stoppedEvidence struct {
	rtm.RecordingStateData
	SHA256    string    `json:"sha256"`
	StartedAt time.Time `json:"started_at"`
	StoppedAt time.Time `json:"stopped_at"`
	Clock     string    `json:"clock"`
	Tracks    []struct {
		ID              string `json:"id"`
		Kind            string `json:"kind"`
		PacketsReceived uint64 `json:"packets_received"`
	} `json:"tracks"`
	Pauses []struct {
		StartMS int64 `json:"start_ms"`
		EndMS   int64 `json:"end_ms"`
	} `json:"pauses"`
	Supervisors []struct {
		Identity  string `json:"identity"`
		SessionID string `json:"session_id"`
	} `json:"supervisors"`
	Manifest json.RawMessage `json:"manifest"`
}

// TestEvidenceEndToEnd: with -evidence-key, a recording's STOPPED carries
// its evidence (hash of the uploaded bytes, times, tracks, the pause, the
// supervisor who listened) and its signed manifest, which is also PUT to
// manifest_url; `rtmrec verify` accepts the uploaded file and manifest;
// an operator redacts the kept file through the admin API and the new
// manifest verifies and names the original.
func TestEvidenceEndToEnd(t *testing.T) {
	dir := t.TempDir()
	priv, pub := writeKeyPair(t, dir)
	target := newUploadTarget(t)
	hooks := newHookReceiver(t, "")
	srv := runRTMRec(t, t.TempDir(), "-allow-private-urls", "-auth-hs256-secret", jwtSecret,
		"-evidence-key", priv, "-upload-retention", "1h", "-admin-listen", "127.0.0.1:0")
	agent := bearer(token(t, auth.Claims{Subject: "agent@acme", Role: auth.RoleClient}))
	c := startCall(t, srv.wsURL(), "ev-1", hooks.url(), agent, testclient.Tone, testclient.Camera)

	c.send(rtm.TypeRecordingStart, rtm.RecordingStart{UploadURL: target.url("/ev/rec.webm"), ManifestURL: target.url("/ev/rec.manifest.json")})
	started := testclient.Data[rtm.RecordingStateData](c.wait(testclient.IsRecording(c.id, rtm.RecordingStarted)))
	// A supervisor listens for a while.
	boss, _ := supervise(t, srv.wsURL(), bearer(token(t, auth.Claims{Subject: "boss@acme", Role: auth.RoleSupervisor, Sessions: []string{auth.AnySession}})), "sup-1", c.id)
	time.Sleep(time.Second)
	_ = boss.Send(rtm.TypeSessionStop, "boss", "sup-1", nil)
	c.send(rtm.TypeRecordingPause, nil)
	c.wait(testclient.IsRecording(c.id, rtm.RecordingPaused))
	time.Sleep(time.Second)
	c.send(rtm.TypeRecordingResume, nil)
	c.wait(testclient.IsRecording(c.id, rtm.RecordingResumed))
	time.Sleep(time.Second)
	c.send(rtm.TypeRecordingStop, nil)
	stopMsg := c.wait(testclient.IsRecording(c.id, rtm.RecordingStopped))
	var ev stoppedEvidence
	if err := json.Unmarshal(stopMsg.Data, &ev); err != nil {
		t.Fatal(err)
	}
	media := target.wait("/ev/rec.webm")
	manifest := target.wait("/ev/rec.manifest.json")
	switch {
	case ev.RecordingID != started.RecordingID || ev.SHA256 != media.SHA256:
		t.Errorf("STOPPED sha256 %s, uploaded file %s", ev.SHA256, media.SHA256)
	case ev.StartedAt.IsZero() || !ev.StoppedAt.After(ev.StartedAt) || (ev.Clock != "sender" && ev.Clock != "server"):
		t.Errorf("times %v → %v on clock %q", ev.StartedAt, ev.StoppedAt, ev.Clock)
	case len(ev.Tracks) != 2 || ev.Tracks[0].PacketsReceived == 0 || ev.Tracks[1].PacketsReceived == 0:
		t.Errorf("tracks %+v", ev.Tracks)
	case len(ev.Pauses) != 1 || ev.Pauses[0].EndMS-ev.Pauses[0].StartMS < 800:
		t.Errorf("pauses %+v, want one of about a second", ev.Pauses)
	case len(ev.Supervisors) != 1 || ev.Supervisors[0].Identity != "boss@acme" || ev.Supervisors[0].SessionID != "sup-1":
		t.Errorf("supervisors %+v", ev.Supervisors)
	}
	uploadedManifest, _ := os.ReadFile(manifest.File)
	if !bytes.Equal(bytes.TrimSpace(ev.Manifest), bytes.TrimSpace(uploadedManifest)) {
		t.Errorf("STOPPED's manifest differs from the uploaded one")
	}
	// The webhook got the same evidence.
	events := hooks.waitFor(c.id, func(e hookEvent) bool { return e.state() == "STOPPED" })
	for _, e := range events {
		if e.state() == "STOPPED" && !bytes.Contains(e.Data, []byte(media.SHA256)) {
			t.Errorf("webhook STOPPED lacks the hash: %s", e.Data)
		}
	}

	// A customer checks the upload with the public key.
	bin := rtmrecBinary(t)
	if out, err := exec.Command(bin, "verify", media.File, manifest.File, "-key", pub).CombinedOutput(); err != nil {
		t.Fatalf("rtmrec verify: %v\n%s", err, out)
	}

	// An operator cuts a span out of the file kept on the server.
	body := `{"recording_id":"` + started.RecordingID + `","from_ms":500,"to_ms":1500}`
	req, _ := http.NewRequest(http.MethodPost, "http://"+srv.admin+"/admin/redact", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token(t, auth.Claims{Subject: "compliance@acme", Role: auth.RoleOperator}))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("redact: %d %s", resp.StatusCode, out)
	}
	var red struct {
		File         string          `json:"file"`
		ManifestFile string          `json:"manifest_file"`
		Manifest     json.RawMessage `json:"manifest"`
	}
	if err := json.Unmarshal(out, &red); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(red.Manifest, []byte(media.SHA256)) || !bytes.Contains(red.Manifest, []byte("compliance@acme")) {
		t.Errorf("the redacted manifest names neither the original hash nor the operator: %s", red.Manifest)
	}
	// The API names the new files inside the recordings directory.
	recs := filepath.Join(srv.dataDir, "recordings")
	if out, err := exec.Command(bin, "verify", filepath.Join(recs, red.File), filepath.Join(recs, red.ManifestFile), "-key", pub).CombinedOutput(); err != nil {
		t.Fatalf("rtmrec verify of the redacted file: %v\n%s", err, out)
	}
	// A client token is not an operator's.
	req, _ = http.NewRequest(http.MethodPost, "http://"+srv.admin+"/admin/redact", strings.NewReader(body))
	req.Header.Set("Authorization", agent.Get("Authorization"))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("redact with a client token: %v %v", resp.StatusCode, err)
	}
}
