package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/console"
	"github.com/rtmrec/rtmrec/delivery"
	"github.com/rtmrec/rtmrec/session"
)

// devTokenTTL is how long a console token lives: a working session, not a
// credential worth keeping.
const devTokenTTL = time.Hour

// devSubject is the identity of tokens the console issues; it shows up in
// manifests and webhook bodies as "identity".
const devSubject = "dev-console"

// prepareDev gives -dev a webhook secret when the operator set none, so
// that the console shows signed webhooks and whether they verify: a
// whsec_ secret made at start, used to sign and, by the webhook sink, to
// verify. Call it before the webhook outbox is made.
func prepareDev(cfg *config) error {
	if !cfg.Dev || len(cfg.WebhookSecrets) > 0 {
		return nil
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("dev mode: webhook secret: %w", err)
	}
	cfg.devWebhookSecret = "whsec_" + base64.StdEncoding.EncodeToString(key)
	cfg.WebhookSecrets = secrets{cfg.devWebhookSecret}
	return nil
}

// devConsoleURL is the address to open the console at.
func devConsoleURL(addr net.Addr, tls bool) string {
	if tls {
		return "https://" + addr.String() + "/dev/"
	}
	return "http://" + addr.String() + "/dev/"
}

// recordingProgress is where the console reads how a recording's upload
// is going (delivery.Journeys).
type recordingProgress interface {
	Progress(id string) (delivery.Progress, bool, error)
}

// devConfig is the answer of GET /dev/config: what the pages need to
// know of the server.
type devConfig struct {
	// WebhookSecret is the secret -dev made at start (empty when the
	// operator gave -webhook-secret, which the console does not show), to
	// try a receiver of one's own.
	WebhookSecret string `json:"webhook_secret,omitempty"`
	// WebhooksSigned tells whether the server signs its webhooks.
	WebhooksSigned bool `json:"webhooks_signed"`
	// UploadMaxAttempts bounds the upload attempts of a recording.
	UploadMaxAttempts int `json:"upload_max_attempts"`
}

// mountDev serves the development console and its sinks under /dev/ (only
// with -dev, which also allows private upload and webhook URLs, so the
// server can upload to and notify itself):
//
//	GET  /                      redirects to /dev/
//	GET  /dev/                  the agent page; /dev/supervisor.html the supervisor page
//	GET  /dev/config            what the pages need to know of the server (JSON)
//	GET  /dev/sessions          live sessions (JSON)
//	GET  /dev/recordings/{id}   how a recording's upload is going: attempts, next attempt,
//	                            last reason, where a failed one's file is kept (JSON)
//	GET  /dev/token?role=R      a token for the console when auth is on
//	PUT  /dev/uploads/{name}    upload sink, into <data-dir>/dev-uploads
//	GET  /dev/uploads/{name}    an uploaded recording, for playback
//	GET  /dev/uploads           uploads (JSON)
//	POST /dev/webhooks          webhook sink (last 500 kept in memory), checks signatures
//	GET  /dev/webhooks          received webhooks (JSON; ?after=SEQ)
//	GET  /dev/webhooks/stream   received webhooks, live (Server-Sent Events)
func mountDev(mux *http.ServeMux, cfg *config, srv *session.Server, a *authenticator, recs recordingProgress, drained func() bool, log *slog.Logger) error {
	log = log.With("component", "dev")
	uploads, err := console.NewUploadSink(filepath.Join(cfg.DataDir, "dev-uploads"), console.DefaultMaxUploadBytes, log)
	if err != nil {
		return fmt.Errorf("dev mode: %w", err)
	}
	keys, err := parseSecrets(cfg.WebhookSecrets)
	if err != nil {
		return err
	}
	// Live webhook streams end once the drain has delivered the last
	// events (the pages still see them), or they would hold up the HTTP
	// server's graceful shutdown.
	webhooks := console.NewWebhookSink(console.DefaultWebhookCapacity, keys, drained, log)

	mux.Handle("GET /{$}", http.RedirectHandler("/dev/", http.StatusFound))
	mux.Handle("GET /dev/", http.StripPrefix("/dev", console.Pages()))
	mux.HandleFunc("GET /dev/config", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, devConfig{WebhookSecret: cfg.devWebhookSecret, WebhooksSigned: len(keys) > 0, UploadMaxAttempts: cfg.UploadMaxAttempts})
	})
	mux.HandleFunc("GET /dev/recordings/{id}", func(w http.ResponseWriter, r *http.Request) {
		p, ok, err := recs.Progress(r.PathValue("id"))
		switch {
		case err != nil:
			log.Error("dev recording status", "recording_id", r.PathValue("id"), "err", err)
			http.Error(w, "cannot read the recording's state", http.StatusInternalServerError)
		case !ok:
			http.Error(w, "no such recording here: it never started on this server, or it was uploaded and is gone", http.StatusNotFound)
		default:
			writeJSON(w, p)
		}
	})
	mux.HandleFunc("GET /dev/sessions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, srv.Sessions())
	})
	mux.HandleFunc("GET /dev/token", devTokenHandler(cfg, a))
	mux.HandleFunc("PUT /dev/uploads/{name}", uploads.Put)
	mux.HandleFunc("GET /dev/uploads/{name}", uploads.Get)
	mux.HandleFunc("GET /dev/uploads", uploads.List("/dev/uploads/"))
	mux.HandleFunc("POST /dev/webhooks", webhooks.Post)
	mux.HandleFunc("GET /dev/webhooks", webhooks.List)
	mux.HandleFunc("GET /dev/webhooks/stream", webhooks.Stream)

	if a.enabled() {
		// Whoever reaches /dev/token gets a token: say so loudly, since
		// that defeats the authentication the operator configured.
		log.Warn("dev mode: /dev/token issues client and supervisor tokens to anyone who can reach " + cfg.Listen)
	}
	return nil
}

// devToken is the answer of GET /dev/token. Without auth, Token is empty
// and the console connects without one.
type devToken struct {
	Auth      bool       `json:"auth"`
	Role      string     `json:"role"`
	Token     string     `json:"token,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// devTokenHandler issues console tokens signed with the first HS256 secret:
// role=client may record, role=supervisor may monitor any session of the
// default tenant.
func devTokenHandler(cfg *config, a *authenticator) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		role := auth.Role(r.URL.Query().Get("role"))
		if role == "" {
			role = auth.RoleClient
		}
		if role != auth.RoleClient && role != auth.RoleSupervisor {
			http.Error(w, "role must be client or supervisor", http.StatusBadRequest)
			return
		}
		if !a.enabled() {
			writeJSON(w, devToken{Auth: false, Role: string(role)})
			return
		}
		if len(cfg.AuthHS256Secrets) == 0 {
			// Public keys verify tokens but cannot sign them.
			http.Error(w, "the dev console can only issue tokens with -auth-hs256-secret; only public keys are configured", http.StatusNotImplemented)
			return
		}
		c := auth.Claims{Subject: devSubject, Role: role}
		if role == auth.RoleSupervisor {
			c.Sessions = []string{auth.AnySession}
		}
		now := time.Now()
		tok, err := auth.IssueHS256([]byte(cfg.AuthHS256Secrets[0]), c, devTokenTTL, now)
		if err != nil {
			http.Error(w, "cannot issue token: "+err.Error(), http.StatusInternalServerError)
			return
		}
		exp := now.Add(devTokenTTL).UTC().Truncate(time.Second)
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, devToken{Auth: true, Role: string(role), Token: tok, ExpiresAt: &exp})
	}
}

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
