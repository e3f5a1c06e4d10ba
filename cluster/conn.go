package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"sync"

	"github.com/rtmrec/rtmrec/rtm"
)

// Bounds of one Conn.
const (
	// connQueue is how many client messages may wait for routing; the core
	// rate-limits the client, this only keeps a stuck Redis from piling up
	// memory.
	connQueue = 256
	// maxRoutes bounds the sessions a Conn tracks on other nodes.
	maxRoutes = 1024
)

// ConnOptions describe the client connection a Conn routes.
type ConnOptions struct {
	// Tenant is the connection's principal's tenant: it scopes the session
	// ids it names.
	Tenant string
	// Token is the connection's raw bearer token, "" without access
	// control. Links carry it to the nodes serving the connection's
	// sessions, which verify it again.
	Token string
	// Link are the front end's options, carried to those nodes.
	Link LinkOptions
}

// Conn is the forwarding front end of one client connection in a cluster.
// It has the shape of a core link (Handle, Close) and sits between a front
// end and this node's core:
//
//   - session_start goes to the node Place chooses: this one while it has
//     room, otherwise the least loaded serving node with room, through a
//     relay link (server_busy when none has room or Redis is unreachable);
//   - supervisor_join_session goes to the node that serves the monitored
//     session (Locate), so the supervisor's peer connection lives where the
//     media is;
//   - any other message goes where its session_id's session went, and to
//     this node's core otherwise (which answers session_not_found for an
//     unknown id, and pong).
//
// Messages from other nodes pass through to the client unchanged. If a
// serving node dies (or the link fails), each session it served on this
// connection ends with session_state TERMINATED, TERM_BY_ERROR (or, for a
// start it had not answered, an error) within the cluster's expiry.
//
// Handle and Close are called from one goroutine, the front end's reader,
// as with a core link.
type Conn struct {
	n     *Node
	local CoreLink
	out   Outlet
	opts  ConnOptions
	in    chan rtm.Message
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu     sync.Mutex
	closed bool
	routes map[string]*route    // session id → the node serving it, for sessions on other nodes
	links  map[string]*connLink // peerKey → link
}

// route is a session of the connection that lives on another node.
type route struct {
	via      *connLink
	clientID string
	// confirmed: the serving node said something other than an error about
	// the session, so it exists there.
	confirmed bool
	// starts counts session_start / supervisor_join_session sent and not
	// answered by an error: a route that was never confirmed goes when
	// they all failed.
	starts    int
	startType rtm.Type
}

// connLink is a Conn's link to one node.
type connLink struct {
	link *Link
	node string
}

// NewConn starts routing one client connection. local is this node's core
// link for the connection, out what the client is sent (both local and
// relayed answers). The front end calls Close when the connection ends.
func (n *Node) NewConn(local CoreLink, out Outlet, opts ConnOptions) *Conn {
	ctx, stop := context.WithCancel(context.Background())
	c := &Conn{
		n: n, local: local, out: out, opts: opts, in: make(chan rtm.Message, connQueue), ctx: ctx, stop: stop,
		routes: map[string]*route{}, links: map[string]*connLink{},
	}
	c.wg.Go(c.loop)
	return c
}

// Handle takes one client message; it never blocks: routing (which may ask
// Redis where a session lives) happens on the Conn's own goroutine, in the
// order messages came.
func (c *Conn) Handle(m rtm.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	select {
	case c.in <- m:
	default:
		c.replyError(m, rtm.Errorf(rtm.CodeServerBusy, "too many messages waiting; slow down"))
	}
}

// Close ends the connection: messages already handed to Handle are still
// delivered (a session_stop keeps its cause), then every link is closed
// (their sessions end with TERM_BY_DISCONNECT on their nodes) and the local
// core link is closed, which returns when its sessions are torn down.
func (c *Conn) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	close(c.in)
	c.mu.Unlock()
	c.wg.Wait()
	c.stop()

	c.mu.Lock()
	links := c.links
	c.n.relayed.Add(-int64(len(c.routes)))
	c.links, c.routes = map[string]*connLink{}, map[string]*route{}
	c.mu.Unlock()
	for _, cl := range links {
		cl.link.Close()
	}
	c.local.Close()
}

func (c *Conn) loop() {
	for m := range c.in {
		c.route(m)
	}
}

func (c *Conn) route(m rtm.Message) {
	c.mu.Lock()
	closing := c.closed
	r := c.routes[m.SessionID]
	if r != nil && (m.Type == rtm.TypeSessionStart || m.Type == rtm.TypeSupervisorJoinSession) {
		r.starts++
	}
	c.mu.Unlock()
	switch {
	case m.Type == rtm.TypeTokenRefresh:
		// This node's core verifies the token and answers; once it took
		// it, CarryToken brings it to the other nodes.
		c.local.Handle(m)
	case r != nil && m.SessionID != "":
		// Where the session is, even a duplicate start: that node answers
		// session_exists.
		r.via.link.Send(m)
	case closing:
		// Nothing new starts on a connection that is gone.
		if m.Type != rtm.TypeSessionStart && m.Type != rtm.TypeSupervisorJoinSession {
			c.local.Handle(m)
		}
	case m.Type == rtm.TypeSessionStart:
		c.start(m, c.n.Place)
	case m.Type == rtm.TypeSupervisorJoinSession:
		c.start(m, func() (NodeInfo, bool, error) { return c.monitoredNode(m) })
	default:
		c.local.Handle(m)
	}
}

// start sends a new session's first message to the node where chooses.
func (c *Conn) start(m rtm.Message, where func() (NodeInfo, bool, error)) {
	if !c.n.Ready() {
		c.replyError(m, errUnavailable(errors.New("not registered")))
		return
	}
	target, local, err := where()
	if err != nil {
		c.replyError(m, err)
		return
	}
	if local {
		c.local.Handle(m)
		return
	}
	if m.SessionID == "" {
		// The id a core would generate, generated here so that the answers
		// can be routed.
		m.SessionID = newSessionID()
	}
	c.mu.Lock()
	if len(c.routes) >= maxRoutes {
		c.mu.Unlock()
		c.replyError(m, rtm.Errorf(rtm.CodeServerBusy, "too many sessions on this connection"))
		return
	}
	via, err := c.linkToLocked(target)
	if err != nil {
		c.mu.Unlock()
		c.n.log.Warn("cannot open a relay link", "peer", target.ID, "err", err)
		c.replyError(m, rtm.Errorf(rtm.CodeServerBusy, "the serving node cannot be reached; try again shortly"))
		return
	}
	c.routes[m.SessionID] = &route{via: via, clientID: m.ClientID, starts: 1, startType: m.Type}
	c.n.relayed.Add(1)
	c.mu.Unlock()
	via.link.Send(m)
}

// monitoredNode is where a supervisor_join_session goes: the node that
// serves the monitored session, or this one when it does, when no node
// does (the core answers session_not_found), or when the message is
// malformed (the core answers that).
func (c *Conn) monitoredNode(m rtm.Message) (NodeInfo, bool, error) {
	var d struct {
		SessionIDToMonitor string `json:"session_id_to_monitor"`
	}
	if json.Unmarshal(m.Data, &d) != nil || d.SessionIDToMonitor == "" || len(d.SessionIDToMonitor) > rtm.MaxIDLen {
		return NodeInfo{}, true, nil
	}
	info, err := c.n.Locate(c.ctx, c.opts.Tenant, d.SessionIDToMonitor)
	switch {
	case errors.Is(err, ErrNotFound):
		return NodeInfo{}, true, nil
	case err != nil:
		return NodeInfo{}, false, err
	}
	return info, info.ID == c.n.ID(), nil
}

// linkToLocked returns the connection's link to target, dialling it the
// first time.
func (c *Conn) linkToLocked(target NodeInfo) (*connLink, error) {
	key := peerKey(target.ID, target.Incarnation)
	if cl := c.links[key]; cl != nil {
		return cl, nil
	}
	cl := &connLink{node: target.ID}
	l, err := c.n.Dial(target, c.opts.Token, c.opts.Link, relayedOutlet{c, cl}, func(err error) { c.linkEnded(cl, err) })
	if err != nil {
		return nil, err
	}
	cl.link = l
	c.links[key] = cl
	return cl, nil
}

// CarryToken takes the connection's new token, once this node's core has
// accepted it through token_refresh: the links opened from now on carry
// it, and the open ones pass it to their nodes, whose cores extend the
// sessions they serve for the connection (a supervisor's end at its
// token's expiry). Called on the Conn's goroutine, from the local core
// link's handling of the token_refresh.
func (c *Conn) CarryToken(token string) {
	m, err := rtm.NewMessage(rtm.TypeTokenRefresh, "", "", rtm.TokenRefresh{Token: token})
	if err != nil {
		c.n.log.Error("encoding a token_refresh", "err", err)
		return
	}
	c.mu.Lock()
	c.opts.Token = token
	links := make([]*connLink, 0, len(c.links))
	for _, cl := range c.links {
		links = append(links, cl)
	}
	c.mu.Unlock()
	for _, cl := range links {
		cl.link.Send(m)
	}
}

// tokenAnswer reports whether m answers a forwarded token_refresh, and the
// reason when it refused it.
func tokenAnswer(m rtm.Message) (refused string, ok bool) {
	switch m.Type {
	case rtm.TypeTokenRefreshed:
		return "", true
	case rtm.TypeError:
		var d rtm.ErrorData
		if json.Unmarshal(m.Data, &d) == nil && d.RequestType == rtm.TypeTokenRefresh {
			return d.Message, true
		}
	}
	return "", false
}

// dropRouteLocked forgets a session that lives on another node.
func (c *Conn) dropRouteLocked(id string) {
	if _, ok := c.routes[id]; ok {
		delete(c.routes, id)
		c.n.relayed.Add(-1)
	}
}

// relayedOutlet receives what a serving node says on one of the Conn's
// links.
type relayedOutlet struct {
	c  *Conn
	cl *connLink
}

func (o relayedOutlet) Send(m rtm.Message) { o.c.fromRemote(o.cl, m) }

// fromRemote keeps the routes in step with what the serving node says, and
// passes the message on to the client.
func (c *Conn) fromRemote(cl *connLink, m rtm.Message) {
	if refused, ok := tokenAnswer(m); ok {
		// The answer to CarryToken's forward: the client had this node's.
		if refused != "" {
			c.n.log.Warn("a node refused the connection's refreshed token; the sessions it serves for the connection keep the old one's expiry",
				"peer", cl.node, "reason", refused)
		}
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if r := c.routes[m.SessionID]; r != nil && r.via == cl {
		switch {
		case m.Type == rtm.TypeError:
			var d rtm.ErrorData
			_ = json.Unmarshal(m.Data, &d)
			if (d.RequestType == rtm.TypeSessionStart || d.RequestType == rtm.TypeSupervisorJoinSession) && r.starts > 0 {
				r.starts--
				if r.starts == 0 && !r.confirmed {
					c.dropRouteLocked(m.SessionID)
				}
			}
		case terminated(m):
			c.dropRouteLocked(m.SessionID)
		default:
			r.confirmed = true
		}
	}
	c.mu.Unlock()
	c.out.Send(m)
}

// linkEnded ends the sessions a failed link served: TERMINATED with
// TERM_BY_ERROR for those that exist, an error for starts not yet answered.
func (c *Conn) linkEnded(cl *connLink, err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	for k, l := range c.links {
		if l == cl {
			delete(c.links, k)
		}
	}
	var msgs []rtm.Message
	for id, r := range c.routes {
		if r.via != cl {
			continue
		}
		c.dropRouteLocked(id)
		msgs = append(msgs, lostSession(id, r, err))
	}
	c.mu.Unlock()
	if len(msgs) > 0 {
		c.n.log.Warn("relay link ended: ending its sessions", "peer", cl.node, "sessions", len(msgs), "err", err)
	}
	for _, m := range msgs {
		c.out.Send(m)
	}
}

// lostSession is what the client is told about a session whose node link
// failed with err.
func lostSession(id string, r *route, err error) rtm.Message {
	var refused *LinkRefusedError
	if !r.confirmed {
		e := rtm.Errorf(rtm.CodeInternal, "the node chosen for this session failed; try again")
		if errors.As(err, &refused) {
			e = rtm.Errorf(refused.Code, "%s", refused.Message)
		}
		m, _ := rtm.NewMessage(rtm.TypeError, r.clientID, id, rtm.ErrorData{Code: e.Code, Message: e.Message, RequestType: r.startType})
		return m
	}
	reason := "the node serving this session is gone"
	switch {
	case errors.Is(err, ErrNodeStopping):
		reason = "the node serving this session shut down"
	case errors.Is(err, ErrLinkBroken):
		reason = "the signaling relay to the node serving this session failed"
	}
	m, _ := rtm.NewMessage(rtm.TypeSessionState, r.clientID, id, rtm.SessionState{
		State: rtm.StateTerminated, TerminationCause: rtm.CauseError, Reason: reason,
	})
	return m
}

// replyError answers m with err's RTM error (internal when it has none).
func (c *Conn) replyError(m rtm.Message, err error) {
	var re *rtm.Error
	if !errors.As(err, &re) {
		re = rtm.Errorf(rtm.CodeInternal, "internal error")
	}
	reply, _ := rtm.NewMessage(rtm.TypeError, m.ClientID, m.SessionID, rtm.ErrorData{Code: re.Code, Message: re.Message, RequestType: m.Type})
	c.out.Send(reply)
}

func terminated(m rtm.Message) bool {
	if m.Type != rtm.TypeSessionState {
		return false
	}
	var d rtm.SessionState
	return json.Unmarshal(m.Data, &d) == nil && d.State == rtm.StateTerminated
}

// newSessionID makes an id like the core's generated ones.
func newSessionID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
