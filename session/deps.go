package session

import (
	"context"
	"net/url"
	"time"

	"github.com/rtmrec/rtmrec/delivery"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/webhook"
)

// Principal is who stands behind a connection, as established before the
// WebSocket upgrade (or by a token_refresh). The authentication layer puts
// it into the request context with WithPrincipal; without one the
// connection is anonymous and may do everything (an unauthenticated
// loopback server).
type Principal interface {
	// Identity is the authenticated subject, written into manifests and
	// webhook bodies.
	Identity() string
	// Tenant scopes session ids.
	Tenant() string
	// Role is the token's role (client, supervisor); a refreshed token
	// must keep it, with the identity and the tenant.
	Role() string
	// ExpiresAt is when the server stops honouring the token: its exp plus
	// the verifier's clock-skew leeway. Zero means never (no auth).
	ExpiresAt() time.Time
	MayRecord() bool
	MaySupervise(sessionID string) bool
	AllowsUploadURL(u string) bool
	AllowsWebhookURL(u string) bool
}

type principalKey struct{}

// WithPrincipal attaches the authenticated principal to a request context.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal the authentication layer attached to
// ctx, if it attached one (for front ends outside this package).
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok && p != nil
}

type tokenKey struct{}

// WithToken attaches the raw bearer token the principal was verified from
// to a request context, for a cluster to carry to the node that serves the
// connection's sessions (which verifies it again).
func WithToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// TokenFrom returns the raw token WithToken attached to ctx ("" when none:
// no access control), for front ends to pass to Server.Connect.
func TokenFrom(ctx context.Context) string {
	t, _ := ctx.Value(tokenKey{}).(string)
	return t
}

func principalFrom(ctx context.Context) Principal {
	if p, ok := ctx.Value(principalKey{}).(Principal); ok && p != nil {
		return p
	}
	return anonymous{}
}

type anonymous struct{}

func (anonymous) Identity() string             { return "" }
func (anonymous) Tenant() string               { return "" }
func (anonymous) Role() string                 { return "" }
func (anonymous) ExpiresAt() time.Time         { return time.Time{} }
func (anonymous) MayRecord() bool              { return true }
func (anonymous) MaySupervise(string) bool     { return true }
func (anonymous) AllowsUploadURL(string) bool  { return true }
func (anonymous) AllowsWebhookURL(string) bool { return true }

// TokenVerifier verifies the token of a token_refresh as the upgrade's
// token was verified (package auth, adapted in cmd/rtmrec). Its errors are
// shown to the client: they never quote the token.
type TokenVerifier interface {
	VerifyToken(raw string) (Principal, error)
}

// URLChecker refuses upload and webhook URLs that are malformed or point
// into the server's own network (docs/configuration.md). The error message is shown
// to the client and must not contain the URL's query.
type URLChecker interface {
	CheckURL(ctx context.Context, raw string, schemes ...string) (*url.URL, error)
}

// S3Policy decides which s3:// upload URLs a tenant may use. Those are
// written with the server's own credentials, so only where the operator
// allows (docs/configuration.md, Access control); without a policy s3:// is refused. The error is
// shown to the client.
type S3Policy interface {
	AllowS3(tenant string, u *url.URL) error
}

// Admission bounds the sessions and recordings of the server and of each
// tenant. A refusal (a *limits.RefusedError, or an error carrying an
// *rtm.Error) is answered with its words; any other error is internal.
type Admission interface {
	AcquireSession(tenant string) (release func(), err error)
	AcquireRecording(tenant string) (release func(), err error)
}

// Events takes a session's session_state events for its webhook (package
// webhook's outbox). Publish must not block: it queues the event behind
// every event published before it and calls delivered (if not nil) once the
// event is durable, in publish order, so that what a client sees on its
// connection is already safe for its backend.
type Events interface {
	Publish(ev webhook.Event, delivered func())
}

// Journeys keeps each recording's durable journey (package delivery),
// which also reports the recording's states. Begin and Finish block on
// disk: the session calls them off its loop. Paused and Audit never block.
type Journeys interface {
	Begin(r delivery.Route, m *recorder.Manifest, announce func(rtm.Message)) error
	Paused(id string, paused bool, pauses []recorder.PauseSpan, announce func(rtm.Message))
	Audit(id string, e recorder.AuditEvent)
	Finish(id string, m *recorder.Manifest, err error) error
}

// Directory makes session ids unique across a cluster (package cluster's
// Node): a session claims its (tenant, id) before it exists and releases it
// when it ends. Nil on a node that runs alone.
type Directory interface {
	// Claim fails when a live node holds the id (an error carrying
	// session_exists) or the directory cannot be reached (server_busy).
	// It may wait on the network: the session calls it off its loop.
	Claim(ctx context.Context, tenant, id string) error
	// Release never blocks.
	Release(tenant, id string)
}

// Router places a connection's sessions across a cluster: Route puts a
// forwarding front end in front of the connection's local Link, which
// sends each message to this node's core or to the node that serves its
// session (package cluster's Conn). Nil on a node that runs alone.
type Router interface {
	Route(local *Link, out Outlet, r Route) Handler
}

// Route is what a Router needs to know of a connection.
type Route struct {
	// Tenant scopes the session ids the connection names.
	Tenant string
	// Token is the raw bearer token the connection's principal was
	// verified from ("" without access control): the nodes serving its
	// sessions verify it again.
	Token string
	// Options are the front end's, for the links opened on other nodes.
	Options LinkOptions
}

// TokenCarrier is implemented by a Router's Handler that carries the
// connection's token to other nodes: it hears of every new token a
// token_refresh on the connection's Link accepted, on the goroutine that
// handles the connection's messages, so that the connection's sessions on
// other nodes are extended too.
type TokenCarrier interface {
	CarryToken(token string)
}

// Handler takes one client connection's messages, on one goroutine: a
// Link, or a Router's forwarding front end in front of one.
type Handler interface {
	Handle(m rtm.Message)
	// Close ends the connection's sessions, wherever they are, and returns
	// when those of this node are torn down.
	Close()
}

type nopEvents struct{}

func (nopEvents) Publish(_ webhook.Event, delivered func()) {
	if delivered != nil {
		delivered()
	}
}

type openAdmission struct{}

func (openAdmission) AcquireSession(string) (func(), error)   { return func() {}, nil }
func (openAdmission) AcquireRecording(string) (func(), error) { return func() {}, nil }
