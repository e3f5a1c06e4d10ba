package auth_test

import (
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/rtmrec/rtmrec/auth"
)

// The dev console issues a token; /rtm takes it from the request and
// verifies it before the WebSocket upgrade.
func Example() {
	secret := []byte("a development secret of 32+ bytes")
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	tok, err := auth.IssueHS256(secret, auth.Claims{
		Subject:        "agent-7",
		Role:           auth.RoleClient,
		UploadPrefixes: []string{"https://bucket.example.com/calls/"},
	}, time.Hour, now)
	if err != nil {
		panic(err)
	}

	v, err := auth.NewVerifier(auth.Config{
		HS256Secrets: [][]byte{secret},
		Now:          func() time.Time { return now.Add(time.Minute) },
	})
	if err != nil {
		panic(err)
	}
	r := httptest.NewRequest("GET", "/rtm?access_token="+tok, nil)
	c, err := v.Verify(auth.TokenFromRequest(r))
	if err != nil {
		panic(err)
	}
	fmt.Println(c.Subject, c.MayRecord(), c.MaySupervise("s1"))
	fmt.Println(c.AllowsUploadURL("https://bucket.example.com/calls/1.ogg?X-Amz-Signature=x"))
	fmt.Println(c.AllowsUploadURL("https://bucket.example.com.evil.net/calls/1.ogg"))
	fmt.Println(auth.RedactRequestURI(r.URL))
	// Output:
	// agent-7 true false
	// true
	// false
	// /rtm?access_token=REDACTED
}
