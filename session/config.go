package session

import (
	"errors"
	"fmt"
	"time"

	"github.com/rtmrec/rtmrec/recorder"
)

// DefaultMaxTracks is Config.MaxTracks's default: a contact-center call has
// a microphone, a camera and a screen, and a screen share toggled a few
// times adds a track each time.
const DefaultMaxTracks = 16

// Config holds the session server's tunables. Zero values take the
// documented defaults (docs/configuration.md).
type Config struct {
	// ConnectTimeout bounds CONNECTING (TERM_BY_CONNECT_TIMEOUT), default 15s.
	ConnectTimeout time.Duration
	// DisconnectTimeout bounds DISCONNECTED (TERM_BY_MEDIA_TIMEOUT), default 10s.
	DisconnectTimeout time.Duration
	// MaxDuration ends sessions that outlive it (TERM_BY_MAX_DURATION); 0 = none.
	MaxDuration time.Duration
	// MaxSessionsPerConn bounds the sessions one WebSocket may carry, default 16.
	MaxSessionsPerConn int
	// MaxCandidates bounds the remote ICE candidates of one session, default 64.
	MaxCandidates int
	// MaxTracks bounds the media sections of a session's offers and the
	// tracks it receives over its life, default 16, at most
	// recorder.MaxTracks (what one file holds).
	MaxTracks int
	// MaxPauses bounds the pauses of one recording, default
	// recorder.DefaultMaxPauses.
	MaxPauses int
	// MessageRate and MessageBurst bound the messages per second one
	// connection may send, default 50/s with a burst of 100.
	MessageRate  float64
	MessageBurst int
	// PingInterval is how often WebSocket pings are sent, default 15s; a
	// connection that answers none for two intervals is closed.
	PingInterval time.Duration
	// WriteTimeout bounds one WebSocket write, default 10s.
	WriteTimeout time.Duration
	// DataDir is where recordings are written.
	DataDir string
	// SignsManifests says the server signs recording manifests, which a
	// recording_start may then ask to have PUT to its manifest_url.
	SignsManifests bool
	// AllowedOrigins restricts browser origins (empty: any).
	AllowedOrigins []string
}

// MaxFrameBytes is the largest WebSocket frame accepted (docs/protocol.md, Framing).
const MaxFrameBytes = 1 << 20

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ConnectTimeout, 15*time.Second)
	def(&c.DisconnectTimeout, 10*time.Second)
	def(&c.PingInterval, 15*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	if c.MaxSessionsPerConn == 0 {
		c.MaxSessionsPerConn = 16
	}
	if c.MaxCandidates == 0 {
		c.MaxCandidates = 64
	}
	if c.MaxTracks == 0 {
		c.MaxTracks = DefaultMaxTracks
	}
	if c.MaxPauses == 0 {
		c.MaxPauses = recorder.DefaultMaxPauses
	}
	if c.MessageRate == 0 {
		c.MessageRate = 50
	}
	if c.MessageBurst == 0 {
		c.MessageBurst = 100
	}
}

// Validate reports settings that cannot work.
func (c *Config) Validate() error {
	var errs []error
	if c.ConnectTimeout < 0 || c.DisconnectTimeout < 0 || c.MaxDuration < 0 || c.PingInterval < 0 || c.WriteTimeout < 0 {
		errs = append(errs, errors.New("timeouts must not be negative"))
	}
	if c.MaxSessionsPerConn < 0 || c.MaxCandidates < 0 || c.MessageBurst < 0 || c.MessageRate < 0 || c.MaxTracks < 0 || c.MaxPauses < 0 {
		errs = append(errs, errors.New("limits must not be negative"))
	}
	if c.MaxTracks > recorder.MaxTracks {
		errs = append(errs, fmt.Errorf("at most %d tracks per session: a recording holds no more", recorder.MaxTracks))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir is required"))
	}
	return errors.Join(errs...)
}
