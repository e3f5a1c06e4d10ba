package netguard

import (
	"log/slog"
	"net/url"
	"strings"
)

// Redact returns raw reduced to scheme://host/path: the query (pre-signed
// credentials), fragment and userinfo are dropped. A string that does not
// parse as a URL gives "invalid-url", never the input.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "invalid-url"
	}
	s := u.Scheme + "://" + u.Host + u.EscapedPath()
	// url.Parse splits the query off first, so no '?' is left; this is a
	// second fence in case that ever changes.
	s, _, _ = strings.Cut(s, "?")
	return s
}

// SecretURL is a URL whose query string is a secret (a pre-signed upload
// URL, a webhook URL with a token). It logs and prints redacted; convert to
// string explicitly to use it.
type SecretURL string

// String returns the redacted URL.
func (s SecretURL) String() string { return Redact(string(s)) }

// LogValue implements slog.LogValuer so the URL is redacted in every log.
func (s SecretURL) LogValue() slog.Value { return slog.StringValue(Redact(string(s))) }
