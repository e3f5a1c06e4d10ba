package evidence

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/internal/testrecording"
)

func verifyFile(t *testing.T, path string, manifest []byte, pub ed25519.PublicKey) *Manifest {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := Verify(f, manifest, pub)
	if err != nil {
		t.Fatalf("verify %s: %v", filepath.Base(path), err)
	}
	return m
}

// TestRedactManifest: the redacted file's new manifest verifies, carries the original's
// facts, and names the original file and manifest, the span, when and who.
func TestRedactManifest(t *testing.T) {
	key := newKey(t)
	pub := key.Public().(ed25519.PublicKey)
	in, signed, facts := signedRecording(t, key)
	out := filepath.Join(t.TempDir(), "redacted.webm")
	at := time.Date(2025, 4, 1, 9, 30, 0, 0, time.UTC)
	res, err := Redact(RedactRequest{In: in, Out: out, From: 2 * time.Second, To: 4 * time.Second, By: "auditor@example.com",
		Manifest: signed, Key: key, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	m := verifyFile(t, out, res.Manifest, pub)
	manifestSum := sha256.Sum256(signed)
	want := Redaction{OriginalSHA256: facts.SHA256, OriginalManifestSHA256: hex.EncodeToString(manifestSum[:]),
		FromMS: 2000, ToMS: 4000, At: at, By: "auditor@example.com"}
	if len(m.Redactions) != 1 || m.Redactions[0] != want {
		t.Errorf("redactions %+v, want %+v", m.Redactions, want)
	}
	if m.SHA256 == facts.SHA256 || m.RecordingID != facts.RecordingID || m.DurationMS != facts.DurationMS ||
		len(m.Tracks) != 2 || len(m.Supervisors) != 1 || m.Clock != "sender" || !m.StartedAt.Equal(facts.StartedAt) {
		t.Errorf("facts did not carry over: %+v", m.Facts)
	}
	if res.Redaction.VideoFrames == 0 || res.Redaction.AudioPackets == 0 {
		t.Errorf("nothing redacted: %+v", res.Redaction)
	}
	verifyFile(t, in, signed, pub) // the original is untouched

	// A second redaction of the redacted file keeps the history.
	out2 := filepath.Join(t.TempDir(), "twice.webm")
	res2, err := Redact(RedactRequest{In: out, Out: out2, From: 5 * time.Second, To: 5500 * time.Millisecond, By: "b", Manifest: res.Manifest, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if m2 := verifyFile(t, out2, res2.Manifest, pub); len(m2.Redactions) != 2 || m2.Redactions[0] != want || m2.Redactions[1].OriginalSHA256 != m.SHA256 {
		t.Errorf("history %+v", m2.Redactions)
	}

	// Without a manifest only the file is known; without a key the manifest is unsigned.
	out3 := filepath.Join(t.TempDir(), "bare.webm")
	res3, err := Redact(RedactRequest{In: in, Out: out3, From: 0, To: time.Second, By: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(strings.NewReader(""), res3.Manifest, pub); !errors.Is(err, ErrMalformed) {
		t.Errorf("unsigned manifest: %v", err)
	}
	if res3.Facts.RecordingID != "rec" || res3.Facts.Format != "webm" || res3.Facts.DurationMS != facts.DurationMS || res3.Facts.Redactions[0].OriginalSHA256 != facts.SHA256 {
		t.Errorf("bare facts %+v", res3.Facts)
	}
}

func TestRedactRefuses(t *testing.T) {
	key := newKey(t)
	in, signed, _ := signedRecording(t, key)
	other := testrecording.Record(t, t.TempDir(), testrecording.Options{Format: "ogg", Length: 2 * time.Second})
	otherSigned, err := Sign(FromManifest(other), key)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Replace(signed, []byte(`"recording_id":"rec"`), []byte(`"recording_id":"rex"`), 1)
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		req  RedactRequest
		says string
	}{
		{"no one", RedactRequest{In: in, From: 0, To: time.Second, Key: key}, "who redacts"},
		{"another file's manifest", RedactRequest{In: in, From: 0, To: time.Second, By: "a", Manifest: otherSigned, Key: key}, "the file does not match the manifest"},
		{"another file's manifest, another key", RedactRequest{In: in, From: 0, To: time.Second, By: "a", Manifest: otherSigned, Key: newKey(t)}, "describes a file with sha256"},
		{"altered manifest", RedactRequest{In: in, From: 0, To: time.Second, By: "a", Manifest: tampered, Key: key}, "changed after it was signed"},
		{"empty span", RedactRequest{In: in, From: time.Second, To: time.Second, By: "a", Key: key}, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Out = filepath.Join(dir, tc.name+".webm")
			_, err := Redact(tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err %v, want %q", err, tc.says)
			}
			if _, err := os.Stat(tc.req.Out); err == nil {
				t.Error("output written")
			}
		})
	}
}

type recordingsMap map[string][2]string // id -> media path, manifest path

func (m recordingsMap) Recording(_ context.Context, id string) (string, []byte, error) {
	r, ok := m[id]
	if !ok {
		return "", nil, ErrUnknownRecording
	}
	b, err := os.ReadFile(r[1])
	return r[0], b, err
}

func TestRedactHandler(t *testing.T) {
	key := newKey(t)
	in, signed, facts := signedRecording(t, key)
	mpath := in + ".manifest.json"
	if err := os.WriteFile(mpath, signed, 0o600); err != nil {
		t.Fatal(err)
	}
	h := &RedactHandler{
		Recordings: recordingsMap{"rec": {in, mpath}}, Key: key,
		Identity: func(r *http.Request) (string, error) {
			if u, _, ok := r.BasicAuth(); ok {
				return u, nil
			}
			return "", errors.New("who are you?")
		},
		Now: func() time.Time { return time.UnixMilli(1743500000000) },
	}
	do := func(method, body string, auth bool) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/admin/redact", strings.NewReader(body))
		if auth {
			r.SetBasicAuth("operator-1", "x")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	w := do("POST", `{"recording_id":"rec","from_ms":1000,"to_ms":2500}`, true)
	if w.Code != http.StatusOK {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	var resp RedactResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.File != "rec.redacted-1743500000000.webm" || resp.ManifestFile != resp.File+".manifest.json" || resp.Redaction.AudioPackets == 0 {
		t.Errorf("response %+v", resp)
	}
	out := filepath.Join(filepath.Dir(in), resp.File)
	onDisk, err := os.ReadFile(filepath.Join(filepath.Dir(in), resp.ManifestFile))
	if err != nil || !bytes.Equal(onDisk, resp.Manifest) {
		t.Fatalf("manifest on disk: %v", err)
	}
	m := verifyFile(t, out, onDisk, key.Public().(ed25519.PublicKey))
	if len(m.Redactions) != 1 || m.Redactions[0].By != "operator-1" || m.Redactions[0].OriginalSHA256 != facts.SHA256 {
		t.Errorf("redactions %+v", m.Redactions)
	}
	for _, tc := range []struct {
		method, body string
		auth         bool
		code         int
	}{
		{"GET", "", true, http.StatusMethodNotAllowed},
		{"POST", `{"recording_id":"rec","from_ms":1000,"to_ms":2500}`, false, http.StatusForbidden},
		{"POST", `{"recording_id":"nope","from_ms":1000,"to_ms":2500}`, true, http.StatusNotFound},
		{"POST", `{"recording_id":"rec","from_ms":3000,"to_ms":2500}`, true, http.StatusBadRequest},
		{"POST", `{"recording_id":"rec","to_ms":2500}`, true, http.StatusBadRequest},
		{"POST", `not json`, true, http.StatusBadRequest},
		// The same millisecond again: the output exists, nothing is overwritten.
		{"POST", `{"recording_id":"rec","from_ms":1000,"to_ms":2500}`, true, http.StatusUnprocessableEntity},
	} {
		if w := do(tc.method, tc.body, tc.auth); w.Code != tc.code {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.body, w.Code, w.Body, tc.code)
		}
	}
}
