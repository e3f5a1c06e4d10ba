package netguard

import (
	"context"
	"strings"
	"testing"
)

func FuzzCheckURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/a?b=c",
		"http://127.0.0.1:80/",
		"s3://bucket/key",
		"http://[::ffff:10.0.0.1]/?x",
		"http://[fe80::1%25eth0]:8080/p#f",
		"https://u:p@h/?sig=secret",
		"http://h/%zz?q",
		"//h/p?q",
		"http:?q",
		"",
	} {
		f.Add(s)
	}
	res := &mapResolver{hosts: map[string][]string{"example.com": {"93.184.216.34"}}}
	g := New(Config{Resolver: res})
	f.Fuzz(func(t *testing.T, raw string) {
		red := Redact(raw)
		if strings.Contains(red, "?") {
			t.Fatalf("Redact(%q) = %q contains '?'", raw, red)
		}
		// A marker query is appended so a leak is unambiguous.
		const marker = "QQSECRETQQ"
		if _, err := g.CheckURL(context.Background(), raw+"?sig="+marker, "http", "https", "s3"); err != nil &&
			strings.Contains(err.Error(), marker) && !strings.Contains(raw, marker) {
			t.Fatalf("error %q leaks the query", err)
		}
		if strings.Contains(Redact(raw+"?sig="+marker), marker) && !strings.Contains(raw, marker) {
			t.Fatalf("Redact leaks the query of %q", raw)
		}
		u, err := g.CheckURL(context.Background(), raw, "http", "https", "s3")
		if err == nil && (u.Host == "" || u.User != nil) {
			t.Fatalf("accepted %q without host or with userinfo", raw)
		}
	})
}
