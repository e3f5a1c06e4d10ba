package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/rtm"
)

const jwtSecret = "integration-jwt-secret-of-32-bytes!!"

func token(t *testing.T, c auth.Claims) string {
	t.Helper()
	tok, err := auth.IssueHS256([]byte(jwtSecret), c, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func signed(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokensAreCheckedBeforeTheUpgrade(t *testing.T) {
	srv := runRTMRec(t, t.TempDir(), "-auth-hs256-secret", jwtSecret)
	now := time.Now()
	base := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "agent@acme", "aud": "rtmrec", "role": "client", "exp": now.Add(time.Hour).Unix()}
	}
	with := func(k string, v any) jwt.MapClaims { c := base(); c[k] = v; return c }
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x","aud":"rtmrec","role":"client","exp":9999999999}`)) + "."
	tests := []struct {
		name   string
		header http.Header
		query  string
		ok     bool
	}{
		{"no token", nil, "", false},
		{"valid bearer", bearer(signed(t, jwt.SigningMethodHS256, []byte(jwtSecret), base())), "", true},
		{"valid query parameter", nil, signed(t, jwt.SigningMethodHS256, []byte(jwtSecret), base()), true},
		{"forged", bearer(signed(t, jwt.SigningMethodHS256, []byte("another-secret-of-at-least-32-bytes"), base())), "", false},
		{"expired", bearer(signed(t, jwt.SigningMethodHS256, []byte(jwtSecret), with("exp", now.Add(-time.Hour).Unix()))), "", false},
		{"not yet valid", bearer(signed(t, jwt.SigningMethodHS256, []byte(jwtSecret), with("nbf", now.Add(time.Hour).Unix()))), "", false},
		{"wrong audience", bearer(signed(t, jwt.SigningMethodHS256, []byte(jwtSecret), with("aud", "other"))), "", false},
		{"unknown role", bearer(signed(t, jwt.SigningMethodHS256, []byte(jwtSecret), with("role", "admin"))), "", false},
		{"alg none", bearer(none), "", false},
		{"HS512", bearer(signed(t, jwt.SigningMethodHS512, []byte(jwtSecret), base())), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := srv.wsURL()
			if tt.query != "" {
				u += "?access_token=" + tt.query
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ws, resp, err := websocket.DefaultDialer.DialContext(ctx, u, tt.header)
			if tt.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				ws.Close()
				return
			}
			if err == nil {
				ws.Close()
				t.Fatal("upgraded without a valid token")
			}
			if resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("resp = %v, want 401", resp)
			}
		})
	}
	if strings.Contains(srv.log(), tests[2].query) {
		t.Fatal("the access_token query parameter appears in the log")
	}
}

func TestRolesTenantsAndPrefixes(t *testing.T) {
	hooks := newHookReceiver(t, "")
	srv := runRTMRec(t, t.TempDir(), "-auth-hs256-secret", jwtSecret, "-allow-private-urls")
	acme := bearer(token(t, auth.Claims{Subject: "agent@acme", Role: auth.RoleClient, Tenant: "acme",
		UploadPrefixes: []string{"https://uploads.acme.example/"}}))
	globex := bearer(token(t, auth.Claims{Subject: "agent@globex", Role: auth.RoleClient, Tenant: "globex"}))

	a := startCall(t, srv.wsURL(), "call", hooks.url(), acme, testclient.Tone)
	// The same id in another tenant neither collides nor leaks.
	startCall(t, srv.wsURL(), "call", "", globex, testclient.Tone)

	a.send(rtm.TypeRecordingStart, rtm.RecordingStart{UploadURL: "https://elsewhere.example/x.ogg"})
	a.wait(testclient.IsError(rtm.CodeUnauthorized))

	events := hooks.waitFor("call", func(e hookEvent) bool { return e.state() == "CONNECTED" })
	if events[0].Identity != "agent@acme" {
		t.Fatalf("webhook identity = %q, want the token's sub", events[0].Identity)
	}

	join := func(h http.Header, id, target string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, _, err := testclient.Dial(ctx, srv.wsURL(), h)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		api, _ := testclient.NewAPI()
		w, err := testclient.NewWatcher(api, 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		return c.Join(ctx, w, "boss", id, target)
	}
	supAcme := bearer(token(t, auth.Claims{Subject: "boss@acme", Role: auth.RoleSupervisor, Tenant: "acme", Sessions: []string{"*"}}))
	supOnlyOther := bearer(token(t, auth.Claims{Subject: "boss2@acme", Role: auth.RoleSupervisor, Tenant: "acme", Sessions: []string{"other"}}))
	supGlobex := bearer(token(t, auth.Claims{Subject: "boss@globex", Role: auth.RoleSupervisor, Tenant: "initech", Sessions: []string{"*"}}))
	tests := []struct {
		name   string
		header http.Header
		code   rtm.Code
	}{
		{"supervisor of the tenant", supAcme, ""},
		{"client token used to supervise", acme, rtm.CodeUnauthorized},
		{"supervisor not allowed this session", supOnlyOther, rtm.CodeUnauthorized},
		{"supervisor of another tenant", supGlobex, rtm.CodeSessionNotFound},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := join(tt.header, "sup"+string(rune('a'+i)), "call")
			if tt.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), string(tt.code)) {
				t.Fatalf("join: %v, want %s", err, tt.code)
			}
		})
	}

	// A supervisor token cannot start a session (and so cannot record).
	if err := tryStartCall(t, srv.wsURL(), "boss-call", supAcme); err == nil || !strings.Contains(err.Error(), string(rtm.CodeUnauthorized)) {
		t.Fatalf("supervisor starting a session: %v, want unauthorized", err)
	}
}

func TestRefusesToRunUnauthenticatedOffLoopback(t *testing.T) {
	cmd := exec.Command(rtmrecBinary(t), "-listen", "0.0.0.0:0", "-data-dir", t.TempDir())
	out, err := cmd.CombinedOutput()
	if err == nil || cmd.ProcessState.ExitCode() == 0 {
		t.Fatalf("started without auth on 0.0.0.0: %s", out)
	}
	if !strings.Contains(string(out), "authentication is required") || !strings.Contains(string(out), "-insecure-no-auth") {
		t.Fatalf("message does not say why: %s", out)
	}
	// With the explicit flag it starts.
	p := runRTMRec(t, t.TempDir(), "-listen", "0.0.0.0:0", "-insecure-no-auth")
	if !strings.HasPrefix(p.addr, "[::]:") && !strings.HasPrefix(p.addr, "0.0.0.0:") {
		t.Fatalf("listening on %s", p.addr)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	srv := runRTMRec(t, t.TempDir(), "-tls-cert", certFile, "-tls-key", keyFile)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, _, err := d.DialContext(ctx, "wss://"+srv.addr+"/rtm", nil)
	if err != nil {
		t.Fatalf("wss: %v", err)
	}
	if err := ws.WriteJSON(map[string]string{"type": "ping", "session_id": "tls"}); err != nil {
		t.Fatal(err)
	}
	var m rtm.Message
	if err := ws.ReadJSON(&m); err != nil || m.Type != rtm.TypePong {
		t.Fatalf("pong over wss: %v %+v", err, m)
	}
	ws.Close()
	// Plain ws on the TLS port does not work.
	if ws, _, err := websocket.DefaultDialer.DialContext(ctx, srv.wsURL(), nil); err == nil {
		ws.Close()
		t.Fatal("plain ws accepted on the TLS listener")
	}

	// A renewed certificate is served after SIGHUP, without a restart.
	newCert, newKey, newPool := selfSigned(t, t.TempDir())
	for _, f := range [][2]string{{newCert, certFile}, {newKey, keyFile}} {
		b, _ := os.ReadFile(f[0])
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	d.TLSClientConfig.RootCAs = newPool
	deadline := time.Now().Add(5 * time.Second)
	for {
		ws, _, err := d.DialContext(ctx, "wss://"+srv.addr+"/rtm", nil)
		if err == nil {
			ws.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("renewed certificate not served after SIGHUP: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestLimits(t *testing.T) {
	srv := runRTMRec(t, t.TempDir(), "-max-conns-per-ip", "2", "-conn-rate-per-ip", "1000", "-max-sessions", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var open []*websocket.Conn
	for range 2 {
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, srv.wsURL(), nil)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, ws)
	}
	_, resp, err := websocket.DefaultDialer.DialContext(ctx, srv.wsURL(), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection from one IP: %v %v, want 429", err, resp)
	}
	open[0].Close()
	// Recovered once a connection closes.
	ws := eventually(t, func() (*websocket.Conn, error) {
		ws, _, err := websocket.DefaultDialer.DialContext(ctx, srv.wsURL(), nil)
		return ws, err
	})
	ws.Close()
	open[1].Close()

	// One session on the server at most. (The server releases a closed
	// connection's slot when its reader sees the close, so dials retry.)
	first := eventually(t, func() (*testclient.Client, error) {
		c, _, err := testclient.Dial(ctx, srv.wsURL(), nil)
		return c, err
	})
	defer first.Close()
	api, _ := testclient.NewAPI()
	p1, _ := testclient.NewPeer(api, testclient.Tone)
	defer p1.Close()
	if err := first.Start(ctx, p1, "x", "first", ""); err != nil {
		t.Fatal(err)
	}
	c := eventually(t, func() (*testclient.Client, error) {
		c, _, err := testclient.Dial(ctx, srv.wsURL(), nil)
		return c, err
	})
	defer c.Close()
	p, _ := testclient.NewPeer(api, testclient.Tone)
	defer p.Close()
	if err := c.Start(ctx, p, "x", "second", ""); err == nil || !strings.Contains(err.Error(), string(rtm.CodeServerBusy)) {
		t.Fatalf("second session: %v, want server_busy", err)
	}
	if code, body := srv.get("/metrics"); code != 200 || !strings.Contains(body, `rtmrec_limits_refused_total{limit="sessions"} 1`) {
		t.Fatalf("refusal not counted in metrics (%d)", code)
	}
}

// TestConnectionFloodIsBounded floods one IP with connection attempts and
// checks that the rate limit holds: accepted ≤ burst + rate × elapsed.
func TestConnectionFloodIsBounded(t *testing.T) {
	const rate, attempts = 20, 300
	srv := runRTMRec(t, t.TempDir(), "-conn-rate-per-ip", "20", "-max-conns-per-ip", "1000")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	accepted, refused := 0, 0
	for range attempts {
		ws, resp, err := websocket.DefaultDialer.DialContext(ctx, srv.wsURL(), nil)
		switch {
		case err == nil:
			accepted++
			ws.Close()
		case resp != nil && resp.StatusCode == http.StatusTooManyRequests:
			refused++
		default:
			t.Fatalf("attempt failed otherwise: %v", err)
		}
	}
	elapsed := time.Since(start).Seconds()
	limit := 2*rate + int(rate*elapsed) + 1 // burst is twice the rate
	t.Logf("connection flood: %d attempted in %.2f s, %d accepted, %d refused with 429 (allowed at most %d)", attempts, elapsed, accepted, refused, limit)
	if accepted > limit || accepted+refused != attempts {
		t.Fatalf("%d accepted, at most %d allowed", accepted, limit)
	}
	if code, body := srv.get("/metrics"); code != 200 || !strings.Contains(body, `rtmrec_limits_refused_total{limit="conn_rate"}`) {
		t.Fatal("refusals not in metrics")
	}
}

// eventually retries f for a few seconds, for admissions that wait on the
// server noticing a close.
func eventually[T any](t *testing.T, f func() (T, error)) T {
	t.Helper()
	for i := 0; ; i++ {
		v, err := f()
		if err == nil {
			return v
		}
		if i > 100 {
			t.Fatalf("still refused after 5 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
