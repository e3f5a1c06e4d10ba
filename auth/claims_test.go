package auth_test

import (
	"testing"

	"github.com/rtmrec/rtmrec/auth"
)

func TestClaimsRoles(t *testing.T) {
	client := &auth.Claims{Subject: "a", Role: auth.RoleClient, Sessions: []string{"*"}}
	sup := &auth.Claims{Subject: "b", Role: auth.RoleSupervisor, Sessions: []string{"s1", "s2"}}
	anySup := &auth.Claims{Subject: "c", Role: auth.RoleSupervisor, Sessions: []string{auth.AnySession}}
	noRole := &auth.Claims{Subject: "d", Sessions: []string{"*"}}
	var nilClaims *auth.Claims

	tests := []struct {
		name      string
		c         *auth.Claims
		record    bool
		supervise map[string]bool
	}{
		{"client", client, true, map[string]bool{"s1": false, "*": false}},
		{"supervisor", sup, false, map[string]bool{"s1": true, "s2": true, "s3": false, "": false, "*": false}},
		{"supervisor of any", anySup, false, map[string]bool{"s1": true, "anything": true, "": false}},
		{"no role", noRole, false, map[string]bool{"s1": false}},
		{"nil", nilClaims, false, map[string]bool{"s1": false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.MayRecord(); got != tt.record {
				t.Errorf("MayRecord = %v, want %v", got, tt.record)
			}
			for id, want := range tt.supervise {
				if got := tt.c.MaySupervise(id); got != want {
					t.Errorf("MaySupervise(%q) = %v, want %v", id, got, want)
				}
			}
		})
	}
}

func TestAllowsURL(t *testing.T) {
	tests := []struct {
		name     string
		prefixes []string
		url      string
		want     bool
	}{
		{"no prefixes", nil, "https://anywhere.net/x?sig=1", true},
		{"no prefixes, garbage", nil, "::", true},
		{"exact", []string{"https://a.com/x"}, "https://a.com/x", true},
		{"below", []string{"https://a.com/x"}, "https://a.com/x/rec.ogg?X-Amz-Signature=abc", true},
		{"sibling segment", []string{"https://a.com/x"}, "https://a.com/xy", false},
		{"trailing slash prefix", []string{"https://a.com/x/"}, "https://a.com/x/y", true},
		{"trailing slash prefix, bare dir", []string{"https://a.com/x/"}, "https://a.com/x", false},
		{"slash prefix allows continuation", []string{"https://a.com/x"}, "https://a.com/x/", true},
		{"host suffix attack", []string{"https://a.com/x"}, "https://a.com.evil.net/x", false},
		{"userinfo attack", []string{"https://a.com/x"}, "https://a.com@evil.net/x", false},
		{"userinfo on the right host", []string{"https://a.com/x"}, "https://u@a.com/x/y", true},
		{"other scheme", []string{"https://a.com/x"}, "http://a.com/x", false},
		{"scheme case", []string{"https://a.com/x"}, "HTTPS://a.com/x", true},
		{"host case", []string{"https://A.com/x"}, "https://a.COM/x/y", true},
		{"explicit port differs", []string{"https://a.com/x"}, "https://a.com:8443/x", false},
		{"port matches", []string{"https://a.com:8443/x"}, "https://a.com:8443/x/y", true},
		{"host only prefix", []string{"https://a.com"}, "https://a.com/any/path", true},
		{"host only prefix with slash", []string{"https://a.com/"}, "https://a.com", true},
		{"dot-dot escape", []string{"https://a.com/x/"}, "https://a.com/x/../admin", false},
		{"encoded dot-dot escape", []string{"https://a.com/x/"}, "https://a.com/x/%2e%2e/admin", false},
		{"encoded slash dot-dot", []string{"https://a.com/x/"}, "https://a.com/x/..%2fadmin", false},
		{"single dot", []string{"https://a.com/x/"}, "https://a.com/x/./y", false},
		{"backslash", []string{"https://a.com/x/"}, `https://a.com/x/..\admin`, false},
		{"dots in a name are fine", []string{"https://a.com/x/"}, "https://a.com/x/..rec.ogg", true},
		{"relative URL", []string{"https://a.com/x"}, "/x/y", false},
		{"opaque URL", []string{"https://a.com/x"}, "https:a.com/x", false},
		{"unparsable", []string{"https://a.com/x"}, "https://a.com/x/%zz", false},
		{"second prefix", []string{"https://a.com/x", "s3://bucket/rec/"}, "s3://bucket/rec/1.webm", true},
		{"malformed prefix matches nothing", []string{"/x"}, "https://a.com/x", false},
		{"fragment ignored", []string{"https://a.com/x"}, "https://a.com/x#frag", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &auth.Claims{UploadPrefixes: tt.prefixes}
			if got := up.AllowsUploadURL(tt.url); got != tt.want {
				t.Errorf("AllowsUploadURL(%q) with %q = %v, want %v", tt.url, tt.prefixes, got, tt.want)
			}
			wh := &auth.Claims{WebhookPrefixes: tt.prefixes}
			if got := wh.AllowsWebhookURL(tt.url); got != tt.want {
				t.Errorf("AllowsWebhookURL(%q) with %q = %v, want %v", tt.url, tt.prefixes, got, tt.want)
			}
		})
	}

	t.Run("prefixes are per kind", func(t *testing.T) {
		c := &auth.Claims{UploadPrefixes: []string{"https://up.com/"}}
		if c.AllowsUploadURL("https://hook.com/x") {
			t.Error("upload prefix check let a foreign upload URL through")
		}
		if !c.AllowsWebhookURL("https://hook.com/x") {
			t.Error("webhook URL refused though no webhook prefixes are set")
		}
	})
}
