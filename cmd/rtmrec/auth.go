package main

import (
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/compat"
	"github.com/rtmrec/rtmrec/internal/clientaddr"
	"github.com/rtmrec/rtmrec/internal/limits"
	"github.com/rtmrec/rtmrec/session"
)

// authenticator checks the JWT of /rtm before the WebSocket upgrade. With
// no key configured it lets everyone in (only allowed on loopback or with
// -insecure-no-auth, see config.validate).
type authenticator struct {
	verifier *auth.Verifier
	leeway   time.Duration
}

func newAuthenticator(cfg *config) (*authenticator, error) {
	if !cfg.authConfigured() {
		return &authenticator{}, nil
	}
	ac := auth.Config{Leeway: cfg.AuthLeeway}
	for _, s := range cfg.AuthHS256Secrets {
		ac.HS256Secrets = append(ac.HS256Secrets, []byte(s))
	}
	for _, f := range cfg.AuthPublicKeys {
		k, err := auth.LoadPublicKeyFile(f)
		if err != nil {
			return nil, fmt.Errorf("-auth-public-key: %w", err)
		}
		ac.PublicKeys = append(ac.PublicKeys, crypto.PublicKey(k))
	}
	v, err := auth.NewVerifier(ac)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return &authenticator{verifier: v, leeway: cfg.AuthLeeway}, nil
}

func (a *authenticator) enabled() bool { return a.verifier != nil }

// verify returns the request's token and its claims, or why there are
// none.
func (a *authenticator) verify(r *http.Request) (string, *auth.Claims, error) {
	tok := auth.TokenFromRequest(r)
	if tok == "" {
		return "", nil, errNoToken
	}
	c, err := a.verifier.Verify(tok)
	return tok, c, err
}

// operator names who calls the operators' API: the subject of a token with
// the operator role, or, on a server without authentication, a caller on
// this machine.
func (a *authenticator) operator(r *http.Request) (string, error) {
	if !a.enabled() {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if ip, err := netip.ParseAddr(host); err != nil || !ip.Unmap().IsLoopback() {
			return "", errors.New("without authentication the operators' API answers only on this machine")
		}
		return "local operator", nil
	}
	_, c, err := a.verify(r)
	if err != nil {
		return "", err
	}
	if c.Role != auth.RoleOperator {
		return "", errors.New("this token's role is not operator")
	}
	return c.Subject, nil
}

var errNoToken = errors.New("a bearer token is required (Authorization header or access_token parameter)")

// VerifyToken verifies the token of a token_refresh (session.TokenVerifier).
// The error names the reason (expired, bad signature, ...), never the token.
func (a *authenticator) VerifyToken(raw string) (session.Principal, error) {
	c, err := a.verifier.Verify(raw)
	if err != nil {
		return nil, err
	}
	return a.principal(c), nil
}

// Verify checks a token carried inside a compatibility protocol (Ant
// Media's token, WCS's custom.token): compat.Verifier.
func (a *authenticator) Verify(token string) (session.Principal, error) { return a.VerifyToken(token) }

// tokens is the verifier of the compatibility endpoints, nil without
// authentication.
func (a *authenticator) tokens() compat.Verifier {
	if a.verifier == nil {
		return nil
	}
	return a
}

// principal adapts verified claims for the session layer.
func (a *authenticator) principal(c *auth.Claims) principal {
	return principal{c: c, until: c.ExpiresAt.Add(a.leeway)}
}

// principal adapts verified claims to what the session layer asks. until
// is the token's exp plus the verifier's leeway: the clock skew tolerated
// at the upgrade is tolerated for the rest of the connection too.
type principal struct {
	c     *auth.Claims
	until time.Time
}

func (p principal) Identity() string               { return p.c.Subject }
func (p principal) Tenant() string                 { return p.c.Tenant }
func (p principal) Role() string                   { return string(p.c.Role) }
func (p principal) ExpiresAt() time.Time           { return p.until }
func (p principal) MayRecord() bool                { return p.c.MayRecord() }
func (p principal) MaySupervise(id string) bool    { return p.c.MaySupervise(id) }
func (p principal) AllowsUploadURL(u string) bool  { return p.c.AllowsUploadURL(u) }
func (p principal) AllowsWebhookURL(u string) bool { return p.c.AllowsWebhookURL(u) }

// gate admits /rtm connections before the WebSocket upgrade: it finds the
// client address (behind -trusted-proxies), checks the token, and applies
// the per-IP limits. Those charge only what cannot be attributed to anyone
// (no auth configured, no token, a bad token), so a contact center's agents
// sharing one NAT address are limited per tenant, not per address.
type gate struct {
	clients *clientaddr.Resolver
	authn   *authenticator
	lim     *limits.Limiter
	log     *slog.Logger
	// protocolTokens lets in a request without a token, as an
	// unauthenticated connection, for endpoints whose protocol carries the
	// token itself (Ant Media, WCS); a bad token is still refused.
	protocolTokens bool
}

func (g *gate) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := g.clients.ClientAddr(r)
		ctx := clientaddr.NewContext(r.Context(), ip)
		var release func()
		var err error
		if !g.authn.enabled() || g.protocolTokens && auth.TokenFromRequest(r) == "" {
			release, err = g.lim.AdmitConn(ip)
		} else {
			// The token is verified even from an address over its
			// allowance, so that an agent gets in while a colleague's
			// client behind the same NAT retries a bad token. That costs
			// tens (HS256) to hundreds (RS256, ES256) of microseconds,
			// about what the attempt's TLS handshake costs: refusals close
			// the connection, so a flood cannot skip the handshake by
			// sending its attempts down one connection.
			tok, claims, authErr := g.authn.verify(r)
			if authErr != nil {
				if err := g.lim.FailedAttempt(ip); err != nil {
					g.refuse(w, ip, err)
				} else {
					g.unauthorized(w, ip, authErr)
				}
				return
			}
			release, err = g.lim.AdmitAuthenticated(ip)
			// The token goes along for a cluster to carry to the node
			// serving the connection's sessions, which verifies it again.
			ctx = session.WithToken(session.WithPrincipal(ctx, g.authn.principal(claims)), tok)
		}
		if err != nil {
			g.refuse(w, ip, err)
			return
		}
		defer release()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// unauthorized answers 401 with the reason.
func (g *gate) unauthorized(w http.ResponseWriter, ip netip.Addr, err error) {
	g.log.Debug("connection refused: no valid token", "client_ip", ip, "err", err)
	challenge := `Bearer realm="rtmrec"`
	if !errors.Is(err, errNoToken) {
		challenge += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	w.Header().Set("Connection", "close")
	http.Error(w, "unauthorized: "+err.Error(), http.StatusUnauthorized)
}

// refuse answers a limit's refusal: 429 with Retry-After for the per-IP
// limits a client can cure by slowing down, 503 for server capacity.
func (g *gate) refuse(w http.ResponseWriter, ip netip.Addr, err error) {
	g.log.Debug("connection refused", "client_ip", ip, "err", err)
	w.Header().Set("Connection", "close")
	status := http.StatusServiceUnavailable
	var re *limits.RefusedError
	if errors.As(err, &re) {
		status = re.HTTPStatus
		if status == http.StatusTooManyRequests {
			secs := max(1, int(math.Ceil(re.RetryAfter.Seconds())))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
		}
	}
	http.Error(w, "server_busy: "+err.Error(), status)
}
