package auth

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Role is what a token lets its holder do on /rtm (docs/protocol.md, Authentication). The zero
// value is no role, which allows nothing.
type Role string

// The roles a token may carry in its "role" claim.
const (
	// RoleClient may start sessions and record them.
	RoleClient Role = "client"
	// RoleSupervisor may only join the sessions its "sessions" claim lists.
	RoleSupervisor Role = "supervisor"
	// RoleOperator may use the operators' API on -admin-listen (redaction)
	// and nothing on /rtm.
	RoleOperator Role = "operator"
)

// String returns the role as it appears in the token.
func (r Role) String() string { return string(r) }

func (r Role) valid() bool { return r == RoleClient || r == RoleSupervisor || r == RoleOperator }

// AnySession in a supervisor's Sessions lets it monitor every session of its
// tenant.
const AnySession = "*"

// Claims is the verified identity and permissions carried by a token. The
// session layer consults it for every privileged message; it is immutable
// once Verify returns it.
type Claims struct {
	// Subject is the authenticated identity ("sub"), written into recording
	// manifests and webhook bodies.
	Subject string
	// Role decides whether the holder records or supervises.
	Role Role
	// Tenant scopes session ids; empty is the default tenant.
	Tenant string
	// Sessions lists, for supervisors, the session ids they may monitor, or
	// AnySession.
	Sessions []string
	// UploadPrefixes restricts upload_url to these URL prefixes; empty
	// allows any URL (the §7 address checks still apply).
	UploadPrefixes []string
	// WebhookPrefixes does the same for webhook_url.
	WebhookPrefixes []string
	// ExpiresAt is the token's exp; a long-lived WebSocket may compare
	// against it.
	ExpiresAt time.Time
}

// MayRecord reports whether the holder may start sessions and recordings.
func (c *Claims) MayRecord() bool { return c != nil && c.Role == RoleClient }

// MaySupervise reports whether the holder may monitor the session with the
// given id (within its own tenant; tenant scoping is the session layer's).
func (c *Claims) MaySupervise(sessionID string) bool {
	if c == nil || c.Role != RoleSupervisor || sessionID == "" {
		return false
	}
	return slices.Contains(c.Sessions, sessionID) || slices.Contains(c.Sessions, AnySession)
}

// AllowsUploadURL reports whether u is under one of UploadPrefixes, or true
// when the token sets none. See AllowsWebhookURL for the matching rules.
func (c *Claims) AllowsUploadURL(u string) bool {
	if c == nil {
		return false
	}
	return allowedByPrefixes(c.UploadPrefixes, u)
}

// AllowsWebhookURL reports whether u is under one of WebhookPrefixes, or
// true when the token sets none.
//
// Matching is on the parsed URL, not the string, so that a prefix
// "https://a.com/x" allows neither "https://a.com.evil.net/x" nor
// "https://a.com/xy": scheme and host (with port) must be equal, and the
// prefix's path must end on a segment boundary of u's path (a prefix path
// ending in "/" matches any continuation). A URL whose path has "." or ".."
// segments or backslashes is refused outright, since the receiving server
// would resolve it outside the prefix. The query and fragment play no part.
func (c *Claims) AllowsWebhookURL(u string) bool {
	if c == nil {
		return false
	}
	return allowedByPrefixes(c.WebhookPrefixes, u)
}

func allowedByPrefixes(prefixes []string, raw string) bool {
	if len(prefixes) == 0 {
		return true
	}
	u, ok := parseComparableURL(raw)
	if !ok {
		return false
	}
	for _, p := range prefixes {
		pu, ok := parseComparableURL(p)
		if ok && underPrefix(u, pu) {
			return true
		}
	}
	return false
}

// parseComparableURL parses an absolute hierarchical URL and refuses the
// forms whose meaning a receiving server might resolve differently.
func parseComparableURL(raw string) (*url.URL, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" {
		return nil, false
	}
	if strings.ContainsRune(u.Path, '\\') || hasDotSegment(u.Path) {
		return nil, false
	}
	if u.Path == "" {
		// RFC 3986 §6.2.3: an empty path is equivalent to "/".
		u.Path = "/"
	}
	return u, true
}

func hasDotSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

func underPrefix(u, prefix *url.URL) bool {
	// url.Parse lower-cases the scheme; host names are case-insensitive
	// (RFC 3986 §3.2.2).
	if u.Scheme != prefix.Scheme || !strings.EqualFold(u.Host, prefix.Host) {
		return false
	}
	pp := prefix.Path
	if strings.HasSuffix(pp, "/") {
		return strings.HasPrefix(u.Path, pp)
	}
	return u.Path == pp || strings.HasPrefix(u.Path, pp+"/")
}

// tokenClaims is the JSON shape of a token's payload.
type tokenClaims struct {
	jwt.RegisteredClaims
	Role            Role     `json:"role,omitempty"`
	Tenant          string   `json:"tenant,omitempty"`
	Sessions        []string `json:"sessions,omitempty"`
	UploadPrefixes  []string `json:"upload_prefixes,omitempty"`
	WebhookPrefixes []string `json:"webhook_prefixes,omitempty"`
}

// check validates the application claims that jwt does not know about.
func (tc *tokenClaims) check() error {
	if tc.Subject == "" {
		return fmt.Errorf("%w: sub", ErrMissingClaim)
	}
	if tc.Role == "" {
		return fmt.Errorf("%w: role", ErrMissingClaim)
	}
	if !tc.Role.valid() {
		return fmt.Errorf("%w: role", ErrInvalidClaim)
	}
	if slices.Contains(tc.Sessions, "") {
		return fmt.Errorf("%w: sessions", ErrInvalidClaim)
	}
	for _, p := range tc.UploadPrefixes {
		if _, ok := parseComparableURL(p); !ok {
			return fmt.Errorf("%w: upload_prefixes", ErrInvalidClaim)
		}
	}
	for _, p := range tc.WebhookPrefixes {
		if _, ok := parseComparableURL(p); !ok {
			return fmt.Errorf("%w: webhook_prefixes", ErrInvalidClaim)
		}
	}
	return nil
}

func (tc *tokenClaims) claims() *Claims {
	c := &Claims{
		Subject:         tc.Subject,
		Role:            tc.Role,
		Tenant:          tc.Tenant,
		Sessions:        tc.Sessions,
		UploadPrefixes:  tc.UploadPrefixes,
		WebhookPrefixes: tc.WebhookPrefixes,
	}
	if tc.ExpiresAt != nil {
		c.ExpiresAt = tc.ExpiresAt.Time
	}
	return c
}
