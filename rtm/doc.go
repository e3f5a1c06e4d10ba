// Package rtm holds the wire format of the RTM (Realtime Messaging) protocol
// that rtmrec speaks on its /rtm WebSocket: the message envelope, the typed
// data of each message, the session and recording states, the termination
// causes and the error codes (docs/protocol.md describes them all).
//
// It is shared by the server (package session), the load generator and the
// tests, so it holds no behaviour beyond decoding and validation.
package rtm
