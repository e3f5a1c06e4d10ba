package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of the Standard Webhooks convention (docs/webhooks.md).
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Sign returns the Standard Webhooks signature of one delivery:
// "v1," + base64(HMAC-SHA256(secret, id + "." + ts + "." + body)), where ts
// is the attempt's Unix time in seconds. secret is the raw key (for a
// "whsec_..." secret, the base64-decoded part after the prefix).
func Sign(secret []byte, id string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// signatureHeader is the webhook-signature value: one signature per
// secret, space-separated, so receivers holding either the old or the new
// secret accept the message during a rotation.
func signatureHeader(secrets [][]byte, id string, ts int64, body []byte) string {
	sigs := make([]string, len(secrets))
	for i, s := range secrets {
		sigs[i] = Sign(s, id, ts, body)
	}
	return strings.Join(sigs, " ")
}

// Errors returned by Verify.
var (
	ErrNoSignature  = errors.New("webhook: missing id, timestamp or signature header")
	ErrBadTimestamp = errors.New("webhook: timestamp outside tolerance")
	ErrBadSignature = errors.New("webhook: no matching signature")
)

// Verify checks a received webhook as a receiver would: the headers are
// present, the timestamp is within tolerance of now (replay protection),
// and one of the signatures in webhook-signature was made with secret over
// this body. A tolerance of 0 skips the timestamp check.
func Verify(secret []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	id, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsText == "" || sigs == "" {
		return ErrNoSignature
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %q", ErrBadTimestamp, tsText)
	}
	if tolerance > 0 {
		if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
			return fmt.Errorf("%w: off by %s", ErrBadTimestamp, d)
		}
	}
	want := []byte(Sign(secret, id, ts, body))
	for _, s := range strings.Fields(sigs) {
		if hmac.Equal([]byte(s), want) {
			return nil
		}
	}
	return ErrBadSignature
}

// secretPrefix marks a Standard Webhooks secret: base64 of the HMAC key.
const secretPrefix = "whsec_"

// ParseSecret turns an operator's secret into the HMAC key. A "whsec_..."
// secret (the form Standard Webhooks libraries and Svix use) is base64
// after its prefix, and the key is the decoded bytes, as those libraries
// verify it; any other text is used as it is (a raw secret).
func ParseSecret(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		if s == "" {
			return nil, errors.New("webhook: empty secret")
		}
		return []byte(s), nil
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("webhook: a %s secret must be base64 after its prefix: %w", secretPrefix, err)
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("webhook: a %s secret must hold at least 16 bytes, not %d", secretPrefix, len(key))
	}
	return key, nil
}
