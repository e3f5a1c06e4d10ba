package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/rtmrec/rtmrec/recorder"
	"github.com/rtmrec/rtmrec/rtm"
)

// Deps are the collaborators of the session server. WebRTC and Logger are
// required; the rest have safe defaults (no webhooks, no limits, every URL
// allowed but s3://, recordings refused).
type Deps struct {
	WebRTC    *WebRTC
	Logger    *slog.Logger
	Metrics   *Metrics
	Notifier  Notifier
	Delivery  Delivery
	URLs      URLChecker
	S3        S3Policy
	Admission Admission
	// RecorderMetrics is passed to every recording (may be nil).
	RecorderMetrics *recorder.Metrics
}

// Server serves the /rtm WebSocket and owns every session.
type Server struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	metrics  *Metrics
	upgrader websocket.Upgrader

	mu       sync.Mutex
	draining bool
	sessions map[string]*Session // by sessionKey(tenant, id)
	conns    map[*conn]struct{}
	// waiting routes a recording's outcome to the connection that started
	// it, for as long as that connection is open.
	waiting map[string]*conn

	// work tracks connections and recordings being finalised, so Shutdown
	// can wait for them.
	work sync.WaitGroup
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
	if deps.Notifier == nil {
		deps.Notifier = nopNotifier{}
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
		conns:    map[*conn]struct{}{},
		waiting:  map[string]*conn{},
	}
	s.upgrader = websocket.Upgrader{
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		CheckOrigin:     s.checkOrigin,
	}
	return s, nil
}

// checkOrigin lets any origin in by default: credentials are bearer tokens,
// not cookies, so a foreign page gains nothing a script elsewhere could not.
func (s *Server) checkOrigin(r *http.Request) bool {
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

// ServeHTTP upgrades /rtm to a WebSocket and runs the connection until it
// closes. Authentication and per-IP limits happen before, in middleware.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	draining := s.draining
	if !draining {
		s.work.Add(1)
	}
	s.mu.Unlock()
	if draining {
		http.Error(w, "server is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.work.Done()

	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader already answered
	}
	c := newConn(s, ws, principalFrom(r.Context()))
	s.mu.Lock()
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.metrics.connections.Inc()
	c.run()
	s.metrics.connections.Dec()
	s.mu.Lock()
	delete(s.conns, c)
	for id, wc := range s.waiting {
		if wc == c {
			delete(s.waiting, id)
		}
	}
	s.mu.Unlock()
}

// Draining reports whether Shutdown has begun (readiness turns 503).
func (s *Server) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// Shutdown stops taking sessions, ends every session with
// TERM_BY_SERVER_SHUTDOWN, finishes their recordings and hands them to
// delivery, closes every WebSocket, and waits for all of it or ctx.
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
	// http.Server.Shutdown does not wait for hijacked connections: close
	// them here, after their sessions' last messages were queued.
	s.mu.Lock()
	for c := range s.conns {
		c.close(websocket.CloseGoingAway, "server shutting down")
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() { s.work.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shutdown: connections still closing: %w", ctx.Err())
	}
}

// sessionKey scopes a session id to its tenant; the length prefix keeps
// "a/b" + "c" apart from "a" + "b/c".
func sessionKey(tenant, id string) string { return strconv.Itoa(len(tenant)) + ":" + tenant + "/" + id }

// register reserves a session id within the tenant.
func (s *Server) register(ss *Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return rtm.Errorf(rtm.CodeServerBusy, "server is shutting down")
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

// publish sends one event to the webhook and to a connection (if it is
// still open). The webhook's durable queue comes first, so whatever a client
// has seen on its WebSocket is already queued for its backend.
func (s *Server) publish(c *conn, m rtm.Message, ev Event) {
	s.deps.Notifier.Notify(ev)
	if c != nil {
		if b, err := json.Marshal(m); err == nil {
			c.send(b)
		}
	}
}

// RecordingDelivered reports a recording's final outcome (STOPPED after the
// upload's 200, or FAILED) to the connection that started it, if it is still
// open, and to the webhook. Delivery calls it, also for recordings of an
// earlier process.
func (s *Server) RecordingDelivered(r Route, st rtm.RecordingStateData) {
	m, err := rtm.NewMessage(rtm.TypeRecordingState, r.ClientID, r.SessionID, st)
	if err != nil {
		s.log.Error("encode recording state", "recording_id", st.RecordingID, "err", err)
		return
	}
	s.mu.Lock()
	c := s.waiting[st.RecordingID]
	delete(s.waiting, st.RecordingID)
	s.mu.Unlock()
	s.publish(c, m, Event{WebhookURL: r.WebhookURL, OrderKey: sessionKey(r.Tenant, r.SessionID), Identity: r.Identity, Message: m})
}

// checkURL applies the address guard and the token's prefixes to an upload
// or webhook URL.
func (s *Server) checkURL(p Principal, raw string, upload bool) error {
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
	// The check resolves the host on the connection's reader goroutine:
	// bound it, so a slow resolver cannot stall the connection.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.deps.URLs.CheckURL(ctx, raw, schemes...); err != nil {
		return rtm.Errorf(rtm.CodeInvalidURL, "%s: %v", what, err)
	}
	return nil
}

// SessionLost reports, after a restart, that a session of the earlier
// process ended with it: its webhook gets the TERMINATED it never received
// (TERM_BY_ERROR), ahead of its recording's STOPPED/FAILED.
func (s *Server) SessionLost(r Route) {
	m, err := rtm.NewMessage(rtm.TypeSessionState, r.ClientID, r.SessionID, rtm.SessionState{
		State: rtm.StateTerminated, TerminationCause: rtm.CauseError,
		Reason: "the server stopped unexpectedly; the recording was repaired",
	})
	if err != nil {
		return
	}
	s.deps.Notifier.Notify(Event{WebhookURL: r.WebhookURL, OrderKey: sessionKey(r.Tenant, r.SessionID), Identity: r.Identity, Message: m})
}
