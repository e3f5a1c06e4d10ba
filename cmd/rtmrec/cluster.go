package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/rtmrec/rtmrec/cluster"
	"github.com/rtmrec/rtmrec/rtm"
	"github.com/rtmrec/rtmrec/session"
)

// member is this process's place in a cluster (-redis-url): the Redis
// client, the node, and the adapters between the node and the session
// core. A nil member is a node that runs alone; its methods allow that.
type member struct {
	rdb  redis.UniversalClient
	node *cluster.Node
	core *relayCore
	stop context.CancelFunc
	done chan struct{}
	left sync.Once
}

// joinCluster prepares the node of a -redis-url; nil without one. Nothing
// is written to Redis before start.
func joinCluster(cfg *config, log *slog.Logger, reg prometheus.Registerer, authn *authenticator) (*member, error) {
	if cfg.RedisURL == "" {
		return nil, nil
	}
	rdb, err := cluster.NewRedisClient(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("-redis-url: %w", err)
	}
	core := &relayCore{authn: authn}
	node, err := cluster.New(cluster.Config{
		NodeID: cfg.NodeID, SoftCapacity: cfg.SoftCapacity, PublicAddrs: cfg.PublicIPs, ICEUDPPort: cfg.ICEUDPPort,
	}, cluster.Deps{Redis: rdb, Core: core, Load: core.load, Logger: log, Metrics: reg})
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return &member{rdb: rdb, node: node, core: core}, nil
}

// sessionDeps puts the session server in the cluster: ids claimed in
// Redis, connections routed through the node.
func (m *member) sessionDeps(d *session.Deps) {
	if m == nil {
		return
	}
	d.Directory = m.node
	d.Router = clusterRouter{m.node}
}

// start runs the node for srv until leave.
func (m *member) start(srv *session.Server) {
	m.core.srv = srv
	ctx, stop := context.WithCancel(context.Background())
	m.stop, m.done = stop, make(chan struct{})
	go func() {
		defer close(m.done)
		_ = m.node.Run(ctx)
	}()
}

// leave takes the node out of the cluster (its relay links closed, its
// heartbeat removed) and closes the Redis client; once.
func (m *member) leave() {
	m.left.Do(func() {
		m.stop()
		<-m.done
		_ = m.rdb.Close()
	})
}

// ready reports whether the node may take new sessions as far as the
// cluster goes: registered, its directory reachable.
func (m *member) ready() bool { return m == nil || m.node.Ready() }

// relayed counts the sessions this node's connections hold on other nodes.
func (m *member) relayed() int {
	if m == nil {
		return 0
	}
	return m.node.Relayed()
}

// refuseNew makes the server and the node take no new sessions: the
// others place them elsewhere at once.
func (m *member) refuseNew(srv *session.Server) {
	srv.Drain()
	if m != nil {
		m.node.SetDraining()
	}
}

// waitIdle waits until every session has ended or timeout has passed: this
// node's, and those its connections hold on other nodes (they end when the
// connections close at the shutdown).
func (m *member) waitIdle(srv *session.Server, timeout time.Duration, log *slog.Logger) {
	log.Info("draining: new sessions go elsewhere, running ones go on", "timeout", timeout.String(),
		"sessions", srv.Load(), "relayed_sessions", m.relayed())
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for srv.Load() > 0 || m.relayed() > 0 {
		select {
		case <-deadline.C:
			log.Info("drain timeout: ending the sessions left", "sessions", srv.Load(), "relayed_sessions", m.relayed())
			return
		case <-tick.C:
		}
	}
	log.Info("drained: every session has ended")
}

// relayCore serves the relay links other nodes open to this one: it
// verifies the token they carry as the /rtm gate does, and opens a session
// link for it.
type relayCore struct {
	authn *authenticator
	srv   *session.Server // set before the node runs
}

func (c *relayCore) load() int { return c.srv.Load() }

// OpenLink is cluster.Core's.
func (c *relayCore) OpenLink(token string, out cluster.Outlet, opts cluster.LinkOptions) (cluster.CoreLink, error) {
	var p session.Principal
	switch {
	case c.authn.enabled():
		if token == "" {
			return nil, rtm.Errorf(rtm.CodeUnauthorized, "a bearer token is required")
		}
		claims, err := c.authn.verifier.Verify(token)
		if err != nil {
			return nil, rtm.Errorf(rtm.CodeUnauthorized, "%v", err)
		}
		p = c.authn.principal(claims)
	case token != "":
		// The node that took the connection verifies tokens and this one
		// cannot: the nodes are configured differently.
		return nil, rtm.Errorf(rtm.CodeUnauthorized, "the node serving this session runs without access control; every node of a cluster needs the same keys")
	}
	return c.srv.NewLink(p, out, session.LinkOptions{
		CompleteGathering: opts.CompleteGathering, Remote: opts.Remote, UploadURLTemplate: opts.UploadURLTemplate,
	}), nil
}

// clusterRouter is the session core's Router: a cluster.Conn in front of
// each connection's local link.
type clusterRouter struct{ n *cluster.Node }

func (r clusterRouter) Route(local *session.Link, out session.Outlet, rt session.Route) session.Handler {
	return r.n.NewConn(local, out, cluster.ConnOptions{
		Tenant: rt.Tenant, Token: rt.Token,
		Link: cluster.LinkOptions{
			CompleteGathering: rt.Options.CompleteGathering, Remote: rt.Options.Remote,
			UploadURLTemplate: rt.Options.UploadURLTemplate,
		},
	})
}
