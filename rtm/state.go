package rtm

// State is a session's lifecycle state (docs/protocol.md, Session lifecycle).
type State string

// The session states, in the order a session moves through them.
const (
	StateConnecting   State = "CONNECTING"
	StateConnected    State = "CONNECTED"
	StateDisconnected State = "DISCONNECTED"
	StateTerminated   State = "TERMINATED"
)

// Cause is the termination_cause of a TERMINATED session (docs/protocol.md, Session lifecycle).
type Cause string

// The termination causes.
const (
	CauseClient              Cause = "TERM_BY_CLIENT"
	CauseDisconnect          Cause = "TERM_BY_DISCONNECT"
	CauseConnectTimeout      Cause = "TERM_BY_CONNECT_TIMEOUT"
	CauseMediaTimeout        Cause = "TERM_BY_MEDIA_TIMEOUT"
	CauseMonitoredSessionEnd Cause = "TERM_BY_MONITORED_SESSION_END"
	CauseServerShutdown      Cause = "TERM_BY_SERVER_SHUTDOWN"
	CauseMaxDuration         Cause = "TERM_BY_MAX_DURATION"
	CauseError               Cause = "TERM_BY_ERROR"
	// CauseTokenExpired ends a supervisor session whose token expired
	// (access control on, docs/protocol.md, Authentication).
	CauseTokenExpired Cause = "TERM_BY_TOKEN_EXPIRED"
)

// RecordingState is the state of a recording (docs/recordings.md).
type RecordingState string

// The recording states.
const (
	RecordingStarted RecordingState = "STARTED"
	RecordingStopped RecordingState = "STOPPED"
	RecordingFailed  RecordingState = "FAILED"
	RecordingPaused  RecordingState = "PAUSED"
	RecordingResumed RecordingState = "RESUMED"
)
