package session

import (
	"context"
	"net/url"

	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
)

// Principal is who stands behind a connection, as established before the
// WebSocket upgrade. The authentication layer puts it into the request
// context with WithPrincipal; without one the connection is anonymous and
// may do everything (an unauthenticated loopback server).
type Principal interface {
	// Identity is the authenticated subject, written into manifests and
	// webhook bodies.
	Identity() string
	// Tenant scopes session ids.
	Tenant() string
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

func principalFrom(ctx context.Context) Principal {
	if p, ok := ctx.Value(principalKey{}).(Principal); ok && p != nil {
		return p
	}
	return anonymous{}
}

type anonymous struct{}

func (anonymous) Identity() string             { return "" }
func (anonymous) Tenant() string               { return "" }
func (anonymous) MayRecord() bool              { return true }
func (anonymous) MaySupervise(string) bool     { return true }
func (anonymous) AllowsUploadURL(string) bool  { return true }
func (anonymous) AllowsWebhookURL(string) bool { return true }

// URLChecker refuses upload and webhook URLs that are malformed or point
// into the server's own network (contract §7). The error message is shown
// to the client and must not contain the URL's query.
type URLChecker interface {
	CheckURL(ctx context.Context, raw string, schemes ...string) (*url.URL, error)
}

// S3Policy decides which s3:// upload URLs a tenant may use. Those are
// written with the server's own credentials, so only where the operator
// allows (contract §8); without a policy s3:// is refused. The error is
// shown to the client.
type S3Policy interface {
	AllowS3(tenant string, u *url.URL) error
}

// Admission bounds the sessions and recordings of the server and of each
// tenant. A refusal is answered server_busy.
type Admission interface {
	AcquireSession(tenant string) (release func(), err error)
	AcquireRecording(tenant string) (release func(), err error)
}

// Event is one session_state or recording_state bound for a webhook.
type Event struct {
	// WebhookURL is where it goes; empty means nowhere.
	WebhookURL string
	// OrderKey keeps one session's events in order.
	OrderKey string
	// Identity is the authenticated subject, added to the webhook body.
	Identity string
	Message  rtm.Message
}

// Notifier delivers events to webhooks. It must not block: the outbox
// persists and returns.
type Notifier interface {
	Notify(ev Event)
}

// Route is where a recording goes and whom its outcome concerns. It is
// stored in the recording's manifest so that a restarted server still knows.
type Route struct {
	Tenant     string `json:"tenant,omitempty"`
	SessionID  string `json:"session_id"`
	ClientID   string `json:"client_id,omitempty"`
	Identity   string `json:"identity,omitempty"`
	UploadURL  string `json:"upload_url"`
	WebhookURL string `json:"webhook_url,omitempty"`
}

// Delivery takes finished recordings (uploads them) and reports each
// outcome through Server.RecordingDelivered.
type Delivery interface {
	Deliver(m *recorder.Manifest, r Route) error
}

type nopNotifier struct{}

func (nopNotifier) Notify(Event) {}

type openAdmission struct{}

func (openAdmission) AcquireSession(string) (func(), error)   { return func() {}, nil }
func (openAdmission) AcquireRecording(string) (func(), error) { return func() {}, nil }
