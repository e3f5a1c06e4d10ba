package auth

import (
	"testing"

	"github.com/rtmrec/rtmrec/internal/wording"
)

// TestErrorsAreWordedForCustomers: a refused token_refresh shows the
// verifier's error to the client.
func TestErrorsAreWordedForCustomers(t *testing.T) {
	for _, err := range []error{ErrInvalidToken, ErrNoToken, ErrMalformed, ErrAlgorithm, ErrBadSignature,
		ErrExpired, ErrNotYetValid, ErrAudience, ErrMissingClaim, ErrInvalidClaim} {
		if err := wording.Check(err.Error()); err != nil {
			t.Error(err)
		}
	}
}
