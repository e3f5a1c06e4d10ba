package auth_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/auth"
)

func TestLoadPublicKeyFile(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	certDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "issuer"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "issuer"}}, &ecKey.PublicKey, ecKey)
	if err != nil {
		t.Fatal(err)
	}
	mustPKIX := func(k any) []byte {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	pemOf := func(typ string, der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}) }

	tests := []struct {
		name    string
		data    []byte
		wantRSA bool
		wantEC  bool
	}{
		{"PKIX RSA", pemOf("PUBLIC KEY", mustPKIX(&rsaKey.PublicKey)), true, false},
		{"PKCS1 RSA", pemOf("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)), true, false},
		{"PKIX ECDSA", pemOf("PUBLIC KEY", mustPKIX(&ecKey.PublicKey)), false, true},
		{"certificate", pemOf("CERTIFICATE", certDER), false, true},
		{"leading other block", append(pemOf("EC PARAMETERS", []byte{6, 8, 42}), pemOf("PUBLIC KEY", mustPKIX(&ecKey.PublicKey))...), false, true},
		{"ed25519", pemOf("PUBLIC KEY", mustPKIX(edPub)), false, false},
		{"private key", pemOf("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey)), false, false},
		{"no PEM", []byte("hello"), false, false},
		{"bad DER", pemOf("PUBLIC KEY", []byte{1, 2, 3}), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key.pem")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := auth.LoadPublicKeyFile(path)
			if !tt.wantRSA && !tt.wantEC {
				if err == nil {
					t.Fatalf("LoadPublicKeyFile = %T, want error", k)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadPublicKeyFile: %v", err)
			}
			switch k := k.(type) {
			case *rsa.PublicKey:
				if !tt.wantRSA || !k.Equal(&rsaKey.PublicKey) {
					t.Errorf("got RSA key, want RSA=%v", tt.wantRSA)
				}
			case *ecdsa.PublicKey:
				if !tt.wantEC || !k.Equal(&ecKey.PublicKey) {
					t.Errorf("got ECDSA key, want ECDSA=%v", tt.wantEC)
				}
			default:
				t.Errorf("got %T", k)
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		if _, err := auth.LoadPublicKeyFile(filepath.Join(t.TempDir(), "nope.pem")); err == nil {
			t.Fatal("want error")
		}
	})
}
