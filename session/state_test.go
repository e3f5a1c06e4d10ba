package session

import (
	"testing"

	"github.com/pion/webrtc/v4"

	"github.com/rtmrec/rtmrec/rtm"
)

func TestLifecycle(t *testing.T) {
	type step struct {
		peer  webrtc.PeerConnectionState // or timer when zero
		timer bool
		want  transition
	}
	pc := func(s webrtc.PeerConnectionState, to rtm.State, c rtm.Cause) step {
		return step{peer: s, want: transition{to: to, cause: c}}
	}
	timer := func(to rtm.State, c rtm.Cause) step { return step{timer: true, want: transition{to: to, cause: c}} }
	tests := []struct {
		name  string
		steps []step
	}{
		{"connects", []step{
			pc(webrtc.PeerConnectionStateConnecting, "", ""),
			pc(webrtc.PeerConnectionStateConnected, rtm.StateConnected, ""),
		}},
		{"connect timeout", []step{
			pc(webrtc.PeerConnectionStateConnecting, "", ""),
			timer(rtm.StateTerminated, rtm.CauseConnectTimeout),
		}},
		{"ice fails before connecting", []step{
			pc(webrtc.PeerConnectionStateFailed, rtm.StateTerminated, rtm.CauseConnectTimeout),
		}},
		{"disconnects and comes back", []step{
			pc(webrtc.PeerConnectionStateConnected, rtm.StateConnected, ""),
			pc(webrtc.PeerConnectionStateDisconnected, rtm.StateDisconnected, ""),
			pc(webrtc.PeerConnectionStateConnected, rtm.StateConnected, ""),
			timer("", ""), // the stale disconnect timer changes nothing
		}},
		{"media timeout", []step{
			pc(webrtc.PeerConnectionStateConnected, rtm.StateConnected, ""),
			pc(webrtc.PeerConnectionStateDisconnected, rtm.StateDisconnected, ""),
			timer(rtm.StateTerminated, rtm.CauseMediaTimeout),
			pc(webrtc.PeerConnectionStateConnected, "", ""), // nothing after TERMINATED
		}},
		{"ice fails after connecting", []step{
			pc(webrtc.PeerConnectionStateConnected, rtm.StateConnected, ""),
			pc(webrtc.PeerConnectionStateFailed, rtm.StateTerminated, rtm.CauseMediaTimeout),
		}},
		{"disconnected before connected is ignored", []step{
			pc(webrtc.PeerConnectionStateDisconnected, "", ""),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := lifecycle{state: rtm.StateConnecting}
			for i, s := range tt.steps {
				var got transition
				if s.timer {
					got = l.onTimer()
				} else {
					got = l.onPeerState(s.peer)
				}
				if got != s.want {
					t.Fatalf("step %d: got %+v, want %+v", i, got, s.want)
				}
			}
		})
	}
	l := lifecycle{state: rtm.StateConnected}
	if got := l.terminate(rtm.CauseClient); got.to != rtm.StateTerminated || got.cause != rtm.CauseClient {
		t.Fatalf("terminate = %+v", got)
	}
	if got := l.terminate(rtm.CauseDisconnect); got.to != "" {
		t.Fatalf("second terminate = %+v, want no change (first cause wins)", got)
	}
}
