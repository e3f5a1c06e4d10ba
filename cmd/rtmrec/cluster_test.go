package main

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/cluster"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/session"
)

// outlet keeps what a link says.
type outlet chan rtm.Message

func (o outlet) Send(m rtm.Message) { o <- m }

// TestRelayedLinksVerifyTheirToken: a node serving a session whose
// WebSocket is on another node verifies the token the link carries as its
// own /rtm gate would.
func TestRelayedLinksVerifyTheirToken(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	wrtc, err := session.NewWebRTC(session.ICEConfig{}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wrtc.Close() })
	srv, err := session.New(session.Config{DataDir: t.TempDir()}, session.Deps{WebRTC: wrtc, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	const secret = "relay-test-secret-of-32-bytes!!!"
	withAuth, err := newAuthenticator(&config{AuthHS256Secrets: secrets{secret}})
	if err != nil {
		t.Fatal(err)
	}
	valid, err := auth.IssueHS256([]byte(secret), auth.Claims{Subject: "boss@acme", Role: auth.RoleSupervisor, Tenant: "acme"}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	expired, err := auth.IssueHS256([]byte(secret), auth.Claims{Subject: "boss@acme", Role: auth.RoleSupervisor, Tenant: "acme"}, time.Minute, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		authn *authenticator
		token string
		ok    bool
	}{
		{"valid token", withAuth, valid, true},
		{"no token", withAuth, "", false},
		{"expired token", withAuth, expired, false},
		{"forged token", withAuth, valid[:len(valid)-2] + "xx", false},
		{"no access control, no token", &authenticator{}, "", true},
		{"no access control here, a token from a node with it", &authenticator{}, valid, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core := &relayCore{authn: tt.authn, srv: srv}
			out := make(outlet, 4)
			l, err := core.OpenLink(tt.token, out, cluster.LinkOptions{Remote: "192.0.2.9"})
			if !tt.ok {
				var re *rtm.Error
				if !errors.As(err, &re) || re.Code != rtm.CodeUnauthorized {
					t.Fatalf("OpenLink: %v, want unauthorized", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			l.Handle(rtm.Message{Type: rtm.TypePing})
			if m := <-out; m.Type != rtm.TypePong {
				t.Fatalf("answer %s, want pong", m.Type)
			}
		})
	}
}
