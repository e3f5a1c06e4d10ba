package auth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/rtmrec/rtmrec/auth"
)

var (
	testNow     = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	testSecret  = []byte("0123456789abcdef0123456789abcdef")
	testSecret2 = []byte("fedcba9876543210fedcba9876543210")
)

func fixedNow() time.Time { return testNow }

// validClaims returns the payload of a token every test verifier accepts;
// cases delete or override fields from it.
func validClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub":  "alice",
		"aud":  []string{"rtmrec"},
		"exp":  testNow.Add(time.Hour).Unix(),
		"iat":  testNow.Add(-time.Minute).Unix(),
		"role": "client",
	}
}

func sign(t testing.TB, m jwt.SigningMethod, key any, c jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", m.Alg(), err)
	}
	return s
}

func signWithHeader(t testing.TB, k string, v any) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, validClaims())
	tok.Header[k] = v
	s, err := tok.SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newVerifier(t testing.TB, cfg auth.Config) *auth.Verifier {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// unsignedToken builds an alg "none" token by hand, as an attacker would.
func unsignedToken(t testing.TB, c jwt.MapClaims) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "none", "typ": "JWT"}) + "." + enc(c) + "."
}

func with(c jwt.MapClaims, k string, v any) jwt.MapClaims {
	c[k] = v
	return c
}

func without(c jwt.MapClaims, k string) jwt.MapClaims {
	delete(c, k)
	return c
}

func TestVerifyHS256(t *testing.T) {
	v := newVerifier(t, auth.Config{HS256Secrets: [][]byte{testSecret}})
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, testSecret, c) }

	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{"valid", hs(validClaims()), nil},
		{"aud as string", hs(with(validClaims(), "aud", "rtmrec")), nil},
		{"aud among others", hs(with(validClaims(), "aud", []string{"other", "rtmrec"})), nil},
		{"expired within leeway", hs(with(validClaims(), "exp", testNow.Add(-20*time.Second).Unix())), nil},
		{"nbf within leeway", hs(with(validClaims(), "nbf", testNow.Add(20*time.Second).Unix())), nil},
		{"supervisor", hs(with(with(validClaims(), "role", "supervisor"), "sessions", []string{"s1"})), nil},

		{"empty", "", auth.ErrNoToken},
		{"garbage", "not-a-token", auth.ErrMalformed},
		{"too long", hs(with(validClaims(), "pad", strings.Repeat("x", auth.MaxTokenLen))), auth.ErrMalformed},
		{"forged", sign(t, jwt.SigningMethodHS256, []byte("wrong-secret-wrong-secret-wrong!"), validClaims()), auth.ErrBadSignature},
		{"tampered payload", tamper(t, hs(validClaims())), auth.ErrBadSignature},
		{"alg none", unsignedToken(t, validClaims()), auth.ErrAlgorithm},
		{"crit header", signWithHeader(t, "crit", []string{"exp"}), auth.ErrMalformed},
		{"HS384", sign(t, jwt.SigningMethodHS384, testSecret, validClaims()), auth.ErrAlgorithm},
		{"expired", hs(with(validClaims(), "exp", testNow.Add(-time.Minute).Unix())), auth.ErrExpired},
		{"nbf in future", hs(with(validClaims(), "nbf", testNow.Add(time.Minute).Unix())), auth.ErrNotYetValid},
		{"iat in future", hs(with(validClaims(), "iat", testNow.Add(time.Minute).Unix())), auth.ErrNotYetValid},
		{"wrong audience", hs(with(validClaims(), "aud", "someone-else")), auth.ErrAudience},
		{"missing audience", hs(without(validClaims(), "aud")), auth.ErrAudience},
		{"missing exp", hs(without(validClaims(), "exp")), auth.ErrMissingClaim},
		{"missing sub", hs(without(validClaims(), "sub")), auth.ErrMissingClaim},
		{"empty sub", hs(with(validClaims(), "sub", "")), auth.ErrMissingClaim},
		{"missing role", hs(without(validClaims(), "role")), auth.ErrMissingClaim},
		{"unknown role", hs(with(validClaims(), "role", "admin")), auth.ErrInvalidClaim},
		{"exp not a number", hs(with(validClaims(), "exp", "tomorrow")), auth.ErrMalformed},
		{"sessions not a list", hs(with(validClaims(), "sessions", "s1")), auth.ErrMalformed},
		{"sessions of numbers", hs(with(validClaims(), "sessions", []int{1})), auth.ErrMalformed},
		{"empty session id", hs(with(validClaims(), "sessions", []string{""})), auth.ErrInvalidClaim},
		{"relative upload prefix", hs(with(validClaims(), "upload_prefixes", []string{"/x"})), auth.ErrInvalidClaim},
		{"webhook prefix with dot segment", hs(with(validClaims(), "webhook_prefixes", []string{"https://a.com/x/../y"})), auth.ErrInvalidClaim},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(tt.token)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.Subject != "alice" {
					t.Errorf("Subject = %q, want alice", c.Subject)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
			}
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("error %v does not match ErrInvalidToken", err)
			}
			if c != nil {
				t.Errorf("claims = %+v on error", c)
			}
			assertNoTokenEcho(t, err, tt.token)
		})
	}
}

// assertNoTokenEcho checks that no segment of the token leaks into the error
// (and so into logs or the 401 body).
func assertNoTokenEcho(t *testing.T, err error, token string) {
	t.Helper()
	for seg := range strings.SplitSeq(token, ".") {
		if len(seg) >= 8 && strings.Contains(err.Error(), seg) {
			t.Errorf("error %q echoes the token", err)
		}
	}
}

func tamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	payload = []byte(strings.Replace(string(payload), `"client"`, `"supervisor"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

func TestVerifyClaims(t *testing.T) {
	v := newVerifier(t, auth.Config{HS256Secrets: [][]byte{testSecret}})
	c := validClaims()
	c["role"] = "supervisor"
	c["tenant"] = "acme"
	c["sessions"] = []string{"s1", "s2"}
	c["upload_prefixes"] = []string{"https://bucket.example.com/rec/"}
	c["webhook_prefixes"] = []string{"https://hooks.example.com/rtm"}
	got, err := v.Verify(sign(t, jwt.SigningMethodHS256, testSecret, c))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := auth.Claims{
		Subject:         "alice",
		Role:            auth.RoleSupervisor,
		Tenant:          "acme",
		Sessions:        []string{"s1", "s2"},
		UploadPrefixes:  []string{"https://bucket.example.com/rec/"},
		WebhookPrefixes: []string{"https://hooks.example.com/rtm"},
		ExpiresAt:       testNow.Add(time.Hour),
	}
	if got.Subject != want.Subject || got.Role != want.Role || got.Tenant != want.Tenant ||
		!slices.Equal(got.Sessions, want.Sessions) ||
		!slices.Equal(got.UploadPrefixes, want.UploadPrefixes) ||
		!slices.Equal(got.WebhookPrefixes, want.WebhookPrefixes) ||
		!got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("claims = %+v, want %+v", *got, want)
	}
}

func TestVerifyRotation(t *testing.T) {
	v := newVerifier(t, auth.Config{HS256Secrets: [][]byte{testSecret, testSecret2}})
	for i, secret := range [][]byte{testSecret, testSecret2} {
		if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, validClaims())); err != nil {
			t.Errorf("token from secret #%d: %v", i+1, err)
		}
	}
	old := newVerifier(t, auth.Config{HS256Secrets: [][]byte{testSecret}})
	if _, err := old.Verify(sign(t, jwt.SigningMethodHS256, testSecret2, validClaims())); !errors.Is(err, auth.ErrBadSignature) {
		t.Errorf("token from retired secret: err = %v, want ErrBadSignature", err)
	}
}

// writePEM writes a key in the given PEM form to a temp file and loads it
// back, so the tests go through the same path as -auth-public-key.
func writePEM(t testing.TB, blockType string, der []byte) crypto.PublicKey {
	t.Helper()
	path := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := auth.LoadPublicKeyFile(path)
	if err != nil {
		t.Fatalf("LoadPublicKeyFile(%s): %v", blockType, err)
	}
	return k
}

func pkixPEM(t testing.TB, pub any) crypto.PublicKey {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, "PUBLIC KEY", der)
}

func TestVerifyPublicKeys(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherEC, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, auth.Config{PublicKeys: []crypto.PublicKey{
		pkixPEM(t, &rsaKey.PublicKey),
		pkixPEM(t, &ecKey.PublicKey),
	}})

	rsaPub, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaPub})

	tests := []struct {
		name    string
		token   string
		wantErr error
	}{
		{"RS256", sign(t, jwt.SigningMethodRS256, rsaKey, validClaims()), nil},
		{"ES256", sign(t, jwt.SigningMethodES256, ecKey, validClaims()), nil},
		{"ES256 other key", sign(t, jwt.SigningMethodES256, otherEC, validClaims()), auth.ErrBadSignature},
		{"RS256 expired", sign(t, jwt.SigningMethodRS256, rsaKey, with(validClaims(), "exp", testNow.Add(-time.Hour).Unix())), auth.ErrExpired},
		// RS384 uses an accepted key type but is not pinned.
		{"RS384", sign(t, jwt.SigningMethodRS384, rsaKey, validClaims()), auth.ErrAlgorithm},
		{"PS256", sign(t, jwt.SigningMethodPS256, rsaKey, validClaims()), auth.ErrAlgorithm},
		// The classic confusion: the attacker signs HS256 with the public
		// key's PEM bytes, hoping the server uses its "key" as an HMAC secret.
		{"HS256 with public key PEM", sign(t, jwt.SigningMethodHS256, rsaPubPEM, validClaims()), auth.ErrAlgorithm},
		{"HS256 with public key DER", sign(t, jwt.SigningMethodHS256, rsaPub, validClaims()), auth.ErrAlgorithm},
		{"alg none", unsignedToken(t, validClaims()), auth.ErrAlgorithm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(tt.token)
			if tt.wantErr == nil && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify error = %v, want %v", err, tt.wantErr)
			}
		})
	}

	// With an HS secret configured as well, HS256 is an accepted alg, but
	// the public key must still never serve as the HMAC secret.
	both := newVerifier(t, auth.Config{
		HS256Secrets: [][]byte{testSecret},
		PublicKeys:   []crypto.PublicKey{&rsaKey.PublicKey},
	})
	if _, err := both.Verify(sign(t, jwt.SigningMethodHS256, rsaPubPEM, validClaims())); !errors.Is(err, auth.ErrBadSignature) {
		t.Errorf("HS256 signed with public key PEM: err = %v, want ErrBadSignature", err)
	}
	if _, err := both.Verify(sign(t, jwt.SigningMethodRS256, rsaKey, validClaims())); err != nil {
		t.Errorf("RS256 with HS secret also configured: %v", err)
	}
}

func TestNewVerifierRejects(t *testing.T) {
	smallRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  auth.Config
	}{
		{"no key", auth.Config{}},
		{"empty secret", auth.Config{HS256Secrets: [][]byte{{}}}},
		{"short secret", auth.Config{HS256Secrets: [][]byte{[]byte("secret")}}},
		{"1024-bit RSA", auth.Config{PublicKeys: []crypto.PublicKey{&smallRSA.PublicKey}}},
		{"P-384", auth.Config{PublicKeys: []crypto.PublicKey{&p384.PublicKey}}},
		{"private key", auth.Config{PublicKeys: []crypto.PublicKey{smallRSA}}},
		{"negative leeway", auth.Config{HS256Secrets: [][]byte{testSecret}, Leeway: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := auth.NewVerifier(tt.cfg); err == nil {
				t.Fatal("NewVerifier succeeded, want error")
			}
		})
	}
}

func TestVerifyConfig(t *testing.T) {
	t.Run("custom audience", func(t *testing.T) {
		v := newVerifier(t, auth.Config{HS256Secrets: [][]byte{testSecret}, Audience: "staging"})
		if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, testSecret, validClaims())); !errors.Is(err, auth.ErrAudience) {
			t.Errorf("aud rtmrec against audience staging: err = %v, want ErrAudience", err)
		}
		if _, err := v.Verify(sign(t, jwt.SigningMethodHS256, testSecret, with(validClaims(), "aud", "staging"))); err != nil {
			t.Errorf("aud staging: %v", err)
		}
	})
	t.Run("custom leeway", func(t *testing.T) {
		v := newVerifier(t, auth.Config{HS256Secrets: [][]byte{testSecret}, Leeway: 5 * time.Minute})
		tok := sign(t, jwt.SigningMethodHS256, testSecret, with(validClaims(), "exp", testNow.Add(-4*time.Minute).Unix()))
		if _, err := v.Verify(tok); err != nil {
			t.Errorf("expired 4m ago with 5m leeway: %v", err)
		}
	})
	t.Run("clock moves", func(t *testing.T) {
		now := testNow
		v := newVerifier(t, auth.Config{HS256Secrets: [][]byte{testSecret}, Now: func() time.Time { return now }})
		tok := sign(t, jwt.SigningMethodHS256, testSecret, validClaims())
		if _, err := v.Verify(tok); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		now = now.Add(2 * time.Hour)
		if _, err := v.Verify(tok); !errors.Is(err, auth.ErrExpired) {
			t.Errorf("after 2h: err = %v, want ErrExpired", err)
		}
	})
}

func BenchmarkVerifyHS256(b *testing.B) {
	v := newVerifier(b, auth.Config{HS256Secrets: [][]byte{testSecret}})
	benchVerify(b, v, sign(b, jwt.SigningMethodHS256, testSecret, validClaims()))
}

func BenchmarkVerifyRS256(b *testing.B) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	v := newVerifier(b, auth.Config{PublicKeys: []crypto.PublicKey{&key.PublicKey}})
	benchVerify(b, v, sign(b, jwt.SigningMethodRS256, key, validClaims()))
}

func BenchmarkVerifyES256(b *testing.B) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	v := newVerifier(b, auth.Config{PublicKeys: []crypto.PublicKey{&key.PublicKey}})
	benchVerify(b, v, sign(b, jwt.SigningMethodES256, key, validClaims()))
}

func benchVerify(b *testing.B, v *auth.Verifier, token string) {
	b.Helper()
	b.ReportAllocs()
	for b.Loop() {
		c, err := v.Verify(token)
		if err != nil || c.Subject != "alice" {
			b.Fatalf("Verify = %v, %v", c, err)
		}
	}
}
