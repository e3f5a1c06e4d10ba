package integration

import (
	"bytes"
	"context"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
)

// dialStatus opens /rtm with the given headers and returns the HTTP status
// of the answer (101 when upgraded); an upgraded connection is kept open
// until the test ends. It may be called from any goroutine.
func dialStatus(t *testing.T, url string, h http.Header) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.DefaultDialer.DialContext(ctx, url, h)
	if err == nil {
		t.Cleanup(func() { ws.Close() })
		return http.StatusSwitchingProtocols
	}
	if resp == nil {
		t.Errorf("dial: %v", err)
		return 0
	}
	return resp.StatusCode
}

// TestTrustedProxyHeader runs rtmrec behind a "load balancer" (the test,
// on 127.0.0.1) with one unauthenticated connection per client IP, and
// observes through that limit whose address counts: the forwarded client
// when the peer is a trusted proxy, the peer itself otherwise.
func TestTrustedProxyHeader(t *testing.T) {
	limit := []string{"-max-conns-per-ip", "1", "-conn-rate-per-ip", "1000"}
	xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }
	fwd := func(v string) http.Header { return http.Header{"Forwarded": {v}} }

	t.Run("trusted X-Forwarded-For", func(t *testing.T) {
		srv := runRTMRec(t, t.TempDir(), append(limit, "-trusted-proxies", "127.0.0.0/8")...)
		steps := []struct {
			header http.Header
			want   int
		}{
			{xff("203.0.113.1"), 101},
			{xff("203.0.113.2"), 101}, // another client behind the balancer
			{xff("203.0.113.1"), 429}, // the first client again: its limit
			// What the client wrote to the left of the balancer's entry
			// changes nothing.
			{xff("203.0.113.9, 203.0.113.1"), 429},
			{xff("127.0.0.5, 203.0.113.2"), 429},
			// The other header is the client's, and is not read.
			{http.Header{"X-Forwarded-For": {"203.0.113.1"}, "Forwarded": {"for=203.0.113.3"}}, 429},
			{nil, 101}, // the balancer's own health check counts as itself
		}
		for i, s := range steps {
			if got := dialStatus(t, srv.wsURL(), s.header); got != s.want {
				t.Fatalf("step %d (%v): HTTP %d, want %d", i, s.header, got, s.want)
			}
		}
		if !strings.Contains(srv.log(), `"client_ip":"203.0.113.1"`) {
			t.Fatal("the refusal's log line does not name the forwarded client")
		}
	})

	t.Run("trusted Forwarded", func(t *testing.T) {
		srv := runRTMRec(t, t.TempDir(), append(limit, "-trusted-proxies", "127.0.0.1", "-client-ip-header", "Forwarded")...)
		steps := []struct {
			header http.Header
			want   int
		}{
			{fwd(`for="[2001:db8::1]:4711";proto=https`), 101},
			{fwd("for=203.0.113.2"), 101},
			{fwd(`for="[2001:db8::1]"`), 429},
			{fwd(`for=203.0.113.9, for=203.0.113.2;proto=https`), 429},
			{xff("203.0.113.7"), 101}, // X-Forwarded-For not read: the peer, 127.0.0.1
		}
		for i, s := range steps {
			if got := dialStatus(t, srv.wsURL(), s.header); got != s.want {
				t.Fatalf("step %d (%v): HTTP %d, want %d", i, s.header, got, s.want)
			}
		}
	})

	t.Run("untrusted peer", func(t *testing.T) {
		srv := runRTMRec(t, t.TempDir(), append(limit, "-trusted-proxies", "10.0.0.0/8")...)
		if got := dialStatus(t, srv.wsURL(), xff("203.0.113.1")); got != 101 {
			t.Fatalf("first: HTTP %d", got)
		}
		// Anyone can write the header: from 127.0.0.1, which is not a
		// trusted proxy, it is ignored and the peer's one slot is taken.
		if got := dialStatus(t, srv.wsURL(), xff("203.0.113.2")); got != 429 {
			t.Fatalf("a forged X-Forwarded-For from an untrusted peer bought another slot: HTTP %d", got)
		}
		// The log is read from the process's stderr: give the line time to come.
		for deadline := time.Now().Add(5 * time.Second); !strings.Contains(srv.log(), `"client_ip":"127.0.0.1"`); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the refusal's log line does not name the peer")
			}
		}
	})
}

// TestContactCenterBehindOneAddress opens 300 authenticated connections
// from one address while an unauthenticated flood comes from the same
// address, with the default limits: every agent gets in, every attempt of
// the flood is refused, and past its burst with 429.
func TestContactCenterBehindOneAddress(t *testing.T) {
	const agents, flood = 300, 300
	srv := runRTMRec(t, t.TempDir(), "-auth-hs256-secret", jwtSecret)
	agent := bearer(token(t, auth.Claims{Subject: "agent@acme", Role: auth.RoleClient, Tenant: "acme"}))
	forged := bearer(signedHS256(t, "another-secret-of-at-least-32-bytes!"))

	var wg sync.WaitGroup
	floodStatus := map[int]int{}
	start := time.Now()
	var floodTime time.Duration
	wg.Go(func() {
		for i := range flood {
			var h http.Header
			if i%2 == 1 {
				h = forged
			}
			floodStatus[dialStatus(t, srv.wsURL(), h)]++
		}
		floodTime = time.Since(start)
	})
	// The agents connect four at a time, as a shift starting would.
	var mu sync.Mutex
	agentStatus := map[int]int{}
	sem := make(chan struct{}, 4)
	for range agents {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			got := dialStatus(t, srv.wsURL(), agent)
			mu.Lock()
			agentStatus[got]++
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("from one address in %.2f s: %d agents with a token: %v; flood of %d without a valid token: %v (HTTP status: count)",
		time.Since(start).Seconds(), agents, agentStatus, flood, floodStatus)
	if agentStatus[101] != agents {
		t.Fatalf("agents: %v, want all %d upgraded", agentStatus, agents)
	}
	// Burst 20 (twice -conn-rate-per-ip 10/s) plus what refilled while the
	// flood ran get 401; everything else is 429.
	maxUnauthorized := 20 + int(10*floodTime.Seconds()) + 1
	if floodStatus[101] != 0 || floodStatus[401]+floodStatus[429] != flood || floodStatus[401] > maxUnauthorized {
		t.Fatalf("flood: %v, want no upgrade and at most %d answered 401, the rest 429", floodStatus, maxUnauthorized)
	}

	// Refusals close the connection: a flood cannot send its attempts
	// down one connection and skip the handshakes.
	resp, err := http.Get(srv.httpURL() + "/rtm")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if (resp.StatusCode != 401 && resp.StatusCode != 429) || !resp.Close {
		t.Fatalf("refused attempt: HTTP %d, connection kept open: %v", resp.StatusCode, !resp.Close)
	}

	// The address that flooded still gets an agent's call through.
	startCall(t, srv.wsURL(), "after-flood", "", agent, testclient.Tone)
	if _, body := srv.get("/metrics"); !strings.Contains(body, `rtmrec_limits_refused_total{limit="conn_rate"}`) {
		t.Fatal("the refusals are not counted")
	}
}

func signedHS256(t *testing.T, secret string) string {
	t.Helper()
	tok, err := auth.IssueHS256([]byte(secret), auth.Claims{Subject: "x", Role: auth.RoleClient}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestTenantLimits fills one tenant's sessions and recordings and checks
// that it gets server_busy while another tenant still works.
func TestTenantLimits(t *testing.T) {
	target := newUploadTarget(t)
	srv := runRTMRec(t, t.TempDir(), "-auth-hs256-secret", jwtSecret, "-allow-private-urls",
		"-max-sessions-per-tenant", "2", "-max-recordings-per-tenant", "1")
	acme := bearer(token(t, auth.Claims{Subject: "agent@acme", Role: auth.RoleClient, Tenant: "acme"}))
	globex := bearer(token(t, auth.Claims{Subject: "agent@globex", Role: auth.RoleClient, Tenant: "globex"}))

	a1 := startCall(t, srv.wsURL(), "a1", "", acme, testclient.Tone)
	a2 := startCall(t, srv.wsURL(), "a2", "", acme, testclient.Tone)
	g1 := startCall(t, srv.wsURL(), "g1", "", globex, testclient.Tone)

	if err := tryStartCall(t, srv.wsURL(), "a3", acme); err == nil || !strings.Contains(err.Error(), string(rtm.CodeServerBusy)) {
		t.Fatalf("acme's third session: %v, want server_busy", err)
	}

	a1.record(target.url("/a1.ogg"), "")
	a2.send(rtm.TypeRecordingStart, rtm.RecordingStart{UploadURL: target.url("/a2.ogg")})
	busy := testclient.Data[rtm.ErrorData](a2.wait(testclient.IsError(rtm.CodeServerBusy)))
	if !strings.Contains(busy.Message, "tenant_recordings") {
		t.Errorf("refusal message %q does not say which limit", busy.Message)
	}
	g1.record(target.url("/g1.ogg"), "") // the other tenant is not affected

	// acme's room comes back when its recording ends.
	a1.send(rtm.TypeRecordingStop, nil)
	a1.wait(testclient.IsRecording("a1", rtm.RecordingStopped))
	a2.record(target.url("/a2.ogg"), "")

	_, body := srv.get("/metrics")
	for _, want := range []string{`rtmrec_limits_refused_total{limit="tenant_sessions"} 1`, `rtmrec_limits_refused_total{limit="tenant_recordings"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestDevRefusesNonLoopbackListen(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		t.Run(listen, func(t *testing.T) {
			cmd := exec.Command(rtmrecBinary(t), "-dev", "-listen", listen, "-auth-hs256-secret", jwtSecret, "-data-dir", t.TempDir())
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatal("rtmrec -dev kept running on a non-loopback address")
			}
			if cmd.ProcessState.ExitCode() == 0 {
				t.Fatal("exit code 0")
			}
			if msg := stderr.String(); !strings.Contains(msg, "-dev only runs on a loopback -listen") {
				t.Fatalf("stderr does not say why: %q", msg)
			}
		})
	}
	// On loopback it runs.
	runRTMRec(t, t.TempDir(), "-dev", "-listen", "127.0.0.1:0")
}
