// Package wording is the rule for text that reaches a customer: error
// messages on the WebSocket, FAILED reasons, session_state reasons, the
// last_error of webhook dead letters. Such text names no Go package
// ("netguard: …"), repeats none of Go's plumbing ("dial tcp 10.0.0.5:443:
// connect: …", "lookup h on 10.0.0.2:53"), and quotes no URL query string
// (pre-signed credentials). The tests of every producer apply Check.
package wording

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	// goPackage matches "pkg: " for this module's packages and those of
	// the libraries and standard packages whose errors could travel.
	goPackage = regexp.MustCompile(`(?i)(^|[\s(])(auth|backoff|bbolt|clientaddr|cluster|console|context|delivery|durable|dtls|ebml|evidence|http|ice|interceptor|io|json|jwt|ledger|limits|net|netguard|os|promreg|recorder|redis|rtcp|rtm|rtp|s3allow|sdp|session|srtp|strconv|syscall|tls|upload|url|webhook|webrtc|workpool|x509):\s`)
	// urlQuery matches a URL with a query string.
	urlQuery = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.-]*://[^\s"'<>]*\?`)
	// plumbing is Go's wording for what went wrong underneath.
	plumbing = []string{
		"dial tcp", "dial udp", "read tcp", "write tcp", "read udp", "i/o timeout",
		"context deadline exceeded", "context canceled", "unexpected EOF", ": EOF",
		"failed to unmarshal", "cannot unmarshal", `Put "`, `Post "`, `Get "`,
		"goroutine", "<nil>", "%!", "X-Amz-", "access_token=",
	}
	// goLookup is the net package's "lookup host on 10.0.0.2:53: ...".
	goLookup = regexp.MustCompile(`\blookup \S+( on \S+)?: `)
)

// Check returns why s is not fit for a customer, or nil.
func Check(s string) error {
	if m := goPackage.FindStringSubmatch(s); m != nil {
		return fmt.Errorf("%q names the Go package %s", s, m[2])
	}
	if urlQuery.MatchString(s) {
		return fmt.Errorf("%q carries a URL query", s)
	}
	if goLookup.MatchString(s) {
		return fmt.Errorf("%q has Go's wording for a failed lookup", s)
	}
	for _, p := range plumbing {
		if strings.Contains(s, p) {
			return fmt.Errorf("%q has Go's wording %q", s, p)
		}
	}
	return nil
}
