package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/evidence"
	"github.com/rtmrec/rtmrec/internal/testrecording"
)

// keyFiles writes an Ed25519 key pair as the operator would have it (PKCS#8, PKIX PEM).
func keyFiles(t *testing.T, dir, name string) (priv, pub string) {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(k)
	pk, _ := x509.MarshalPKIXPublicKey(k.Public())
	priv, pub = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".pub.pem")
	writeFile(t, priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}))
	writeFile(t, pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pk}))
	return priv, pub
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// runCmd runs a subcommand as main would, and returns its exit code and output.
func runCmd(cmd func([]string, io.Writer, io.Writer) int, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := cmd(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// signedFiles records the tone with the camera, signs its manifest with the key file, and
// returns the media and manifest paths.
func signedFiles(t *testing.T, dir, privPath string) (string, string, evidence.Facts) {
	t.Helper()
	m := testrecording.Record(t, dir, testrecording.Options{Format: "webm", Video: true, Length: 8 * time.Second})
	key, err := evidence.LoadPrivateKey(privPath)
	if err != nil {
		t.Fatal(err)
	}
	facts := evidence.FromManifest(m)
	signed, err := evidence.Sign(facts, key)
	if err != nil {
		t.Fatal(err)
	}
	mpath := m.Path + ".manifest.json"
	writeFile(t, mpath, signed)
	return m.Path, mpath, facts
}

func TestVerifyCommand(t *testing.T) {
	dir := t.TempDir()
	priv, pub := keyFiles(t, dir, "evidence")
	_, otherPub := keyFiles(t, dir, "other")
	media, manifest, facts := signedFiles(t, dir, priv)
	raw, _ := os.ReadFile(media)
	tampered := bytes.Clone(raw)
	tampered[len(tampered)-100] ^= 0xff
	tamperedFile := filepath.Join(dir, "tampered.webm")
	writeFile(t, tamperedFile, tampered)
	signed, _ := os.ReadFile(manifest)
	altered := bytes.Replace(signed, []byte(`"client_id":"agent-7"`), []byte(`"client_id":"agent-8"`), 1)
	if bytes.Equal(altered, signed) {
		t.Fatal("the test did not alter the manifest")
	}
	alteredFile := filepath.Join(dir, "altered.json")
	writeFile(t, alteredFile, altered)

	code, stdout, stderr := runCmd(runVerify, media, manifest, "-key", pub)
	if code != 0 || !strings.Contains(stderr, "OK") {
		t.Fatalf("genuine: exit %d\n%s", code, stderr)
	}
	var printed evidence.Facts
	if err := json.Unmarshal([]byte(stdout), &printed); err != nil || printed.SHA256 != facts.SHA256 || printed.RecordingID != "rec" || len(printed.Tracks) != 2 {
		t.Errorf("printed facts %v: %s", err, stdout)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		says string
	}{
		{"flags first", []string{"-key", pub, media, manifest}, 0, "OK"},
		{"tampered file", []string{tamperedFile, manifest, "-key", pub}, 1, "its sha256 is"},
		{"tampered manifest", []string{media, alteredFile, "-key", pub}, 1, "changed after it was signed"},
		{"wrong key", []string{media, manifest, "-key", otherPub}, 1, "signed with key"},
		{"private key given", []string{media, manifest, "-key", priv}, 2, "this is a private key"},
		{"no key", []string{media, manifest}, 2, "usage"},
		{"one file", []string{media, "-key", pub}, 2, "usage"},
		{"missing file", []string{media + ".nope", manifest, "-key", pub}, 2, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(runVerify, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.says) {
				t.Fatalf("exit %d, want %d saying %q\n%s", code, tc.code, tc.says, stderr)
			}
			if code != 0 && stdout != "" {
				t.Errorf("facts printed for a failed verification: %s", stdout)
			}
		})
	}
}

// TestRedactCommand: `rtmrec redact` on the tone recording gives a file that decodes, keeps
// its duration, has silence in the span and the tone outside, no video in the span, and
// a new signed manifest that `rtmrec verify` accepts and that names the original hash.
func TestRedactCommand(t *testing.T) {
	dir := t.TempDir()
	priv, pub := keyFiles(t, dir, "evidence")
	media, manifest, facts := signedFiles(t, dir, priv)
	out := filepath.Join(dir, "redacted.webm")
	code, stdout, stderr := runCmd(runRedact, "-in", media, "-from", "0:03", "-to", "5s", "-out", out, "-by", "Compliance Officer", "-key", priv, "-manifest", manifest)
	if code != 0 {
		t.Fatalf("redact: exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "signed manifest") {
		t.Errorf("output: %s", stdout)
	}
	code, printed, stderr := runCmd(runVerify, out, out+".manifest.json", "-key", pub)
	if code != 0 {
		t.Fatalf("verify the redacted file: exit %d\n%s", code, stderr)
	}
	var f evidence.Facts
	if err := json.Unmarshal([]byte(printed), &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Redactions) != 1 || f.Redactions[0].OriginalSHA256 != facts.SHA256 || f.Redactions[0].By != "Compliance Officer" ||
		f.Redactions[0].FromMS != 3000 || f.Redactions[0].ToMS != 5000 || f.DurationMS != facts.DurationMS {
		t.Errorf("redacted facts %+v", f)
	}
	// The original still verifies with its own manifest; the redacted file does not.
	if code, _, _ := runCmd(runVerify, media, manifest, "-key", pub); code != 0 {
		t.Error("the original no longer verifies")
	}
	if code, _, _ := runCmd(runVerify, out, manifest, "-key", pub); code != 1 {
		t.Error("the redacted file verifies against the original manifest")
	}

	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		if os.Getenv("RTMREC_REQUIRE_TOOLS") == "1" {
			t.Fatal("ffmpeg not found and RTMREC_REQUIRE_TOOLS=1")
		}
		t.Skip("ffmpeg not installed: skipping the decode checks (set RTMREC_REQUIRE_TOOLS=1 to fail instead)")
	}
	if b, _ := exec.Command(ffmpeg, "-v", "error", "-xerror", "-i", out, "-enc_time_base", "-1", "-f", "null", "-").CombinedOutput(); len(b) > 0 {
		t.Errorf("ffmpeg decode: %s", b)
	}
	for _, tc := range []struct {
		at     string
		silent bool
	}{{"1.5", false}, {"3.5", true}, {"4.2", true}, {"6.5", false}} {
		level := astatsRMS(t, ffmpeg, out, tc.at)
		if tc.silent != (level < -90) || (!tc.silent && level < -30) {
			t.Errorf("%s s: RMS %.1f dBFS, want silent=%v", tc.at, level, tc.silent)
		}
	}
}

// astatsRMS is the RMS level (dBFS; -inf as -200) of the audio in [at, at+0.5 s).
func astatsRMS(t *testing.T, ffmpeg, path, at string) float64 {
	t.Helper()
	b, err := exec.Command(ffmpeg, "-v", "info", "-ss", at, "-t", "0.5", "-i", path, "-map", "0:a",
		"-af", "astats=measure_overall=RMS_level:measure_perchannel=none", "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("astats: %v %s", err, b)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.Index(line, "RMS level dB:"); i >= 0 {
			v := strings.TrimSpace(line[i+len("RMS level dB:"):])
			if v == "-inf" {
				return -200
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("astats %q", line)
			}
			return f
		}
	}
	t.Fatalf("no RMS level in\n%s", b)
	return 0
}

func TestRedactCommandUsage(t *testing.T) {
	dir := t.TempDir()
	media := testrecording.Record(t, dir, testrecording.Options{Format: "ogg", Length: 2 * time.Second}).Path
	for _, tc := range []struct {
		args []string
		says string
	}{
		{[]string{"-in", media, "-from", "1s", "-out", filepath.Join(dir, "o.ogg")}, "usage"},
		{[]string{"-in", media, "-from", "soon", "-to", "2s", "-out", filepath.Join(dir, "o.ogg")}, "-from"},
		{[]string{"-in", media, "-from", "1s", "-to", "0.5s", "-out", filepath.Join(dir, "o.ogg")}, "empty"},
		{[]string{"-in", media, "-from", "0s", "-to", "1s", "-out", media}, "already exists"},
	} {
		if code, _, stderr := runCmd(runRedact, tc.args...); code != 2 || !strings.Contains(stderr, tc.says) {
			t.Errorf("%v: exit %d, %q; want 2 saying %q", tc.args, code, stderr, tc.says)
		}
	}
	// Without a key the manifest records the redaction, unsigned, and says so.
	out := filepath.Join(dir, "o.ogg")
	code, stdout, stderr := runCmd(runRedact, "-in", media, "-from", "0:00.5", "-to", "1s", "-out", out)
	if code != 0 || !strings.Contains(stdout, "WITHOUT a signature") {
		t.Fatalf("exit %d %s %s", code, stdout, stderr)
	}
	if b, err := os.ReadFile(out + ".manifest.json"); err != nil || !strings.Contains(string(b), `"from_ms":500`) {
		t.Errorf("unsigned manifest %s %v", b, err)
	}
}

func TestParseOffset(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"1m20s": 80 * time.Second, "80s": 80 * time.Second, "1:20": 80 * time.Second, "01:01:20.5": time.Hour + 80500*time.Millisecond, "20": 20 * time.Second, "0.25": 250 * time.Millisecond,
	} {
		if got, err := parseOffset(in); err != nil || got != want {
			t.Errorf("%q: %v %v, want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "1:60", "a:b", "1:2:3:4", "-5"} {
		if _, err := parseOffset(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
