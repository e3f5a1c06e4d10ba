package auth

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// AccessTokenParam is the query parameter browsers use for the token, since
// they cannot set headers on a WebSocket (RFC 6750 §2.3).
const AccessTokenParam = "access_token"

// TokenFromRequest returns the bearer token of r, or "" when there is none.
// An "Authorization: Bearer" header wins over the access_token query
// parameter (docs/protocol.md, Authentication); an Authorization header of another scheme is
// ignored.
func TokenFromRequest(r *http.Request) string {
	if r == nil {
		return ""
	}
	if h := r.Header.Get("Authorization"); h != "" {
		// RFC 7235 §2.1: the scheme name is case-insensitive.
		scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			if tok = strings.TrimSpace(tok); tok != "" {
				return tok
			}
		}
	}
	if r.URL == nil {
		return ""
	}
	return r.URL.Query().Get(AccessTokenParam)
}

// RedactRequestURI returns u's path and query for logging, with the value of
// every access_token parameter replaced by "REDACTED". Other parameters keep
// their order and encoding.
func RedactRequestURI(u *url.URL) string {
	if u == nil {
		return ""
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if u.RawQuery == "" {
		return path
	}
	params := strings.Split(u.RawQuery, "&")
	for i, p := range params {
		key, _, hasValue := strings.Cut(p, "=")
		if k, err := url.QueryUnescape(key); err == nil {
			key = k
		}
		if hasValue && key == AccessTokenParam {
			params[i] = AccessTokenParam + "=REDACTED"
		}
	}
	return path + "?" + strings.Join(params, "&")
}

// IssueHS256 signs a token for c with an HS256 secret, valid from now for
// ttl, with the default audience. It is for the dev console and tests;
// production tokens come from the operator's identity provider.
// c.ExpiresAt is ignored in favour of now+ttl.
func IssueHS256(secret []byte, c Claims, ttl time.Duration, now time.Time) (string, error) {
	if len(secret) < minHS256SecretLen {
		return "", fmt.Errorf("issue token: HS256 secret is %d bytes, want at least %d", len(secret), minHS256SecretLen)
	}
	if ttl <= 0 {
		return "", errors.New("issue token: ttl must be positive")
	}
	tc := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   c.Subject,
			Audience:  jwt.ClaimStrings{DefaultAudience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Role:            c.Role,
		Tenant:          c.Tenant,
		Sessions:        c.Sessions,
		UploadPrefixes:  c.UploadPrefixes,
		WebhookPrefixes: c.WebhookPrefixes,
	}
	// Refuse to mint what Verify would refuse, so a dev sees the mistake here.
	if err := tc.check(); err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, tc).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("issue token: %w", err)
	}
	return s, nil
}
