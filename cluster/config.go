package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Defaults for Config fields left at their zero value.
const (
	DefaultKeyPrefix         = "rtmrec:"
	DefaultHeartbeatInterval = time.Second
	DefaultExpiry            = 5 * time.Second
	DefaultOpTimeout         = 2 * time.Second
	DefaultRelayMaxLen       = 10000
	DefaultMaxRelayBacklog   = 32 << 20
)

// MaxNodeIDLen bounds a node id: it is part of key names and of every
// claim.
const MaxNodeIDLen = 63

// Config is one node's place in the cluster.
type Config struct {
	// NodeID names the node, unique in the cluster and stable across its
	// restarts (a StatefulSet pod name, the host name): letters, digits,
	// '.', '_' and '-', at most MaxNodeIDLen bytes. Required.
	NodeID string
	// KeyPrefix starts every Redis key, so that several clusters can share
	// one Redis; default DefaultKeyPrefix.
	KeyPrefix string
	// HeartbeatInterval is how often the node writes its heartbeat and
	// reads the others'; default DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// Expiry is how long a heartbeat lives: a node silent for that long is
	// dead to the others, its claims can be taken over and its relay links
	// are closed. Default DefaultExpiry; at least 2×HeartbeatInterval.
	Expiry time.Duration
	// OpTimeout bounds one Redis operation; default DefaultOpTimeout.
	OpTimeout time.Duration
	// SoftCapacity is the number of sessions above which new sessions are
	// placed on other nodes; 0 means no limit.
	SoftCapacity int
	// PublicAddrs are the addresses clients reach this node's media on
	// (its -public-ip), advertised for operators and placement.
	PublicAddrs []string
	// ICEUDPPort is the node's single ICE UDP port, when it has one.
	ICEUDPPort int
	// RelayMaxLen trims the node's inbound relay stream to about this many
	// entries; default DefaultRelayMaxLen. A reader further behind than
	// that loses frames, which fails the links concerned.
	RelayMaxLen int64
	// MaxRelayBacklog bounds the bytes of frames waiting to be written to
	// Redis (while it is unreachable); a link whose frame does not fit is
	// failed. Default DefaultMaxRelayBacklog.
	MaxRelayBacklog int
}

// Deps are what a Node needs from the rest of the server.
type Deps struct {
	// Redis is the shared Redis, from NewRedisClient. Required. The caller
	// owns it and closes it after Run returns.
	Redis redis.UniversalClient
	// Core serves the links other nodes open to this one. Nil refuses them.
	Core Core
	// Load reports the sessions this node serves, for its heartbeat and for
	// placement. Nil reports 0.
	Load func() int
	// Logger; nil discards.
	Logger *slog.Logger
	// Metrics registers the cluster metrics; nil exports none.
	Metrics prometheus.Registerer
}

func (c *Config) setDefaults() error {
	if err := ValidNodeID(c.NodeID); err != nil {
		return err
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.Expiry == 0 {
		c.Expiry = max(DefaultExpiry, 2*c.HeartbeatInterval)
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = DefaultOpTimeout
	}
	if c.RelayMaxLen == 0 {
		c.RelayMaxLen = DefaultRelayMaxLen
	}
	if c.MaxRelayBacklog == 0 {
		c.MaxRelayBacklog = DefaultMaxRelayBacklog
	}
	switch {
	case c.HeartbeatInterval < 10*time.Millisecond:
		return fmt.Errorf("heartbeat interval %v is too short", c.HeartbeatInterval)
	case c.Expiry < 2*c.HeartbeatInterval:
		return fmt.Errorf("expiry %v must be at least twice the heartbeat interval %v", c.Expiry, c.HeartbeatInterval)
	case c.OpTimeout < 0, c.SoftCapacity < 0, c.RelayMaxLen < 0, c.MaxRelayBacklog < 0, c.ICEUDPPort < 0 || c.ICEUDPPort > 65535:
		return errors.New("negative or out-of-range cluster setting")
	}
	return nil
}

// ValidNodeID checks a node id: it appears in key names and claims, where a
// space or a colon would make them ambiguous.
func ValidNodeID(id string) error {
	if id == "" {
		return errors.New("node id is required")
	}
	if len(id) > MaxNodeIDLen {
		return fmt.Errorf("node id is longer than %d bytes", MaxNodeIDLen)
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		ok := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '_' || b == '-'
		if !ok {
			return fmt.Errorf("node id %q may contain only letters, digits, '.', '_' and '-'", id)
		}
	}
	return nil
}

// keys names the Redis keys of one cluster (see the package doc).
type keys struct{ prefix string }

func (k keys) node(id string) string  { return k.prefix + "node:" + id }
func (k keys) nodePrefix() string     { return k.prefix + "node:" }
func (k keys) nodes() string          { return k.prefix + "nodes" }
func (k keys) relay(id string) string { return k.prefix + "relay:" + id }

// claim puts the tenant's length first, so that no (tenant, id) pair shares
// a key with another: "a:b"+"c" and "a"+"b:c" differ.
func (k keys) claim(tenant, id string) string {
	return k.prefix + "claim:" + strconv.Itoa(len(tenant)) + ":" + tenant + ":" + id
}
