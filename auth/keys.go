package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxKeyFileSize bounds what LoadPublicKeyFile reads; a PEM public key or
// certificate is a few KiB, so anything far larger is a wrong path.
const maxKeyFileSize = 1 << 20

// minRSABits is the smallest RSA modulus accepted for RS256 (NIST SP 800-131A
// disallows less than 2048 bits for signatures).
const minRSABits = 2048

// minHS256SecretLen is RFC 7518 §3.2: an HS256 key must be at least as long
// as the hash output, 256 bits.
const minHS256SecretLen = 32

// LoadPublicKeyFile reads the first key in a PEM file, for -auth-public-key.
// It accepts a PKIX "PUBLIC KEY", a PKCS #1 "RSA PUBLIC KEY" or a
// "CERTIFICATE" (whose subject key is used; the certificate's validity and
// chain are not checked, since only the key matters for JWT signatures). The
// key must be RSA or ECDSA; NewVerifier checks its size and curve.
func LoadPublicKeyFile(path string) (crypto.PublicKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load public key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("load public key %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("load public key %s: file larger than %d bytes", path, maxKeyFileSize)
	}
	key, err := parsePublicKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("load public key %s: %w", path, err)
	}
	return key, nil
}

func parsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE PEM block")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			cert, err = x509.ParseCertificate(block.Bytes)
			if err == nil {
				key = cert.PublicKey
			}
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			// Refuse rather than skip: the operator pointed the server at a
			// secret it should not hold.
			return nil, fmt.Errorf("found a %s block; give the public key instead", block.Type)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %s block: %w", block.Type, err)
		}
		if err := checkPublicKey(key); err != nil {
			return nil, err
		}
		return key, nil
	}
}

// checkPublicKey accepts the key types and strengths the verifier can pin
// to one algorithm each: RSA ≥ 2048 bits for RS256, ECDSA P-256 for ES256.
func checkPublicKey(key any) error {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N == nil || k.N.BitLen() < minRSABits {
			return fmt.Errorf("RSA key has %d bits, want at least %d", bitLen(k), minRSABits)
		}
		return nil
	case *ecdsa.PublicKey:
		// ES256 is ECDSA over P-256 (RFC 7518 §3.4); other curves would need
		// ES384/ES512, which this verifier does not accept.
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ECDSA key on curve %s, want P-256 for ES256", curveName(k))
		}
		return nil
	default:
		return fmt.Errorf("unsupported public key type %T, want RSA or ECDSA P-256", key)
	}
}

func bitLen(k *rsa.PublicKey) int {
	if k.N == nil {
		return 0
	}
	return k.N.BitLen()
}

func curveName(k *ecdsa.PublicKey) string {
	if k.Curve == nil {
		return "none"
	}
	return k.Curve.Params().Name
}
