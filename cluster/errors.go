package cluster

import (
	"errors"
	"fmt"

	"github.com/rtmrec/rtmrec/rtm"
)

// Errors of the directory. Those a client can cause also carry the
// *rtm.Error it is answered with (errors.As finds it), so the session core
// maps them like any other request error:
//
//	ErrTaken       → session_exists
//	ErrUnavailable → server_busy
//	ErrNoRoom      → server_busy
var (
	// ErrUnavailable: Redis cannot be reached, or this node is not
	// registered (yet, or again).
	ErrUnavailable = errors.New("cluster directory is unreachable")
	// ErrTaken: the session id is claimed by a live node.
	ErrTaken = errors.New("session id is claimed by a live node")
	// ErrNotFound: no live node claims the session id.
	ErrNotFound = errors.New("no live node serves this session")
	// ErrNoRoom: no serving node is below its soft capacity.
	ErrNoRoom = errors.New("no serving node has room")
	// ErrNodeIDInUse: another live process registered this node id.
	ErrNodeIDInUse = errors.New("node id is in use by another live process")
)

// Why a relay link ended, passed to the dialler's close callback.
var (
	// ErrNodeDead: the peer's heartbeat expired, it restarted, or this node
	// could not confirm it was alive for a whole expiry (Redis unreachable).
	ErrNodeDead = errors.New("the peer node is gone")
	// ErrLinkBroken: frames were lost (Redis lost data or trimmed a stream
	// its reader had not read) or the relay backlog overflowed.
	ErrLinkBroken = errors.New("relay link lost messages")
	// ErrNodeStopping: the peer node (or this one) is shutting down.
	ErrNodeStopping = errors.New("node is shutting down")
)

// LinkRefusedError: the peer's core refused to open the link (typically
// unauthorized: the token the link carried no longer verifies).
type LinkRefusedError struct {
	Code    rtm.Code
	Message string
}

func (e *LinkRefusedError) Error() string {
	return fmt.Sprintf("relay link refused: %s: %s", e.Code, e.Message)
}

// codedError is an error of this package that also carries the RTM error a
// client gets for it.
type codedError struct {
	err error
	rtm *rtm.Error
}

func (e *codedError) Error() string   { return e.err.Error() }
func (e *codedError) Unwrap() []error { return []error{e.err, e.rtm} }

func errUnavailable(cause error) error {
	return &codedError{
		err: fmt.Errorf("%w: %w", ErrUnavailable, cause),
		rtm: rtm.Errorf(rtm.CodeServerBusy, "the cluster directory is unreachable; try again shortly"),
	}
}

func errTaken(owner string) error {
	return &codedError{
		err: fmt.Errorf("%w (%s)", ErrTaken, owner),
		rtm: rtm.Errorf(rtm.CodeSessionExists, "session_id is already in use"),
	}
}

var errNoRoom = &codedError{err: ErrNoRoom, rtm: rtm.Errorf(rtm.CodeServerBusy, "every node is at capacity")}
