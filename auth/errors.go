package auth

import (
	"errors"
	"fmt"
)

// ErrInvalidToken is matched (with errors.Is) by every error Verify returns,
// so the HTTP layer can answer 401 without looking at the reason. The more
// specific errors below wrap it and say why, for logs; none of them ever
// contains the token or any part of it.
var ErrInvalidToken = errors.New("invalid token")

// Reasons a token is refused. Each wraps ErrInvalidToken.
var (
	// ErrNoToken: the request carried no token at all.
	ErrNoToken = fmt.Errorf("%w: no token", ErrInvalidToken)
	// ErrMalformed: not three base64url segments of JSON, a claim of the wrong
	// type, or a token longer than the verifier accepts.
	ErrMalformed = fmt.Errorf("%w: malformed", ErrInvalidToken)
	// ErrAlgorithm: the token's alg is not one the configured keys allow
	// (alg "none" included).
	ErrAlgorithm = fmt.Errorf("%w: algorithm not accepted", ErrInvalidToken)
	// ErrBadSignature: no configured key verifies the signature.
	ErrBadSignature = fmt.Errorf("%w: bad signature", ErrInvalidToken)
	// ErrExpired: exp is in the past (beyond the leeway).
	ErrExpired = fmt.Errorf("%w: expired", ErrInvalidToken)
	// ErrNotYetValid: nbf or iat is in the future (beyond the leeway).
	ErrNotYetValid = fmt.Errorf("%w: not valid yet", ErrInvalidToken)
	// ErrAudience: aud is missing or does not contain the verifier's audience.
	ErrAudience = fmt.Errorf("%w: wrong audience", ErrInvalidToken)
	// ErrMissingClaim: a required claim (exp, sub, role) is absent; the
	// wrapping error names the claim.
	ErrMissingClaim = fmt.Errorf("%w: missing claim", ErrInvalidToken)
	// ErrInvalidClaim: a claim is present but unusable (unknown role, empty
	// session id, unparsable URL prefix); the wrapping error names the claim.
	ErrInvalidClaim = fmt.Errorf("%w: invalid claim", ErrInvalidToken)
)
