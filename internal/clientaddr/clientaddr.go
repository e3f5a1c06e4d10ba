// Package clientaddr finds the address of the client behind an HTTP
// request: the TCP peer, or, when that peer is a trusted proxy (a load
// balancer or ingress, -trusted-proxies), the address the proxies forwarded
// in X-Forwarded-For or Forwarded (RFC 7239). Per-IP limits and logs use
// it, so behind a load balancer they see clients instead of the balancer.
//
// Anyone can send those headers, so they are read only from a trusted peer,
// and from the right: each proxy appends the address it received from, so
// the entries a trusted proxy wrote are at the end, and the first entry
// from the right that is not a trusted proxy is the client. What lies to
// its left was written by the client and is never looked at. Only the
// header the operator names is read: a proxy that sets one of them passes
// the other through from the client untouched.
package clientaddr

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Header names the header the trusted proxies write.
type Header string

// The headers a Resolver can read.
const (
	XForwardedFor Header = "X-Forwarded-For"
	Forwarded     Header = "Forwarded"
)

// ParseHeader accepts a header name in any case.
func ParseHeader(s string) (Header, error) {
	switch {
	case strings.EqualFold(s, string(XForwardedFor)):
		return XForwardedFor, nil
	case strings.EqualFold(s, string(Forwarded)):
		return Forwarded, nil
	}
	return "", fmt.Errorf("client address header %q: want %s or %s", s, XForwardedFor, Forwarded)
}

// MaxHops bounds how many forwarded entries are examined, so a long header
// costs no more than a short one. A chain of more trusted proxies than this
// ends at the last one examined.
const MaxHops = 16

// Resolver finds client addresses. The zero value trusts no proxy and
// returns the TCP peer. It is immutable and safe for concurrent use.
type Resolver struct {
	trusted []netip.Prefix
	header  Header
}

// New returns a Resolver trusting the given proxies (CIDRs or single
// addresses) to report clients in header (default XForwardedFor).
func New(trustedProxies []string, header Header) (*Resolver, error) {
	r := &Resolver{header: header}
	if r.header == "" {
		r.header = XForwardedFor
	}
	if _, err := ParseHeader(string(r.header)); err != nil {
		return nil, err
	}
	for _, s := range trustedProxies {
		p, err := parsePrefix(s)
		if err != nil {
			return nil, err
		}
		r.trusted = append(r.trusted, p)
	}
	return r, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("trusted proxy %q: %w", s, err)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("trusted proxy %q: write IPv4-mapped ranges as IPv4", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("trusted proxy %q: want an address or CIDR: %w", s, err)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, errors.New("trusted proxy " + s + ": no zone, please")
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Trusts reports whether a is one of the trusted proxies.
func (r *Resolver) Trusts(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ClientAddr returns the client's address for req (invalid when the peer
// address cannot be parsed, as on a listener without IP peers).
func (r *Resolver) ClientAddr(req *http.Request) netip.Addr {
	client := peerAddr(req.RemoteAddr)
	if len(r.trusted) == 0 || !r.Trusts(client) {
		return client
	}
	values := req.Header.Values(string(r.header))
	hops := 0
	// Header lines are in the order received, so the last one holds the
	// newest entries.
	for i := len(values) - 1; i >= 0; i-- {
		rest := values[i]
		for rest != "" {
			var elem string
			var ok bool
			if r.header == Forwarded {
				rest, elem, ok = cutLastForwarded(rest)
			} else {
				rest, elem, ok = cutLastList(rest)
			}
			if !ok {
				// The trusted hop to the right forwarded something that
				// is not an address ("unknown", an obfuscated name, or
				// garbage): it is the best we know.
				return client
			}
			if elem == "" {
				continue // an empty list element, as "a, , b" allows
			}
			var a netip.Addr
			if r.header == Forwarded {
				a, ok = forwardedFor(elem)
			} else {
				a, ok = parseNode(elem)
			}
			if !ok {
				return client
			}
			client = a
			if hops++; !r.Trusts(a) || hops >= MaxHops {
				return client
			}
		}
	}
	return client
}

// peerAddr parses an http.Request's RemoteAddr ("ip:port").
func peerAddr(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	a, _ := netip.ParseAddr(s)
	return a.Unmap().WithZone("")
}

// cutLastList splits an X-Forwarded-For value at its last comma.
func cutLastList(s string) (rest, elem string, ok bool) {
	i := strings.LastIndexByte(s, ',')
	if i < 0 {
		return "", strings.TrimSpace(s), true
	}
	return s[:i], strings.TrimSpace(s[i+1:]), true
}

// cutLastForwarded splits a Forwarded value at its last comma outside a
// quoted string, scanning from the right so that what a client wrote on
// the left cannot change how the proxies' entries on the right are read.
// ok is false when the last element has an unterminated quoted string.
func cutLastForwarded(s string) (rest, elem string, ok bool) {
	inQuote := false
	for i := len(s) - 1; i >= 0; i-- {
		switch s[i] {
		case '"':
			// Within a quoted string every backslash starts a quoted-pair,
			// so a quote after an odd run of backslashes is escaped.
			n := 0
			for j := i - 1; j >= 0 && s[j] == '\\'; j-- {
				n++
			}
			if n%2 == 0 {
				inQuote = !inQuote
			}
		case ',':
			if !inQuote {
				return s[:i], strings.TrimSpace(s[i+1:]), true
			}
		}
	}
	if inQuote {
		return "", "", false
	}
	return "", strings.TrimSpace(s), true
}

// forwardedFor returns the address in the for= parameter of one Forwarded
// element ("for=192.0.2.60;proto=https;by=203.0.113.43"). An element with
// no for=, or with two, yields nothing.
func forwardedFor(elem string) (netip.Addr, bool) {
	var node string
	found := false
	for elem != "" {
		var pair string
		pair, elem = cutPair(elem)
		name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "for") {
			continue
		}
		if found {
			return netip.Addr{}, false // RFC 7239 §4: each parameter once
		}
		found = true
		if node, ok = unquote(strings.TrimSpace(value)); !ok {
			return netip.Addr{}, false
		}
	}
	if !found {
		return netip.Addr{}, false
	}
	return parseNode(node)
}

// cutPair splits off the first ';'-separated pair, outside quoted strings.
func cutPair(s string) (pair, rest string) {
	inQuote, escaped := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case escaped:
			escaped = false
		case inQuote && c == '\\':
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case c == ';' && !inQuote:
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// unquote returns a token as is, and the content of a quoted-string with
// its quoted-pairs resolved.
func unquote(v string) (string, bool) {
	if !strings.HasPrefix(v, `"`) {
		return v, !strings.ContainsAny(v, `"\`)
	}
	if len(v) < 2 || v[len(v)-1] != '"' {
		return "", false
	}
	v = v[1 : len(v)-1]
	if !strings.ContainsRune(v, '\\') {
		return v, !strings.ContainsRune(v, '"')
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '\\':
			if i++; i == len(v) {
				return "", false
			}
		case '"':
			return "", false
		}
		b.WriteByte(v[i])
	}
	return b.String(), true
}

// parseNode reads a forwarded node: "192.0.2.1", "192.0.2.1:4711",
// "2001:db8::1", "[2001:db8::1]" or "[2001:db8::1]:4711". "unknown" and
// obfuscated identifiers ("_hidden") are not addresses.
func parseNode(s string) (netip.Addr, bool) {
	// Try the likely form first: a failed parse allocates its error.
	if strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1 {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			return ap.Addr().Unmap().WithZone(""), true
		}
	} else if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}

type ctxKey struct{}

// NewContext returns ctx carrying the client address a.
func NewContext(ctx context.Context, a netip.Addr) context.Context {
	return context.WithValue(ctx, ctxKey{}, a)
}

// FromContext returns the client address NewContext stored, if any.
func FromContext(ctx context.Context) (netip.Addr, bool) {
	a, ok := ctx.Value(ctxKey{}).(netip.Addr)
	return a, ok
}
