// Package auth verifies the JWTs that clients and supervisors present to
// /rtm (docs/protocol.md, Authentication) and answers what a verified token allows.
package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults for Config fields left at their zero value.
const (
	DefaultAudience = "rtmrec"
	DefaultLeeway   = 30 * time.Second
)

// MaxTokenLen bounds the token Verify will parse. The claims are decoded
// before the signature is checked, so an unauthenticated peer must not be
// able to make the server decode megabytes of JSON.
const MaxTokenLen = 8 << 10

// The algorithms a verifier may accept, each pinned to one key type.
const (
	algHS256 = "HS256"
	algRS256 = "RS256"
	algES256 = "ES256"
)

// Config holds the keys and checks for a Verifier. At least one key is
// required.
type Config struct {
	// HS256Secrets are shared secrets, each at least 32 bytes; several may be
	// given so a secret can be rotated without refusing live tokens.
	HS256Secrets [][]byte
	// PublicKeys are *rsa.PublicKey (RS256) and *ecdsa.PublicKey P-256
	// (ES256), typically from LoadPublicKeyFile.
	PublicKeys []crypto.PublicKey
	// Audience must appear in the token's aud; default DefaultAudience.
	Audience string
	// Leeway tolerates clock skew on exp, nbf and iat; default DefaultLeeway.
	// Negative is refused.
	Leeway time.Duration
	// Now is the clock, injectable for tests; default time.Now.
	Now func() time.Time
}

// Verifier checks tokens against a fixed set of keys. It is safe for
// concurrent use.
type Verifier struct {
	hmacKeys  []jwt.VerificationKey
	rsaKeys   []jwt.VerificationKey
	ecdsaKeys []jwt.VerificationKey
	parser    *jwt.Parser
}

// NewVerifier builds a Verifier from cfg. It fails when no key is configured
// (the caller decides whether to run unauthenticated), and on keys too weak
// or of a type it cannot pin to one algorithm.
func NewVerifier(cfg Config) (*Verifier, error) {
	if len(cfg.HS256Secrets) == 0 && len(cfg.PublicKeys) == 0 {
		return nil, errors.New("auth: no HS256 secret or public key configured")
	}
	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("auth: negative leeway %v", cfg.Leeway)
	}
	if cfg.Audience == "" {
		cfg.Audience = DefaultAudience
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}

	v := &Verifier{}
	for i, s := range cfg.HS256Secrets {
		if len(s) < minHS256SecretLen {
			return nil, fmt.Errorf("auth: HS256 secret #%d is %d bytes, RFC 7518 §3.2 requires at least %d", i+1, len(s), minHS256SecretLen)
		}
		// Copy so a caller reusing its buffer cannot change the key later.
		v.hmacKeys = append(v.hmacKeys, append([]byte(nil), s...))
	}
	for i, k := range cfg.PublicKeys {
		if err := checkPublicKey(k); err != nil {
			return nil, fmt.Errorf("auth: public key #%d: %w", i+1, err)
		}
		switch k.(type) {
		case *rsa.PublicKey:
			v.rsaKeys = append(v.rsaKeys, k)
		case *ecdsa.PublicKey:
			v.ecdsaKeys = append(v.ecdsaKeys, k)
		}
	}

	// Only the algorithms we hold keys for are valid, so "none", the HS/RS
	// confusion and every other alg are refused before any key is touched.
	var methods []string
	if len(v.hmacKeys) > 0 {
		methods = append(methods, algHS256)
	}
	if len(v.rsaKeys) > 0 {
		methods = append(methods, algRS256)
	}
	if len(v.ecdsaKeys) > 0 {
		methods = append(methods, algES256)
	}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(methods),
		jwt.WithAudience(cfg.Audience),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	return v, nil
}

// Verify checks the token's signature and claims and returns what it allows.
// Every error matches ErrInvalidToken and one of the more specific errors of
// this package; none contains the token.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	if len(token) > MaxTokenLen {
		return nil, ErrMalformed
	}
	var tc tokenClaims
	parsed, err := v.parser.ParseWithClaims(token, &tc, v.keys)
	if err != nil {
		return nil, v.classify(parsed, &tc, err)
	}
	if err := tc.check(); err != nil {
		return nil, err
	}
	return tc.claims(), nil
}

// keys returns only the keys of the type the token's alg needs. The parser
// has already refused algs outside the configured set, and jwt's own
// methods type-check their key, but handing out keys by alg keeps an RSA
// key from ever reaching the HMAC code (the HS/RS confusion attack).
func (v *Verifier) keys(t *jwt.Token) (any, error) {
	// RFC 7515 §4.1.11: a token naming critical extensions must be refused
	// by a verifier that does not implement them, and we implement none.
	if _, ok := t.Header["crit"]; ok {
		return nil, ErrMalformed
	}
	var set []jwt.VerificationKey
	switch t.Method.Alg() {
	case algHS256:
		set = v.hmacKeys
	case algRS256:
		set = v.rsaKeys
	case algES256:
		set = v.ecdsaKeys
	}
	if len(set) == 0 {
		return nil, ErrAlgorithm
	}
	return jwt.VerificationKeySet{Keys: set}, nil
}

// classify maps jwt's errors, whose messages may quote parts of the token,
// to this package's fixed ones. Signature errors come first: the claims of
// a token that fails its signature are not worth reporting on.
func (v *Verifier) classify(t *jwt.Token, tc *tokenClaims, err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed), errors.Is(err, ErrMalformed):
		return ErrMalformed
	case errors.Is(err, ErrAlgorithm), errors.Is(err, jwt.ErrTokenUnverifiable):
		return ErrAlgorithm
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if t != nil && t.Method != nil && v.acceptsAlg(t.Method.Alg()) {
			return ErrBadSignature
		}
		return ErrAlgorithm
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing) && tc.ExpiresAt == nil:
		return fmt.Errorf("%w: exp", ErrMissingClaim)
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ErrNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidAudience), errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// The only other required claim jwt checks is aud.
		return ErrAudience
	default:
		return ErrInvalidToken
	}
}

func (v *Verifier) acceptsAlg(alg string) bool {
	switch alg {
	case algHS256:
		return len(v.hmacKeys) > 0
	case algRS256:
		return len(v.rsaKeys) > 0
	case algES256:
		return len(v.ecdsaKeys) > 0
	}
	return false
}
