package evidence

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/rtmrec/rtmrec/internal/testrecording"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signedRecording makes a real recording (tone + camera, a pause, a supervisor, Sender
// Reports) and returns its media path and signed manifest.
func signedRecording(t testing.TB, key ed25519.PrivateKey) (string, []byte, Facts) {
	t.Helper()
	m := testrecording.Record(t, t.TempDir(), testrecording.Options{
		Format: "webm", Video: true, Length: 6 * time.Second, SenderClock: -90 * time.Minute,
		Pauses: [][2]time.Duration{{2 * time.Second, 3 * time.Second}},
		Audit:  []testrecording.Visit{{Identity: "supervisor@example.com", SessionID: "sup-1", Joined: time.Second, Left: 4 * time.Second}},
	})
	f := FromManifest(m)
	signed, err := Sign(f, key)
	if err != nil {
		t.Fatal(err)
	}
	return m.Path, signed, f
}

func TestSignVerify(t *testing.T) {
	key := newKey(t)
	path, signed, facts := signedRecording(t, key)
	media, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)

	m, err := Verify(bytes.NewReader(media), signed, pub)
	if err != nil {
		t.Fatal(err)
	}
	if m.SHA256 != facts.SHA256 || m.Clock != "sender" || len(m.Tracks) != 2 || len(m.Pauses) != 1 || len(m.Supervisors) != 1 ||
		m.Supervisors[0].Identity != "supervisor@example.com" || m.Signature.KeyID != KeyID(pub) {
		t.Errorf("verified facts %+v", m)
	}
	if c, _ := Canonicalize(signed); !bytes.Equal(c, signed) {
		t.Error("the signed manifest is not itself canonical")
	}
	// Pretty-printing on the way (a webhook receiver re-encoding it) changes nothing.
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, signed, "", "    "); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(bytes.NewReader(media), pretty.Bytes(), pub); err != nil {
		t.Errorf("pretty-printed manifest: %v", err)
	}

	other := newKey(t).Public().(ed25519.PublicKey)
	tamperedMedia := bytes.Clone(media)
	tamperedMedia[len(tamperedMedia)/2] ^= 1
	for _, tc := range []struct {
		name     string
		media    []byte
		manifest []byte
		key      ed25519.PublicKey
		want     error
		says     string
	}{
		{"tampered file", tamperedMedia, signed, pub, ErrMedia, "the content was changed"},
		{"truncated file", media[:len(media)-1], signed, pub, ErrMedia, "bytes with sha256"},
		{"tampered manifest", media, bytes.Replace(signed, []byte(`"packets_lost":0`), []byte(`"packets_lost":1`), 1), pub, ErrSignature, "changed after it was signed"},
		{"added member", media, bytes.Replace(signed, []byte(`{`), []byte(`{"note":"x",`), 1), pub, ErrSignature, "changed after it was signed"},
		{"wrong key", media, signed, other, ErrWrongKey, KeyID(pub)},
		{"wrong key, key id removed", media, removeKeyID(t, signed), other, ErrSignature, "or another key"},
		{"no signature", media, removeMember(t, signed, "signature"), pub, ErrMalformed, "no signature"},
		{"not json", media, []byte("{"), pub, ErrMalformed, "canonical json"},
		{"duplicate member", media, bytes.Replace(signed, []byte(`{`), []byte(`{"sha256":"00",`), 1), pub, ErrMalformed, "appears twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "tampered manifest" && bytes.Equal(tc.manifest, signed) {
				t.Fatal("the test did not change the manifest")
			}
			_, err := Verify(bytes.NewReader(tc.media), tc.manifest, tc.key)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err %v, want %v saying %q", err, tc.want, tc.says)
			}
		})
	}
}

func removeMember(t *testing.T, doc []byte, name string) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, name)
	b, _ := json.Marshal(m)
	return b
}

func removeKeyID(t *testing.T, doc []byte) []byte {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	var sig Signature
	_ = json.Unmarshal(m["signature"], &sig)
	sig.KeyID = ""
	m["signature"], _ = json.Marshal(sig)
	b, _ := json.Marshal(m)
	return b
}

func TestSignRefuses(t *testing.T) {
	key := newKey(t)
	if _, err := Sign(Facts{Evidence: Evidence{SHA256: "abc"}}, key); err == nil {
		t.Error("signed without a media hash")
	}
	if _, err := Sign(Facts{Evidence: Evidence{SHA256: strings.Repeat("0", 64)}}, key[:10]); err == nil {
		t.Error("signed with a broken key")
	}
}

// TestKeysFromOpenSSL: keys made as the docs say (openssl) load, and a manifest signed
// with one verifies with the other.
func TestKeysFromOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("RTMREC_REQUIRE_TOOLS") == "1" {
			t.Fatal("openssl not found and RTMREC_REQUIRE_TOOLS=1")
		}
		t.Skip("openssl not installed: skipping the key format check (set RTMREC_REQUIRE_TOOLS=1 to fail instead)")
	}
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "key.pem"), filepath.Join(dir, "pub.pem")
	for _, args := range [][]string{{"genpkey", "-algorithm", "ed25519", "-out", priv}, {"pkey", "-in", priv, "-pubout", "-out", pub}} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	k, err := LoadPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Equal(k.Public()) {
		t.Fatal("the public key is not the private key's")
	}
	if _, err := LoadPublicKey(priv); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Errorf("a private key given as the public key: %v", err)
	}
	if _, err := LoadPrivateKey(pub); err == nil {
		t.Error("a public key accepted as the private key")
	}
	der, _ := x509.MarshalPKIXPublicKey(p)
	if _, err := ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err == nil {
		t.Error("a certificate block accepted")
	}
}

func TestFromManifestSupervisors(t *testing.T) {
	m := testrecording.Record(t, t.TempDir(), testrecording.Options{
		Format: "ogg", Length: 5 * time.Second,
		Audit: []testrecording.Visit{
			{Identity: "a", SessionID: "s1", Joined: time.Second, Left: 2 * time.Second},
			{Identity: "b", SessionID: "s2", Joined: 1500 * time.Millisecond},
			{Identity: "a", SessionID: "s1", Joined: 3 * time.Second, Left: 4 * time.Second},
		},
	})
	e := EvidenceOf(m)
	at := func(d time.Duration) time.Time { return testrecording.Start.Add(d) }
	want := []Supervisor{
		{"a", "s1", at(time.Second), at(2 * time.Second)},
		{"b", "s2", at(1500 * time.Millisecond), at(5 * time.Second)}, // still there at the end
		{"a", "s1", at(3 * time.Second), at(4 * time.Second)},
	}
	if len(e.Supervisors) != len(want) {
		t.Fatalf("supervisors %+v", e.Supervisors)
	}
	for i := range want {
		if g := e.Supervisors[i]; g.Identity != want[i].Identity || !g.JoinedAt.Equal(want[i].JoinedAt) || !g.LeftAt.Equal(want[i].LeftAt) {
			t.Errorf("visit %d: %+v, want %+v", i, g, want[i])
		}
	}
	if e.Clock != "server" || !e.StartedAt.Equal(at(0)) || !e.StoppedAt.Equal(at(5*time.Second)) {
		t.Errorf("times %s %v %v", e.Clock, e.StartedAt, e.StoppedAt)
	}

	// On the sender's clock, the visits move with the recording's times.
	m = testrecording.Record(t, t.TempDir(), testrecording.Options{
		Format: "ogg", Length: 5 * time.Second, SenderClock: -time.Hour,
		Audit: []testrecording.Visit{{Identity: "a", SessionID: "s1", Joined: time.Second, Left: 2 * time.Second}},
	})
	e = EvidenceOf(m)
	if e.Clock != "sender" || e.StartedAt.Sub(at(-time.Hour)).Abs() > 50*time.Millisecond ||
		e.Supervisors[0].JoinedAt.Sub(e.StartedAt).Round(10*time.Millisecond) != time.Second {
		t.Errorf("sender clock: %s started %v, visit %+v", e.Clock, e.StartedAt, e.Supervisors)
	}
}

// FuzzVerify: no manifest makes Verify panic, and none verifies without the key.
func FuzzVerify(f *testing.F) {
	key := newKey(f)
	sum := strings.Repeat("ab", 32)
	signed, err := Sign(Facts{RecordingID: "r", Evidence: Evidence{SHA256: sum}}, key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add([]byte(`{"signature":{"alg":"Ed25519","value":""}}`))
	other := newKey(f).Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := Verify(strings.NewReader(""), b, other); err == nil {
			t.Fatalf("verified with a key that signed nothing: %q", b)
		}
	})
}

// BenchmarkSign is the cost of signing one recording's manifest (two tracks, a pause, a
// supervisor visit). Hashing the media is not included: the recorder hashes every file
// anyway.
func BenchmarkSign(b *testing.B) {
	key := newKey(b)
	_, _, facts := signedRecording(b, key)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Sign(facts, key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyManifest is the cost of checking a manifest's signature (the media hash,
// about 1.5 GB/s, comes on top).
func BenchmarkVerifyManifest(b *testing.B) {
	key := newKey(b)
	path, signed, _ := signedRecording(b, key)
	media, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Verify(bytes.NewReader(media[:0]), signed, pub); !errors.Is(err, ErrMedia) {
			b.Fatal(err)
		}
	}
}
