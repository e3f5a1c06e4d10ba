// Package netguard keeps customer-supplied URLs (upload targets, webhook
// receivers) from reaching into the server's own network (docs/configuration.md).
//
// A URL is checked when it is given (CheckURL) and again at every
// connection (DialContext), because DNS answers may change between the two
// (DNS rebinding) and redirects may lead elsewhere.
package netguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// Errors returned by the guard. Callers map ErrInvalidURL and ErrForbidden
// to the client-visible code invalid_url; ErrResolve is a failed lookup,
// which may be temporary.
var (
	ErrInvalidURL = errors.New("invalid url")
	ErrForbidden  = errors.New("address not allowed")
	ErrResolve    = errors.New("cannot resolve host")
)

// Resolver looks up the addresses of a host. *net.Resolver satisfies it;
// tests substitute a fake DNS.
type Resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// Config configures a Guard.
type Config struct {
	// AllowPrivate lifts the address check (loopback, private, ...), for
	// tests and local development (-allow-private-urls). Scheme, host and
	// userinfo rules still apply.
	AllowPrivate bool
	// Resolver resolves host names; nil means net.DefaultResolver.
	Resolver Resolver
}

// Guard checks URLs and dials only allowed addresses. It is safe for
// concurrent use.
type Guard struct {
	allowPrivate bool
	resolver     Resolver
	dialer       net.Dialer
}

// New returns a Guard for cfg.
func New(cfg Config) *Guard {
	r := cfg.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	return &Guard{allowPrivate: cfg.AllowPrivate, resolver: r}
}

// AllowPrivate reports whether the address check is lifted.
func (g *Guard) AllowPrivate() bool { return g.allowPrivate }

// CheckURL parses raw and checks that its scheme is one of schemes
// (default http and https), that it has a host and no userinfo, and that
// the host resolves only to public addresses (unless AllowPrivate). An s3
// URL names a bucket, not a host, so it is not resolved but must have a
// key. Errors wrap ErrInvalidURL, ErrForbidden or ErrResolve and never
// contain the query string.
func (g *Guard) CheckURL(ctx context.Context, raw string, schemes ...string) (*url.URL, error) {
	if len(schemes) == 0 {
		schemes = []string{"http", "https"}
	}
	red := Redact(raw)
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the whole input, query included: drop it.
		return nil, fmt.Errorf("%s: malformed: %w", red, ErrInvalidURL)
	}
	if !schemeAllowed(u.Scheme, schemes) {
		return nil, fmt.Errorf("%s: scheme %q not allowed (want %s): %w",
			red, u.Scheme, strings.Join(schemes, ", "), ErrInvalidURL)
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%s: no host: %w", red, ErrInvalidURL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%s: userinfo not allowed: %w", red, ErrInvalidURL)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%s: bad port: %w", red, ErrInvalidURL)
		}
	}
	if u.Scheme == "s3" {
		if u.Port() != "" || strings.Trim(u.Path, "/") == "" {
			return nil, fmt.Errorf("%s: want s3://bucket/key: %w", red, ErrInvalidURL)
		}
		return u, nil
	}
	if g.allowPrivate {
		return u, nil
	}
	if _, err := g.resolve(ctx, u.Hostname()); err != nil {
		return nil, fmt.Errorf("%s: %w", red, err)
	}
	return u, nil
}

func schemeAllowed(s string, allowed []string) bool {
	for _, a := range allowed {
		if strings.EqualFold(s, a) {
			return true
		}
	}
	return false
}

// resolve returns the addresses of host, refusing the whole answer if any
// address is not public: a name that mixes public and private answers is
// exactly what a rebinding attack looks like.
func (g *Guard) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		if !g.allowed(ip) {
			return nil, &addrError{what: ip.String() + " is not a public address"}
		}
		return []netip.Addr{ip.Unmap()}, nil
	}
	addrs, err := g.resolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %s", ErrResolve, host, lookupProblem(err))
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("%w %s: no addresses", ErrResolve, host)
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			return nil, fmt.Errorf("%w %s: bad address", ErrResolve, host)
		}
		if !g.allowed(ip) {
			return nil, &addrError{what: fmt.Sprintf("%s resolves to %s, which is not a public address", host, ip.Unmap())}
		}
		out = append(out, ip.Unmap())
	}
	return out, nil
}

// lookupProblem says why a lookup failed without Go's wording, which names
// the server's own resolver ("lookup h on 10.0.0.2:53: ...").
func lookupProblem(err error) string {
	var de *net.DNSError
	switch {
	case errors.As(err, &de) && de.IsNotFound:
		return "no such host"
	case errors.As(err, &de) && de.IsTimeout, errors.Is(err, context.DeadlineExceeded):
		return "the lookup timed out"
	case errors.Is(err, context.Canceled):
		return "the lookup was cancelled"
	}
	return "the lookup failed"
}

// addrError is the guard refusing an address; it is ErrForbidden.
type addrError struct{ what string }

func (e *addrError) Error() string { return e.what }
func (e *addrError) Is(target error) bool {
	return target == ErrForbidden
}

func (g *Guard) allowed(ip netip.Addr) bool {
	return g.allowPrivate || IsPublic(ip)
}

// DialContext resolves addr, checks every address it resolves to and dials
// the checked address itself, so a second DNS answer cannot slip a private
// address in between check and connect. It has the signature of
// http.Transport.DialContext.
func (g *Guard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, ErrInvalidURL)
	}
	ips, err := g.resolve(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	var errs []error
	for _, ip := range ips {
		c, err := g.dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("dial %s: %w", host, errors.Join(errs...))
}
