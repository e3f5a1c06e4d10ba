// Package s3allow is the operator's allow-list for s3:// upload URLs
// (-s3-allow, docs/configuration.md, Access control). An s3:// URL comes from the client but is
// written with the server's own credentials, so without a list a client
// could overwrite anything the server's role can write, other tenants'
// recordings included.
//
// A rule is "bucket" (any key in it) or "bucket/prefix". The prefix is a
// path of whole segments: "rec/calls" allows "calls/x.ogg" and "calls" but
// not "calls-old/x.ogg" (a trailing "/" allows only keys below it). The
// placeholder {tenant} in a prefix stands for the tenant of the client's
// token; a rule with {tenant} allows nothing to a client without a tenant,
// or whose tenant is not a single clean path segment.
package s3allow

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// TenantPlaceholder is replaced by the client's tenant in a rule's prefix.
const TenantPlaceholder = "{tenant}"

// ErrNotAllowed is wrapped by AllowS3 when a URL is outside every rule.
var ErrNotAllowed = errors.New("outside the s3 buckets and prefixes this server allows")

type rule struct {
	bucket, prefix string
}

// List is a parsed allow-list. The zero value allows nothing. It is
// immutable and safe for concurrent use.
type List struct {
	rules []rule
}

// Parse reads rules of the form bucket[/prefix] (an s3:// in front is
// accepted). It refuses what would not mean what it seems to: an empty
// bucket, "." or ".." segments, backslashes, and braces other than
// {tenant}.
func Parse(specs []string) (*List, error) {
	l := &List{}
	for _, spec := range specs {
		r, err := parseRule(spec)
		if err != nil {
			return nil, fmt.Errorf("s3 allow rule %q: %w", spec, err)
		}
		l.rules = append(l.rules, r)
	}
	return l, nil
}

func parseRule(spec string) (rule, error) {
	s := strings.TrimPrefix(strings.TrimSpace(spec), "s3://")
	bucket, prefix, _ := strings.Cut(s, "/")
	if bucket == "" || strings.ContainsAny(bucket, " \t{}\\?#") {
		return rule{}, errors.New("want bucket or bucket/prefix")
	}
	if strings.ContainsRune(prefix, '\\') {
		return rule{}, errors.New("backslash in prefix")
	}
	segs := strings.Split(strings.TrimSuffix(prefix, "/"), "/")
	for i, seg := range segs {
		if seg == "." || seg == ".." || (seg == "" && prefix != "") {
			return rule{}, errors.New("empty, . or .. segment in prefix")
		}
		rest := strings.ReplaceAll(seg, TenantPlaceholder, "")
		if strings.ContainsAny(rest, "{}") {
			return rule{}, fmt.Errorf("segment %d: the only placeholder is %s", i+1, TenantPlaceholder)
		}
	}
	return rule{bucket: bucket, prefix: prefix}, nil
}

// Len is the number of rules.
func (l *List) Len() int { return len(l.rules) }

// AllowS3 reports whether tenant may upload to the s3:// URL u (bucket in
// the host, key in the path, as the uploader reads them). The error wraps
// ErrNotAllowed and is fit to show the client.
func (l *List) AllowS3(tenant string, u *url.URL) error {
	if u == nil || u.Scheme != "s3" {
		return ErrNotAllowed
	}
	if !l.Allowed(tenant, u.Host, strings.TrimPrefix(u.Path, "/")) {
		return ErrNotAllowed
	}
	return nil
}

// Allowed reports whether tenant may write key into bucket. A key with "."
// or ".." segments or backslashes is never allowed: S3 keeps such a key
// literally, but a proxy or store that normalises the request path would
// not.
func (l *List) Allowed(tenant, bucket, key string) bool {
	if key == "" || strings.ContainsRune(key, '\\') || hasDotSegment(key) {
		return false
	}
	for _, r := range l.rules {
		if r.bucket != bucket {
			continue
		}
		prefix, ok := expand(r.prefix, tenant)
		if ok && underPrefix(key, prefix) {
			return true
		}
	}
	return false
}

// expand substitutes the tenant into a prefix; a tenant that could move
// the prefix elsewhere ("", "..", "a/b") matches nothing.
func expand(prefix, tenant string) (string, bool) {
	if !strings.Contains(prefix, TenantPlaceholder) {
		return prefix, true
	}
	if tenant == "" || tenant == "." || tenant == ".." || strings.ContainsAny(tenant, "/\\") {
		return "", false
	}
	return strings.ReplaceAll(prefix, TenantPlaceholder, tenant), true
}

func underPrefix(key, prefix string) bool {
	if prefix == "" {
		return true
	}
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(key, prefix)
	}
	return key == prefix || strings.HasPrefix(key, prefix+"/")
}

func hasDotSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
