package evidence

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
)

// Algorithm is the only signature algorithm of evidence_version 1.
const Algorithm = "Ed25519"

// MaxManifestSize bounds what Verify reads as a manifest.
const MaxManifestSize = 4 << 20

// Signature is the "signature" member of a signed manifest.
type Signature struct {
	// Algorithm is always "Ed25519" (RFC 8032).
	Algorithm string `json:"alg"`
	// KeyID is the hex SHA-256 of the signing public key's PKIX (SubjectPublicKeyInfo)
	// DER encoding, so a verifier holding several keys knows which one to use.
	KeyID string `json:"key_id"`
	// Value is the signature, base64 (RFC 4648 §4, padded), of the RFC 8785 canonical
	// form of the manifest without its "signature" member.
	Value string `json:"value"`
}

// Manifest is a signed manifest, as Verify returns it.
type Manifest struct {
	Facts
	Signature Signature `json:"signature"`
}

// Errors of Verify; each comes wrapped with the details of what did not match.
var (
	// ErrMalformed: the manifest is not a signed manifest this package can read.
	ErrMalformed = errors.New("not a readable signed manifest")
	// ErrWrongKey: the manifest names another signing key than the one given.
	ErrWrongKey = errors.New("signed with another key")
	// ErrSignature: the signature does not match the manifest's content.
	ErrSignature = errors.New("the signature does not match the manifest")
	// ErrMedia: the file is not the one the manifest describes.
	ErrMedia = errors.New("the file does not match the manifest")
)

// Sign returns the signed manifest of f: its canonical JSON (RFC 8785) with a "signature"
// member, which is itself canonical. f.Version is set to Version.
func Sign(f Facts, key ed25519.PrivateKey) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("evidence: not an Ed25519 private key")
	}
	if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("evidence: the media sha256 %q is not a hex SHA-256", f.SHA256)
	}
	f.Version = Version
	body, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("evidence: encode facts: %w", err)
	}
	canon, err := Canonicalize(body)
	if err != nil {
		return nil, fmt.Errorf("evidence: %w", err)
	}
	sig := Signature{
		Algorithm: Algorithm,
		KeyID:     KeyID(key.Public().(ed25519.PublicKey)),
		Value:     base64.StdEncoding.EncodeToString(ed25519.Sign(key, canon)),
	}
	doc, err := json.Marshal(Manifest{Facts: f, Signature: sig})
	if err != nil {
		return nil, fmt.Errorf("evidence: encode manifest: %w", err)
	}
	return Canonicalize(doc)
}

// Verify checks a signed manifest against the public key and the media file (read to its
// end), and returns the manifest. The error says what did not match (ErrMalformed,
// ErrWrongKey, ErrSignature, ErrMedia), with the values that differ.
func Verify(media io.Reader, manifest []byte, pub ed25519.PublicKey) (*Manifest, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("not an Ed25519 public key")
	}
	if len(manifest) > MaxManifestSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrMalformed, MaxManifestSize)
	}
	body, sigJSON, err := canonicalWithout(manifest, "signature")
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if sigJSON == nil {
		return nil, fmt.Errorf("%w: it has no signature", ErrMalformed)
	}
	var sig Signature
	if err := json.Unmarshal(sigJSON, &sig); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	}
	if sig.Algorithm != Algorithm {
		return nil, fmt.Errorf("%w: signature algorithm %q, want %q", ErrMalformed, sig.Algorithm, Algorithm)
	}
	raw, err := base64.StdEncoding.DecodeString(sig.Value)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: the signature value is not a base64 Ed25519 signature", ErrMalformed)
	}
	if id := KeyID(pub); sig.KeyID != "" && sig.KeyID != id {
		return nil, fmt.Errorf("%w: the manifest was signed with key %s, the key given is %s", ErrWrongKey, sig.KeyID, id)
	}
	if !ed25519.Verify(pub, body, raw) {
		if sig.KeyID == "" {
			return nil, fmt.Errorf("%w: its content was changed after it was signed, or another key signed it", ErrSignature)
		}
		return nil, fmt.Errorf("%w: its content was changed after it was signed", ErrSignature)
	}
	var m Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if m.Version != Version {
		return nil, fmt.Errorf("%w: evidence_version %d, this verifier reads %d", ErrMalformed, m.Version, Version)
	}
	sum, size, err := HashMedia(media)
	if err != nil {
		return nil, fmt.Errorf("read the file: %w", err)
	}
	switch {
	case sum != m.SHA256 && size != m.SizeBytes:
		return nil, fmt.Errorf("%w: it has %d bytes with sha256 %s; the manifest says %d bytes with sha256 %s", ErrMedia, size, sum, m.SizeBytes, m.SHA256)
	case sum != m.SHA256:
		return nil, fmt.Errorf("%w: its sha256 is %s; the manifest says %s (same size, %d bytes: the content was changed)", ErrMedia, sum, m.SHA256, size)
	case size != m.SizeBytes:
		return nil, fmt.Errorf("%w: it has %d bytes; the manifest says %d", ErrMedia, size, m.SizeBytes)
	}
	return &m, nil
}

// HashMedia returns the hex SHA-256 and the size of everything r yields.
func HashMedia(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// KeyID identifies a public key: the hex SHA-256 of its PKIX DER encoding.
func KeyID(pub ed25519.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// ParsePrivateKey reads an Ed25519 private key from PEM ("PRIVATE KEY", PKCS#8), as
// `openssl genpkey -algorithm ed25519` writes it.
func ParsePrivateKey(pemData []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(pemData)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" (PKCS#8)")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("PKCS#8: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 key", k)
	}
	return ek, nil
}

// ParsePublicKey reads an Ed25519 public key from PEM ("PUBLIC KEY", PKIX), as
// `openssl pkey -pubout` writes it.
func ParsePublicKey(pemData []byte) (ed25519.PublicKey, error) {
	blk, _ := pem.Decode(pemData)
	switch {
	case blk == nil:
		return nil, errors.New("not PEM")
	case blk.Type == "PRIVATE KEY":
		return nil, errors.New("this is a private key; verify with its public key (openssl pkey -in KEY -pubout)")
	case blk.Type != "PUBLIC KEY":
		return nil, fmt.Errorf("a PEM %q, not a \"PUBLIC KEY\"", blk.Type)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("PKIX: %w", err)
	}
	ek, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an Ed25519 key", k)
	}
	return ek, nil
}

// LoadPrivateKey reads ParsePrivateKey's PEM from a file (the -evidence-key flag).
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	return loadKey("evidence key", path, ParsePrivateKey)
}

// LoadPublicKey reads ParsePublicKey's PEM from a file.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	return loadKey("public key", path, ParsePublicKey)
}

func loadKey[K any](what, path string, parse func([]byte) (K, error)) (K, error) {
	var zero K
	b, err := os.ReadFile(path)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", what, err)
	}
	k, err := parse(b)
	if err != nil {
		return zero, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return k, nil
}
