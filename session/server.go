package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/rtmrec/rtmrec/delivery"
	"github.com/rtmrec/rtmrec/internal/limits"
	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/webhook"
)

// Deps are the collaborators of the session server. WebRTC and Logger are
// required; the rest have safe defaults (no webhooks, no limits, every URL
// allowed but s3://, recordings refused).
type Deps struct {
	WebRTC    *WebRTC
	Logger    *slog.Logger
	Metrics   *Metrics
	Events    Events
	Journeys  Journeys
	URLs      URLChecker
	S3        S3Policy
	Admission Admission
	// Tokens verifies token_refresh; nil answers it not_supported (a
	// server without authentication).
	Tokens TokenVerifier
	// RecorderMetrics is passed to every recording (may be nil).
	RecorderMetrics *recorder.Metrics
	// Directory and Router put the server in a cluster; both nil for a
	// server that runs alone.
	Directory Directory
	Router    Router
	// RecorderWriters does the file I/O of every recording (nil: each
	// recording has writers of its own). The owner closes it after
	// Shutdown.
	RecorderWriters *recorder.Writers
}

// Server owns every session, whichever front end it came through (see
// Link), and serves the /rtm WebSocket front end itself.
type Server struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	metrics  *Metrics
	upgrader websocket.Upgrader

	mu sync.Mutex
	// draining: Shutdown has begun. refusing: Drain was called; running
	// sessions go on, new ones are refused.
	draining bool
	refusing bool
	sessions map[string]*Session // by sessionKey(tenant, id)
	links    map[*Link]struct{}
	// waiting routes a recording's outcome to the link that started it,
	// for as long as that link is open.
	waiting map[string]*Link

	// work tracks connections, so CloseConnections can wait for them;
	// finishing tracks recordings being finalised, for Shutdown.
	work      sync.WaitGroup
	finishing sync.WaitGroup
}

// New builds a session server.
func New(cfg Config, deps Deps) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("session config: %w", err)
	}
	if deps.WebRTC == nil || deps.Logger == nil {
		return nil, errors.New("session: WebRTC and Logger are required")
	}
	if deps.Metrics == nil {
		deps.Metrics = NewMetrics(nil)
	}
	if deps.Events == nil {
		deps.Events = nopEvents{}
	}
	if deps.Admission == nil {
		deps.Admission = openAdmission{}
	}
	s := &Server{
		cfg:      cfg,
		deps:     deps,
		log:      deps.Logger,
		metrics:  deps.Metrics,
		sessions: map[string]*Session{},
		links:    map[*Link]struct{}{},
		waiting:  map[string]*Link{},
	}
	s.upgrader = websocket.Upgrader{
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		CheckOrigin:     s.CheckOrigin,
	}
	return s, nil
}

// CheckOrigin is the browser origin policy (-allowed-origins) of every
// WebSocket front end. It lets any origin in by default: credentials are
// bearer tokens, not cookies, so a foreign page gains nothing a script
// elsewhere could not.
func (s *Server) CheckOrigin(r *http.Request) bool {
	if len(s.cfg.AllowedOrigins) == 0 {
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	return slices.Contains(s.cfg.AllowedOrigins, u.Scheme+"://"+u.Host)
}

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Drain makes the server refuse new sessions (server_busy; in a cluster
// the Router places them on other nodes) while its running sessions go on
// until they end or Shutdown ends them. Supervisors may still join a
// running session: they end with it. Connections are still accepted, for
// the sessions they start elsewhere.
func (s *Server) Drain() {
	s.mu.Lock()
	s.refusing = true
	s.mu.Unlock()
}

// Ready reports whether the server takes new sessions: neither Drain nor
// Shutdown has been called (readiness turns 503 otherwise).
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.draining && !s.refusing
}

// Load is the number of sessions the server holds (supervisors included),
// for a cluster's placement and a drain's end.
func (s *Server) Load() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// Shutdown stops taking sessions, ends every session with
// TERM_BY_SERVER_SHUTDOWN, finishes their recordings and hands them to
// their journeys, and waits for all of it, or ctx. The connections stay
// open, so their clients still hear how their recordings end; close them
// with CloseConnections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	sessions := make([]*Session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()

	for _, ss := range sessions {
		ss.stop(rtm.CauseServerShutdown)
	}
	for _, ss := range sessions {
		select {
		case <-ss.ended:
		case <-ctx.Done():
			return fmt.Errorf("shutdown: sessions still ending: %w", ctx.Err())
		}
	}
	// Recordings are finished and handed over off the sessions' loops.
	done := make(chan struct{})
	go func() { s.finishing.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shutdown: recordings still finishing: %w", ctx.Err())
	}
}

// Admit counts a connection of a front end outside this package (the
// compatibility endpoints) in the drain, as /rtm's are: ok is false once
// the server drains (the caller answers 503), and done is called when the
// connection has ended; CloseConnections waits for it.
func (s *Server) Admit() (done func(), ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return nil, false
	}
	s.work.Add(1)
	return s.work.Done, true
}

// CloseConnections closes every client connection, once what was published
// before reached it (http.Server.Shutdown does not wait for hijacked
// connections), and waits for them, or ctx. It closes them even when ctx
// has ended.
func (s *Server) CloseConnections(ctx context.Context) error {
	var err error
	flushed := make(chan struct{})
	s.deps.Events.Publish(webhook.Event{}, func() { close(flushed) })
	select {
	case <-flushed:
	case <-ctx.Done():
		err = fmt.Errorf("shutdown: events still being written: %w", ctx.Err())
	}
	s.mu.Lock()
	s.draining = true
	for l := range s.links {
		if c, ok := l.out.(Closer); ok {
			c.Close()
		}
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { s.work.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shutdown: connections still closing: %w", ctx.Err())
	}
}

// urlCheckTimeout bounds the DNS lookup of an upload or webhook URL check.
const urlCheckTimeout = 5 * time.Second

// sessionKey scopes a session id to its tenant; the length prefix keeps
// "a/b" + "c" apart from "a" + "b/c".
func sessionKey(tenant, id string) string { return delivery.OrderKey(tenant, id) }

// register reserves a session id within the tenant.
func (s *Server) register(ss *Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return rtm.Errorf(rtm.CodeServerBusy, "server is shutting down")
	}
	if s.refusing && ss.monitored == nil {
		return rtm.Errorf(rtm.CodeServerBusy, "server is draining; it takes no new sessions")
	}
	if _, ok := s.sessions[ss.key]; ok {
		return rtm.Errorf(rtm.CodeSessionExists, "session %q already exists", ss.id)
	}
	s.sessions[ss.key] = ss
	return nil
}

func (s *Server) unregister(ss *Session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions[ss.key] == ss {
		delete(s.sessions, ss.key)
	}
}

func (s *Server) lookup(tenant, id string) *Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[sessionKey(tenant, id)]
}

// SessionInfo describes a live session for operator and dev listings.
type SessionInfo struct {
	Tenant     string       `json:"tenant,omitempty"`
	SessionID  string       `json:"session_id"`
	ClientID   string       `json:"client_id,omitempty"`
	State      string       `json:"state"`
	Supervisor bool         `json:"supervisor"`
	Recording  string       `json:"recording_id,omitempty"`
	Tracks     []TrackStats `json:"tracks"`
}

// TrackStats describes one received track.
type TrackStats struct {
	ID      string `json:"id"`
	Kind    string `json:"kind"`
	Codec   string `json:"codec"`
	Packets uint64 `json:"packets"`
}

// Sessions lists the live sessions.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	list := make([]*Session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		list = append(list, ss)
	}
	s.mu.Unlock()
	out := make([]SessionInfo, 0, len(list))
	for _, ss := range list {
		out = append(out, ss.info())
	}
	slices.SortFunc(out, func(a, b SessionInfo) int {
		if a.SessionID < b.SessionID {
			return -1
		}
		return 1
	})
	return out
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Announce tells the link that started a recording its final outcome
// (STOPPED after the upload's 200, or FAILED), if that link is still open.
// Journeys call it once the outcome is durable, also for recordings of an
// earlier process (whose links are gone).
func (s *Server) Announce(recordingID string, m rtm.Message) {
	s.mu.Lock()
	l := s.waiting[recordingID]
	delete(s.waiting, recordingID)
	s.mu.Unlock()
	if l != nil {
		l.send(m)
	}
}

// refusal is what the client hears when Admission refuses: the words of an
// *rtm.Error the refusal carries (the cluster's), or server_busy with the
// limit's own words; anything else (the free disk space could not be read)
// is internal, logged with its detail.
func refusal(err error) error {
	var re *rtm.Error
	if errors.As(err, &re) {
		return re
	}
	var le *limits.RefusedError
	if errors.As(err, &le) {
		return rtm.Errorf(rtm.CodeServerBusy, "%v", le)
	}
	return fmt.Errorf("admission: %w", err)
}

// checkURL applies the address guard and the token's prefixes to an upload
// or webhook URL.
func (s *Server) checkURL(ctx context.Context, p Principal, raw string, upload bool) error {
	schemes := []string{"https", "http"}
	allowed := p.AllowsWebhookURL(raw)
	what := "webhook_url"
	if upload {
		schemes = append(schemes, "s3")
		allowed = p.AllowsUploadURL(raw)
		what = "upload_url"
	}
	if !allowed {
		return rtm.Errorf(rtm.CodeUnauthorized, "%s is outside the prefixes this token allows", what)
	}
	u, err := url.Parse(raw)
	if err != nil || !slices.Contains(schemes, u.Scheme) || u.Host == "" {
		return rtm.Errorf(rtm.CodeInvalidURL, "%s must be an absolute %s URL", what, strings.Join(schemes, ", "))
	}
	if u.Scheme == "s3" {
		if s.deps.S3 == nil {
			return rtm.Errorf(rtm.CodeInvalidURL, "%s: s3:// uploads are not enabled on this server", what)
		}
		if err := s.deps.S3.AllowS3(p.Tenant(), u); err != nil {
			return rtm.Errorf(rtm.CodeInvalidURL, "%s: %v", what, err)
		}
	}
	if s.deps.URLs == nil {
		return nil
	}
	// The check resolves the host (on the session's own goroutine, never
	// its loop): bound it, so a slow resolver cannot hold the session.
	ctx, cancel := context.WithTimeout(ctx, urlCheckTimeout)
	defer cancel()
	if _, err := s.deps.URLs.CheckURL(ctx, raw, schemes...); err != nil {
		return rtm.Errorf(rtm.CodeInvalidURL, "%s: %v", what, err)
	}
	return nil
}
