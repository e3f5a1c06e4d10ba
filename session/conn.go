package session

import "github.com/rtmrec/rtmrec/rtm"

// Conn is one client connection as a front end drives it: its Link on this
// node and, in a cluster, the Router's forwarding front end in front of it,
// so that the connection's sessions may live on any node. Every front end
// (the /rtm WebSocket, Ant Media, WCS) opens one per connection with
// Connect and uses it as it would use a Link: Allow for every frame read,
// SendError for frames it cannot decode, Handle for the others, Close at
// the end, all from the connection's reader goroutine.
type Conn struct {
	link *Link
	h    Handler
}

// Connect opens a client connection: p is its principal, token the raw
// bearer token p was verified from ("" without access control), out what
// the client is sent, whichever node serves its sessions.
func (s *Server) Connect(p Principal, token string, out Outlet, opts LinkOptions) *Conn {
	l := s.NewLink(p, out, opts)
	c := &Conn{link: l, h: l}
	if s.deps.Router != nil {
		c.h = s.deps.Router.Route(l, out, Route{Tenant: l.principal().Tenant(), Token: token, Options: opts})
		if tc, ok := c.h.(TokenCarrier); ok {
			l.carry = tc.CarryToken
		}
	}
	return c
}

// Allow counts one frame against the connection's message rate (see
// Link.Allow); the frame is dropped when it says no.
func (c *Conn) Allow() bool { return c.link.Allow() }

// RateError is what the client hears when Allow refused its frame.
func (c *Conn) RateError() error { return c.link.RateError() }

// SendError answers request m with err (see Link.SendError).
func (c *Conn) SendError(m rtm.Message, err error) { c.link.SendError(m, err) }

// Handle takes one decoded client message; it never blocks.
func (c *Conn) Handle(m rtm.Message) { c.h.Handle(m) }

// Close ends every session of the connection (TERM_BY_DISCONNECT), on this
// node and on others, and returns when this node's are torn down.
func (c *Conn) Close() { c.h.Close() }
