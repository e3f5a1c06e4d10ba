package cluster

import "github.com/rtmrec/rtmrec/rtm"

// Outlet receives what a core says to one client connection. Send must not
// block (queue and return); messages of one session arrive in the order the
// core produced them. session.Outlet has the same method set, so values of
// either type convert to the other.
type Outlet interface {
	Send(m rtm.Message)
}

// LinkOptions adapt the core to the front end the client came through; a
// relay link carries them to the node that serves the client's session.
type LinkOptions struct {
	// CompleteGathering: every answer or offer carries all of the server's
	// candidates (front ends without trickle ICE).
	CompleteGathering bool `json:"complete_gathering,omitempty"`
	// Remote is the client's address, for logs and audit.
	Remote string `json:"remote,omitempty"`
	// UploadURLTemplate: the front end sends the operator's upload URL
	// template in recording_start (Ant Media, WCS), which the serving core
	// expands.
	UploadURLTemplate bool `json:"upload_url_template,omitempty"`
}

// CoreLink is one client connection's view of the session core (the
// session.Link of the front-end API).
type CoreLink interface {
	// Handle takes one client message; it never blocks on disk, DNS, the
	// network or another session, and answers through the link's Outlet.
	Handle(m rtm.Message)
	// Close ends every session of the link (TERM_BY_DISCONNECT) and
	// returns when they are torn down.
	Close()
}

// Core is what the relay needs from the session core of the node that
// serves a relayed connection.
type Core interface {
	// OpenLink verifies token exactly as this node's own front ends verify
	// one (the same keys, audience and leeway; "" stands for an
	// unauthenticated connection, which only a node without access control
	// accepts) and opens a link for the client connection it stands for.
	// An error refuses the link: an *rtm.Error in its chain (unauthorized)
	// is what the client is answered; anything else is internal.
	OpenLink(token string, out Outlet, opts LinkOptions) (CoreLink, error)
}
