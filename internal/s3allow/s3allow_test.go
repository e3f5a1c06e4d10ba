package s3allow

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/rtmrec/rtmrec/internal/wording"
)

func TestAllowed(t *testing.T) {
	l, err := Parse([]string{"rec/calls", "rec/tenants/{tenant}/", "s3://open", "shared/t-{tenant}/in"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, tenant, url string
		want              bool
	}{
		{"under a prefix", "", "s3://rec/calls/a.ogg", true},
		{"deep under a prefix", "", "s3://rec/calls/2026/03/a.ogg", true},
		{"the prefix itself", "", "s3://rec/calls", true},
		{"a sibling sharing the prefix's letters", "", "s3://rec/calls-old/a.ogg", false},
		{"outside the prefix", "", "s3://rec/other/a.ogg", false},
		{"another bucket", "", "s3://records/calls/a.ogg", false},
		{"bucket case differs", "", "s3://REC/calls/a.ogg", false},
		{"dot-dot out of the prefix", "", "s3://rec/calls/../secrets/a", false},
		{"encoded dot-dot", "", "s3://rec/calls/%2e%2e/secrets/a", false},
		{"backslash", "", `s3://rec/calls/a\b`, false},
		{"whole bucket", "", "s3://open/anything/at/all.webm", true},
		{"whole bucket needs a key", "", "s3://open/", false},
		{"own tenant", "acme", "s3://rec/tenants/acme/a.ogg", true},
		{"other tenant", "acme", "s3://rec/tenants/globex/a.ogg", false},
		{"tenant prefix with trailing slash needs a key below", "acme", "s3://rec/tenants/acme", false},
		{"tenant sharing the letters of another", "acme", "s3://rec/tenants/acme-evil/a.ogg", false},
		{"no tenant", "", "s3://rec/tenants//a.ogg", false},
		{"tenant that climbs", "..", "s3://rec/tenants/../a.ogg", false},
		{"tenant with a slash", "acme/x", "s3://rec/tenants/acme/x/a.ogg", false},
		{"placeholder inside a segment", "acme", "s3://shared/t-acme/in/a.ogg", true},
		{"placeholder inside a segment, other tenant", "acme", "s3://shared/t-globex/in/a.ogg", false},
		{"query ignored", "", "s3://rec/calls/a.ogg?x=1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			err = l.AllowS3(tt.tenant, u)
			if got := err == nil; got != tt.want {
				t.Fatalf("AllowS3(%q, %s) = %v, want allowed=%v", tt.tenant, tt.url, err, tt.want)
			}
			if err != nil && !errors.Is(err, ErrNotAllowed) {
				t.Fatalf("error %v does not wrap ErrNotAllowed", err)
			}
		})
	}
}

func TestEmptyListAllowsNothing(t *testing.T) {
	for _, l := range []*List{{}, mustParse(t)} {
		if l.Allowed("", "rec", "a.ogg") || l.AllowS3("acme", &url.URL{Scheme: "s3", Host: "rec", Path: "/a.ogg"}) == nil {
			t.Fatal("an empty list allowed an upload")
		}
	}
	if (&List{}).AllowS3("", &url.URL{Scheme: "https", Host: "rec", Path: "/a"}) == nil {
		t.Fatal("a non-s3 URL allowed")
	}
}

func TestParseRejects(t *testing.T) {
	for _, spec := range []string{"", "/calls", "s3://", "rec/../x", "rec/./x", "rec//x", "rec/x//y", `rec/a\b`, "rec/{tenant_id}/", "rec/{Tenant}", "re c/x", "{tenant}/x"} {
		if _, err := Parse([]string{spec}); err == nil {
			t.Errorf("Parse(%q) succeeded", spec)
		}
	}
	l := mustParse(t, "rec", "rec/", "s3://rec/calls/", "rec/{tenant}", "rec/a/{tenant}/b/")
	if l.Len() != 5 {
		t.Fatalf("Len = %d", l.Len())
	}
}

func mustParse(t *testing.T, specs ...string) *List {
	t.Helper()
	l, err := Parse(specs)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// FuzzAllowed checks that whatever the rule, tenant and key, a key that is
// allowed has no dot segment and lies in the rule's bucket under its
// prefix, with the tenant substituted as one clean segment.
func FuzzAllowed(f *testing.F) {
	f.Add("rec/tenants/{tenant}/", "acme", "rec", "tenants/acme/a.ogg")
	f.Add("rec/calls", "", "rec", "calls-old/a")
	f.Add("rec/{tenant}", "..", "rec", "../x")
	f.Add("rec", "", "rec", "a/../../b")
	f.Fuzz(func(t *testing.T, spec, tenant, bucket, key string) {
		l, err := Parse([]string{spec})
		if err != nil {
			return
		}
		if !l.Allowed(tenant, bucket, key) {
			return
		}
		r := l.rules[0]
		if bucket != r.bucket || hasDotSegment(key) || strings.ContainsRune(key, '\\') {
			t.Fatalf("rule %q allowed bucket %q key %q", spec, bucket, key)
		}
		prefix := r.prefix
		if strings.Contains(prefix, TenantPlaceholder) {
			if tenant == "" || strings.ContainsAny(tenant, "/\\") || tenant == "." || tenant == ".." {
				t.Fatalf("rule %q allowed tenant %q", spec, tenant)
			}
			prefix = strings.ReplaceAll(prefix, TenantPlaceholder, tenant)
		}
		if p := strings.TrimSuffix(prefix, "/"); p != "" && key != p && !strings.HasPrefix(key, p+"/") {
			t.Fatalf("rule %q (tenant %q) allowed key %q outside %q", spec, tenant, key, prefix)
		}
	})
}

// TestRefusalIsWordedForCustomers: the client reads AllowS3's refusal.
func TestRefusalIsWordedForCustomers(t *testing.T) {
	if err := wording.Check(ErrNotAllowed.Error()); err != nil {
		t.Fatal(err)
	}
}
