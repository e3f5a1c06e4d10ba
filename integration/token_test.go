package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
)

// leeway is the -auth-leeway of the token tests: short, so that they need
// not wait out the default 30 s.
const leeway = time.Second

// shortToken issues a token that expires in ttl and returns it with the
// instant the server stops honouring it (exp, in whole seconds, plus the
// leeway).
func shortToken(t *testing.T, c auth.Claims, ttl time.Duration) (string, time.Time) {
	t.Helper()
	tok, err := auth.IssueHS256([]byte(jwtSecret), c, ttl, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &claims); err != nil {
		t.Fatal(err)
	}
	return tok, claims.ExpiresAt.Add(leeway)
}

func sleepUntil(at time.Time) { time.Sleep(time.Until(at)) }

// startAnother starts one more audio session on an open connection.
func startAnother(t *testing.T, c *testclient.Client, id string) error {
	t.Helper()
	_, err := startOn(t, c, nil, id, "", testclient.Tone)
	return err
}

// refresh sends token_refresh and returns the answer: token_refreshed or
// an error.
func refresh(t *testing.T, c *testclient.Client, tok string) rtm.Message {
	t.Helper()
	if err := c.Send(rtm.TypeTokenRefresh, "agent-7", "", rtm.TokenRefresh{Token: tok}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := c.Wait(ctx, func(m rtm.Message) bool {
		return m.Type == rtm.TypeTokenRefreshed || m.Type == rtm.TypeError && testclient.Data[rtm.ErrorData](m).RequestType == rtm.TypeTokenRefresh
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func wantRefreshError(t *testing.T, m rtm.Message, code rtm.Code) {
	t.Helper()
	if m.Type != rtm.TypeError || testclient.Data[rtm.ErrorData](m).Code != code {
		t.Fatalf("token_refresh answered %s %s, want error %s", m.Type, m.Data, code)
	}
}

func terminatedIn(msgs []rtm.Message, id string) bool {
	for _, m := range msgs {
		if testclient.IsState(id, rtm.StateTerminated)(m) {
			return true
		}
	}
	return false
}

// TestTokenExpiryOnALiveConnection: after the token's exp the connection
// can start nothing, while the call it started goes on recording; a
// token_refresh for the same subject makes it useful again, one for
// another subject is refused.
func TestTokenExpiryOnALiveConnection(t *testing.T) {
	target := newUploadTarget(t)
	srv := runRTMRec(t, t.TempDir(), "-auth-hs256-secret", jwtSecret, "-auth-leeway", leeway.String(), "-allow-private-urls")
	agent := auth.Claims{Subject: "agent@acme", Role: auth.RoleClient, Tenant: "acme"}
	tok, until := shortToken(t, agent, 3*time.Second)
	c := startCall(t, srv.wsURL(), "call", "", bearer(tok), testclient.Tone)
	started := c.record(target.url("/rec/expiry.ogg"), "")
	recordingSince := time.Now()

	sleepUntil(until.Add(200 * time.Millisecond))
	err := startAnother(t, c.c, "call-2")
	if err == nil || !strings.Contains(err.Error(), string(rtm.CodeUnauthorized)) || !strings.Contains(err.Error(), "token_refresh") {
		t.Fatalf("session_start after the token expired: %v, want unauthorized naming token_refresh", err)
	}
	// The call and its recording go on past the expiry.
	time.Sleep(time.Second)
	if terminatedIn(c.c.Messages(), "call") {
		t.Fatal("the client's session ended when its token expired")
	}
	c.send(rtm.TypeRecordingStop, nil)
	stopped := testclient.Data[rtm.RecordingStateData](c.wait(testclient.IsRecording("call", rtm.RecordingStopped)))
	if stopped.RecordingID != started.RecordingID {
		t.Fatalf("STOPPED for %s, want %s", stopped.RecordingID, started.RecordingID)
	}
	// The recording ran from STARTED to more than a second past the
	// expiry; half a second past it proves it went on.
	p := ffprobe(t, target.wait("/rec/expiry.ogg").File)
	if min := until.Sub(recordingSince).Seconds() + 0.5; p.duration() < min {
		t.Fatalf("recording of %.2f s, want at least %.2f s: it did not go on past the token's expiry", p.duration(), min)
	}

	other, _ := shortToken(t, auth.Claims{Subject: "intruder@acme", Role: auth.RoleClient, Tenant: "acme"}, time.Hour)
	wantRefreshError(t, refresh(t, c.c, other), rtm.CodeUnauthorized)
	supervisor, _ := shortToken(t, auth.Claims{Subject: "agent@acme", Role: auth.RoleSupervisor, Tenant: "acme", Sessions: []string{"*"}}, time.Hour)
	wantRefreshError(t, refresh(t, c.c, supervisor), rtm.CodeUnauthorized)
	wantRefreshError(t, refresh(t, c.c, "not-a-token"), rtm.CodeUnauthorized)
	if err := startAnother(t, c.c, "call-3"); err == nil {
		t.Fatal("a refused token_refresh made the connection useful again")
	}

	fresh, freshUntil := shortToken(t, agent, time.Hour)
	m := refresh(t, c.c, fresh)
	if m.Type != rtm.TypeTokenRefreshed {
		t.Fatalf("token_refresh answered %s %s", m.Type, m.Data)
	}
	if got := testclient.Data[rtm.TokenRefreshed](m).ExpiresAt; !got.Equal(freshUntil) {
		t.Fatalf("expires_at = %v, want %v (the token's exp plus the leeway)", got, freshUntil)
	}
	if err := startAnother(t, c.c, "call-4"); err != nil {
		t.Fatalf("session_start after token_refresh: %v", err)
	}
	c.record(target.url("/rec/after-refresh.ogg"), "")
}

// TestSupervisorTokenExpiry: a supervisor session ends at its token's exp
// with TERM_BY_TOKEN_EXPIRED while the monitored call goes on; a
// token_refresh before then keeps it listening.
func TestSupervisorTokenExpiry(t *testing.T) {
	srv := runRTMRec(t, t.TempDir(), "-auth-hs256-secret", jwtSecret, "-auth-leeway", leeway.String())
	call := startCall(t, srv.wsURL(), "call", "", bearer(token(t, auth.Claims{Subject: "agent@acme", Role: auth.RoleClient, Tenant: "acme"})), testclient.Tone)
	boss := auth.Claims{Subject: "boss@acme", Role: auth.RoleSupervisor, Tenant: "acme", Sessions: []string{"*"}}

	join := func(t *testing.T, tok, id string) (*testclient.Client, *testclient.Watcher) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, err := testclient.Dial(ctx, srv.wsURL(), bearer(tok))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		api, _ := testclient.NewAPI()
		w, err := testclient.NewWatcher(api, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Close)
		if err := c.Join(ctx, w, "boss", id, "call"); err != nil {
			t.Fatal(err)
		}
		return c, w
	}
	listening := func(t *testing.T, w *testclient.Watcher) int {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if p, _ := w.Stats(); p["audio"] > 0 || time.Now().After(deadline) {
				return p["audio"]
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	t.Run("ends at exp", func(t *testing.T) {
		tok, until := shortToken(t, boss, 3*time.Second)
		c, w := join(t, tok, "sup-1")
		if listening(t, w) == 0 {
			t.Fatal("the supervisor receives nothing")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		m, err := c.Wait(ctx, testclient.IsState("sup-1", rtm.StateTerminated))
		if err != nil {
			t.Fatal(err)
		}
		ended := time.Now()
		if cause := testclient.Data[rtm.SessionState](m).TerminationCause; cause != rtm.CauseTokenExpired {
			t.Fatalf("cause = %s, want %s", cause, rtm.CauseTokenExpired)
		}
		if early, late := until.Sub(ended), ended.Sub(until); early > 100*time.Millisecond || late > 2*time.Second {
			t.Fatalf("ended at %v, the token is honoured until %v", ended, until)
		}
		if terminatedIn(call.c.Messages(), "call") {
			t.Fatal("the monitored call ended with its supervisor's token")
		}
	})

	t.Run("token_refresh keeps it listening", func(t *testing.T) {
		tok, until := shortToken(t, boss, 3*time.Second)
		c, w := join(t, tok, "sup-2")
		listening(t, w)
		other, _ := shortToken(t, auth.Claims{Subject: "boss2@acme", Role: auth.RoleSupervisor, Tenant: "acme", Sessions: []string{"*"}}, time.Hour)
		wantRefreshError(t, refresh(t, c, other), rtm.CodeUnauthorized)
		fresh, _ := shortToken(t, boss, time.Hour)
		if m := refresh(t, c, fresh); m.Type != rtm.TypeTokenRefreshed {
			t.Fatalf("token_refresh answered %s %s", m.Type, m.Data)
		}
		sleepUntil(until.Add(2 * time.Second))
		if terminatedIn(c.Messages(), "sup-2") {
			t.Fatal("the supervisor ended at the old token's expiry despite token_refresh")
		}
		before, _ := w.Stats()
		time.Sleep(500 * time.Millisecond)
		if after, _ := w.Stats(); after["audio"] <= before["audio"] {
			t.Fatal("the refreshed supervisor no longer receives audio")
		}
	})
}
