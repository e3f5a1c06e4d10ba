package main

import (
	"crypto"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/internal/limits"
	"github.com/rtmrec/rtmrec/session"
)

// authenticator checks the JWT of /rtm before the WebSocket upgrade. With
// no key configured it lets everyone in (only allowed on loopback or with
// -insecure-no-auth, see config.validate).
type authenticator struct {
	verifier *auth.Verifier
}

func newAuthenticator(cfg *config) (*authenticator, error) {
	if !cfg.authConfigured() {
		return &authenticator{}, nil
	}
	ac := auth.Config{}
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
	return &authenticator{verifier: v}, nil
}

func (a *authenticator) enabled() bool { return a.verifier != nil }

// middleware answers 401 without upgrading when the token is missing or
// invalid, and otherwise hands the token's claims to the session layer.
func (a *authenticator) middleware(next http.Handler) http.Handler {
	if a.verifier == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := auth.TokenFromRequest(r)
		if tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rtmrec"`)
			http.Error(w, "unauthorized: a bearer token is required (Authorization header or access_token parameter)", http.StatusUnauthorized)
			return
		}
		claims, err := a.verifier.Verify(tok)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rtmrec", error="invalid_token"`)
			http.Error(w, "unauthorized: "+err.Error(), http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(session.WithPrincipal(r.Context(), principal{claims})))
	})
}

// principal adapts verified claims to what the session layer asks.
type principal struct{ c *auth.Claims }

func (p principal) Identity() string               { return p.c.Subject }
func (p principal) Tenant() string                 { return p.c.Tenant }
func (p principal) MayRecord() bool                { return p.c.MayRecord() }
func (p principal) MaySupervise(id string) bool    { return p.c.MaySupervise(id) }
func (p principal) AllowsUploadURL(u string) bool  { return p.c.AllowsUploadURL(u) }
func (p principal) AllowsWebhookURL(u string) bool { return p.c.AllowsWebhookURL(u) }

// admitConn applies the per-IP connection limits before anything else.
func admitConn(lim *limits.Limiter, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := clientIP(r)
		release, err := lim.AdmitConn(ip)
		if err != nil {
			status := http.StatusServiceUnavailable
			var re *limits.RefusedError
			if errors.As(err, &re) {
				status = re.HTTPStatus
				if status == http.StatusTooManyRequests {
					w.Header().Set("Retry-After", strconv.Itoa(1))
				}
			}
			http.Error(w, "server_busy: "+err.Error(), status)
			return
		}
		defer release()
		next.ServeHTTP(w, r)
	})
}

// clientIP is the TCP peer: forwarded headers are not trusted, since any
// client can set them.
func clientIP(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}
