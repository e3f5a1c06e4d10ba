package session

import (
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/rtm"
)

// fakePrincipal is a token's principal for the refresh rules.
type fakePrincipal struct {
	anonymous
	sub, tenant, role string
	until             time.Time
}

func (p fakePrincipal) Identity() string     { return p.sub }
func (p fakePrincipal) Tenant() string       { return p.tenant }
func (p fakePrincipal) Role() string         { return p.role }
func (p fakePrincipal) ExpiresAt() time.Time { return p.until }

// fakeTokens "verifies" a token by looking it up.
type fakeTokens map[string]Principal

func (f fakeTokens) VerifyToken(raw string) (Principal, error) {
	if p, ok := f[raw]; ok {
		return p, nil
	}
	return nil, errors.New("invalid token: bad signature")
}

type recordingOutlet struct {
	mu   sync.Mutex
	msgs []rtm.Message
}

func (o *recordingOutlet) Send(m rtm.Message) {
	o.mu.Lock()
	o.msgs = append(o.msgs, m)
	o.mu.Unlock()
}

func (o *recordingOutlet) last(t *testing.T) rtm.Message {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.msgs) == 0 {
		t.Fatal("no answer")
	}
	return o.msgs[len(o.msgs)-1]
}

func newTokenServer(t *testing.T, tokens TokenVerifier) *Server {
	t.Helper()
	srv, err := New(Config{DataDir: t.TempDir()}, Deps{WebRTC: &WebRTC{}, Logger: slog.New(slog.DiscardHandler), Tokens: tokens})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func TestTokenRefreshRules(t *testing.T) {
	now := time.Now()
	agent := fakePrincipal{sub: "agent@acme", tenant: "acme", role: "client", until: now.Add(-time.Second)}
	later := agent
	later.until = now.Add(time.Hour)
	tokens := fakeTokens{
		"same":           later,
		"other-subject":  fakePrincipal{sub: "x@acme", tenant: "acme", role: "client", until: later.until},
		"other-tenant":   fakePrincipal{sub: "agent@acme", tenant: "globex", role: "client", until: later.until},
		"other-role":     fakePrincipal{sub: "agent@acme", tenant: "acme", role: "supervisor", until: later.until},
		"still-expired":  agent,
		"expires-sooner": fakePrincipal{sub: "agent@acme", tenant: "acme", role: "client", until: now.Add(time.Minute)},
	}
	refresh := func(l *Link, out *recordingOutlet, tok string) rtm.Message {
		m, _ := rtm.NewMessage(rtm.TypeTokenRefresh, "c", "s", rtm.TokenRefresh{Token: tok})
		l.Handle(m)
		return out.last(t)
	}
	errCode := func(m rtm.Message) rtm.Code {
		var d rtm.ErrorData
		if m.Type != rtm.TypeError || json.Unmarshal(m.Data, &d) != nil {
			return ""
		}
		return d.Code
	}

	t.Run("without a verifier", func(t *testing.T) {
		out := &recordingOutlet{}
		l := newTokenServer(t, nil).NewLink(agent, out, LinkOptions{})
		if c := errCode(refresh(l, out, "same")); c != rtm.CodeNotSupported {
			t.Fatalf("code %q, want not_supported", c)
		}
	})
	for _, tt := range []struct {
		token string
		code  rtm.Code // empty: accepted
	}{
		{"forged", rtm.CodeUnauthorized},
		{"other-subject", rtm.CodeUnauthorized},
		{"other-tenant", rtm.CodeUnauthorized},
		{"other-role", rtm.CodeUnauthorized},
		{"same", ""},
		{"expires-sooner", ""},
	} {
		t.Run(tt.token, func(t *testing.T) {
			out := &recordingOutlet{}
			l := newTokenServer(t, tokens).NewLink(agent, out, LinkOptions{})
			if err := l.unexpired(now); err == nil {
				t.Fatal("an expired token may start things")
			}
			m := refresh(l, out, tt.token)
			if tt.code != "" {
				if c := errCode(m); c != tt.code {
					t.Fatalf("answer %s %s, want error %s", m.Type, m.Data, tt.code)
				}
				if l.principal() != Principal(agent) {
					t.Fatal("a refused token replaced the principal")
				}
				return
			}
			var d rtm.TokenRefreshed
			if m.Type != rtm.TypeTokenRefreshed || m.ClientID != "c" || m.SessionID != "s" || json.Unmarshal(m.Data, &d) != nil {
				t.Fatalf("answer %s %s, want token_refreshed echoing the ids", m.Type, m.Data)
			}
			want := tokens[tt.token].ExpiresAt()
			if !d.ExpiresAt.Equal(want) {
				t.Fatalf("expires_at %v, want %v", d.ExpiresAt, want)
			}
			if err := l.unexpired(now); err != nil {
				t.Fatalf("after the refresh: %v", err)
			}
			if err := l.unexpired(want); err == nil {
				t.Fatal("the refreshed token is honoured past its own expiry")
			}
		})
	}

	t.Run("starts refused after expiry", func(t *testing.T) {
		out := &recordingOutlet{}
		l := newTokenServer(t, tokens).NewLink(agent, out, LinkOptions{})
		for _, typ := range []rtm.Type{rtm.TypeSessionStart, rtm.TypeSupervisorJoinSession, rtm.TypeRecordingStart} {
			l.Handle(rtm.Message{Type: typ, SessionID: "s"})
			if c := errCode(out.last(t)); c != rtm.CodeUnauthorized {
				t.Fatalf("%s after expiry: code %q, want unauthorized", typ, c)
			}
		}
		// What keeps a session going is not refused for the token.
		l.Handle(rtm.Message{Type: rtm.TypeRecordingStop, SessionID: "s"})
		if c := errCode(out.last(t)); c != rtm.CodeSessionNotFound {
			t.Fatalf("recording_stop after expiry: code %q, want session_not_found (no such session)", c)
		}
	})
}

// BenchmarkTokenExpiryCheck is what session_start, supervisor_join_session
// and recording_start pay for the expiry check (other messages pay
// nothing): an atomic load, a clock read and a comparison.
func BenchmarkTokenExpiryCheck(b *testing.B) {
	l := &Link{}
	l.grant.Store(&grant{p: anonymous{}, until: time.Now().Add(time.Hour)})
	b.ReportAllocs()
	for b.Loop() {
		if err := l.unexpired(time.Now()); err != nil {
			b.Fatal(err)
		}
	}
}
