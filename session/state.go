package session

import (
	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/rtm"
)

// lifecycle is a session's state machine (docs/protocol.md, Session lifecycle): CONNECTING →
// CONNECTED → (DISCONNECTED → CONNECTED)* → TERMINATED. It only decides; the
// session applies the decision (timers, messages, teardown).
type lifecycle struct {
	state rtm.State
	// connected remembers whether the session ever reached CONNECTED, which
	// decides between the connect and the media timeout.
	connected bool
}

// transition is what one input changes: the new state (empty when nothing
// changes) and, for TERMINATED, the cause.
type transition struct {
	to    rtm.State
	cause rtm.Cause
}

func (l *lifecycle) apply(t transition) transition {
	if t.to == "" || l.state == rtm.StateTerminated || t.to == l.state {
		return transition{}
	}
	l.state = t.to
	if t.to == rtm.StateConnected {
		l.connected = true
	}
	return t
}

// onPeerState maps pion's combined ICE+DTLS state onto the protocol's.
func (l *lifecycle) onPeerState(s webrtc.PeerConnectionState) transition {
	switch s {
	case webrtc.PeerConnectionStateConnected:
		return l.apply(transition{to: rtm.StateConnected})
	case webrtc.PeerConnectionStateDisconnected:
		if l.state != rtm.StateConnected {
			return transition{}
		}
		return l.apply(transition{to: rtm.StateDisconnected})
	case webrtc.PeerConnectionStateFailed:
		// ICE failed cannot come back without an ICE restart, so the wait of
		// DISCONNECTED is over.
		return l.terminate(l.timeoutCause())
	}
	return transition{}
}

// onTimer is the connect timer (before CONNECTED) or the disconnect timer
// (in DISCONNECTED) firing. A stale timer changes nothing.
func (l *lifecycle) onTimer() transition {
	switch l.state {
	case rtm.StateConnecting, rtm.StateDisconnected:
		return l.terminate(l.timeoutCause())
	}
	return transition{}
}

func (l *lifecycle) timeoutCause() rtm.Cause {
	if l.connected {
		return rtm.CauseMediaTimeout
	}
	return rtm.CauseConnectTimeout
}

func (l *lifecycle) terminate(c rtm.Cause) transition {
	return l.apply(transition{to: rtm.StateTerminated, cause: c})
}
