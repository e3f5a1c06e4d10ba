package auth_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"

	"github.com/rtmrec/rtmrec/auth"
)

func FuzzVerify(f *testing.F) {
	v := newVerifier(f, auth.Config{HS256Secrets: [][]byte{testSecret}})
	valid := sign(f, jwt.SigningMethodHS256, testSecret, validClaims())
	f.Add(valid)
	f.Add(unsignedToken(f, validClaims()))
	f.Add(sign(f, jwt.SigningMethodHS256, testSecret, with(validClaims(), "sessions", "x")))
	f.Add("a.b.c")
	f.Add("..")
	f.Add("e30.e30.")
	f.Add(strings.Repeat(".", 100))
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(token)
		if err != nil {
			if c != nil {
				t.Fatalf("claims %+v with error %v", c, err)
			}
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("error %v does not match ErrInvalidToken", err)
			}
			return
		}
		// Anything accepted must satisfy the checks Verify promises.
		if c.Subject == "" || (c.Role != auth.RoleClient && c.Role != auth.RoleSupervisor) {
			t.Fatalf("accepted claims %+v", c)
		}
		if c.ExpiresAt.Before(testNow.Add(-auth.DefaultLeeway)) {
			t.Fatalf("accepted expired token, exp %v", c.ExpiresAt)
		}
	})
}

func FuzzAllowsUploadURL(f *testing.F) {
	f.Add("https://a.com/x", "https://a.com/x/y")
	f.Add("https://a.com/x", "https://a.com.evil.net/x")
	f.Add("https://a.com/x/", "https://a.com/x/%2e%2e/y")
	f.Add("s3://bucket/rec/", "s3://bucket/rec/a.ogg")
	f.Add("https://a.com/x", "https://a.com@b.com/x")
	f.Fuzz(func(t *testing.T, prefix, raw string) {
		c := &auth.Claims{UploadPrefixes: []string{prefix}}
		if !c.AllowsUploadURL(raw) {
			return
		}
		// An allowed URL must really be below the prefix, as the receiving
		// server will see it.
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatalf("allowed unparsable %q", raw)
		}
		p, err := url.Parse(prefix)
		if err != nil {
			t.Fatalf("unparsable prefix %q allowed %q", prefix, raw)
		}
		if u.Scheme != p.Scheme || !strings.EqualFold(u.Host, p.Host) || u.Host == "" {
			t.Fatalf("%q allowed %q on another origin", prefix, raw)
		}
		for seg := range strings.SplitSeq(u.Path, "/") {
			if seg == ".." || seg == "." {
				t.Fatalf("%q allowed %q with a dot segment", prefix, raw)
			}
		}
		pp := strings.TrimSuffix(p.Path, "/")
		if up := u.Path; up != pp && !strings.HasPrefix(up, pp+"/") {
			t.Fatalf("%q allowed %q outside its path", prefix, raw)
		}
	})
}
