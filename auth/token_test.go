package auth_test

import (
	"errors"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/auth"
)

func TestTokenFromRequest(t *testing.T) {
	tests := []struct {
		name   string
		target string
		header string
		want   string
	}{
		{"none", "/rtm", "", ""},
		{"header", "/rtm", "Bearer abc", "abc"},
		{"header scheme case", "/rtm", "bearer abc", "abc"},
		{"header extra spaces", "/rtm", "  Bearer   abc  ", "abc"},
		{"query", "/rtm?access_token=q", "", "q"},
		{"header wins", "/rtm?access_token=q", "Bearer h", "h"},
		{"basic header ignored", "/rtm?access_token=q", "Basic dXNlcjpwdw==", "q"},
		{"empty bearer falls back", "/rtm?access_token=q", "Bearer ", "q"},
		{"escaped query", "/rtm?access_token=a%2Bb", "", "a+b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.target, nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			if got := auth.TokenFromRequest(r); got != tt.want {
				t.Errorf("TokenFromRequest = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRedactRequestURI(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"/rtm", "/rtm"},
		{"", "/"},
		{"/rtm?access_token=secret", "/rtm?access_token=REDACTED"},
		{"/rtm?b=2&access_token=secret&a=1", "/rtm?b=2&access_token=REDACTED&a=1"},
		{"/rtm?access_token=x&access_token=y", "/rtm?access_token=REDACTED&access_token=REDACTED"},
		{"/rtm?access%5Ftoken=secret", "/rtm?access_token=REDACTED"},
		{"/rtm?access_token", "/rtm?access_token"},
		{"/rtm?access_tokens=keep", "/rtm?access_tokens=keep"},
		{"/a%20b?x=%zz", "/a%20b?x=%zz"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := url.Parse(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := auth.RedactRequestURI(u); got != tt.want {
				t.Errorf("RedactRequestURI(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	if got := auth.RedactRequestURI(nil); got != "" {
		t.Errorf("RedactRequestURI(nil) = %q", got)
	}
}

func TestIssueHS256(t *testing.T) {
	v := newVerifier(t, auth.Config{HS256Secrets: [][]byte{testSecret}})
	in := auth.Claims{Subject: "sup", Role: auth.RoleSupervisor, Tenant: "acme", Sessions: []string{"s1"}}
	tok, err := auth.IssueHS256(testSecret, in, time.Minute, testNow)
	if err != nil {
		t.Fatalf("IssueHS256: %v", err)
	}
	got, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Subject != "sup" || got.Role != auth.RoleSupervisor || got.Tenant != "acme" ||
		!got.MaySupervise("s1") || !got.ExpiresAt.Equal(testNow.Add(time.Minute)) {
		t.Errorf("round trip = %+v", got)
	}

	expired, err := auth.IssueHS256(testSecret, in, time.Minute, testNow.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(expired); !errors.Is(err, auth.ErrExpired) {
		t.Errorf("old token: err = %v, want ErrExpired", err)
	}

	bad := []struct {
		name   string
		secret []byte
		c      auth.Claims
		ttl    time.Duration
	}{
		{"short secret", []byte("short"), in, time.Minute},
		{"zero ttl", testSecret, in, 0},
		{"no subject", testSecret, auth.Claims{Role: auth.RoleClient}, time.Minute},
		{"no role", testSecret, auth.Claims{Subject: "x"}, time.Minute},
		{"bad role", testSecret, auth.Claims{Subject: "x", Role: "root"}, time.Minute},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := auth.IssueHS256(tt.secret, tt.c, tt.ttl, testNow); err == nil {
				t.Fatal("IssueHS256 succeeded, want error")
			}
		})
	}
}
