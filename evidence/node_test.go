package evidence

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerifyInNode runs the documented verification in another language
// (docs/examples/verify-manifest.mjs, Node.js with no dependencies) on a real recording.
// Facts with awkward strings and numbers check that both sides canonicalize the same.
func TestVerifyInNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("RTMREC_REQUIRE_TOOLS") == "1" {
			t.Fatal("node not found and RTMREC_REQUIRE_TOOLS=1")
		}
		t.Skip("node not installed: skipping the verification in another language (set RTMREC_REQUIRE_TOOLS=1 to fail instead)")
	}
	script, err := filepath.Abs(filepath.Join("..", "docs", "examples", "verify-manifest.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	path, _, facts := signedRecording(t, key)
	facts.Identity = "Zoë \"Z\" O'Brien\t<zoe@example.com> \u2028 😀 \u0007"
	facts.Tracks[0].LossPercent = 0.1 + 0.2 // 0.30000000000000004
	facts.Tracks[0].JitterMS = 1e-7
	facts.Tracks[1].JitterMS = 123456789012345680000
	signed, err := Sign(facts, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var pretty bytes.Buffer
	_ = json.Indent(&pretty, signed, "", "  ")
	pub := write("pub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	manifest := write("manifest.json", pretty.Bytes())
	media, _ := os.ReadFile(path)
	tampered := bytes.Clone(media)
	tampered[len(tampered)/3] ^= 0x40
	otherDER, _ := x509.MarshalPKIXPublicKey(newKey(t).Public().(ed25519.PublicKey))
	changed := bytes.Replace(pretty.Bytes(), []byte(`"recording_id": "rec"`), []byte(`"recording_id": "rec2"`), 1)
	if bytes.Equal(changed, pretty.Bytes()) {
		t.Fatal("the test did not change the manifest")
	}

	for _, tc := range []struct {
		name, file, manifest, key string
		ok                        bool
		says                      string
	}{
		{"genuine", path, manifest, pub, true, "OK: " + path + " is recording rec"},
		{"tampered file", write("t.webm", tampered), manifest, pub, false, "is not the one signed"},
		{"tampered manifest", path, write("m.json", changed), pub, false, "signature does not match"},
		{"wrong key", path, manifest, write("other.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: otherDER})), false, "signed with key " + KeyID(key.Public().(ed25519.PublicKey))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(node, script, tc.file, tc.manifest, tc.key).CombinedOutput()
			if (err == nil) != tc.ok || !strings.Contains(string(out), tc.says) {
				t.Fatalf("node: %v\n%s\nwant ok=%v saying %q", err, out, tc.ok, tc.says)
			}
		})
	}
}

// TestDocsShowTheVerifier: the verifier shown in docs/evidence.md is the one tested here.
func TestDocsShowTheVerifier(t *testing.T) {
	script, err := os.ReadFile(filepath.Join("..", "docs", "examples", "verify-manifest.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join("..", "docs", "evidence.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(doc, script) {
		t.Error("docs/evidence.md does not show docs/examples/verify-manifest.mjs as it is")
	}
}
