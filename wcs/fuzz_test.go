package wcs

import (
	"errors"
	"testing"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/rtm"
)

// FuzzDecode feeds arbitrary frames to the envelope decoder and the
// decoders of each message's data: they never panic, a failure is an
// *rtm.Error with a code and a short message, and what they accept is
// bounded. New crashers land in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		// What the SDK (2.0.276) sends.
		`{"message":"connection","data":[{"appKey":"defaultApp","mediaProviders":["WebRTC"],"clientVersion":"2.0","msePacketizationVersion":2,"clientInfo":{},"custom":{"token":"t"}}]}`,
		`{"message":"publishStream","data":[{"mediaSessionId":"e626e480","name":"s1","published":true,"hasVideo":true,"hasAudio":true,"status":"PENDING","record":true,"mediaProvider":"WebRTC","sdp":"v=0\r\n","bitrate":0}]}`,
		`{"message":"playStream","data":[{"mediaSessionId":"eb6905e0","name":"s1","published":false,"record":false,"width":0,"mediaProvider":"WebRTC","sdp":"v=0"}]}`,
		`{"message":"unPublishStream","data":[{"mediaSessionId":"e626e480","name":"s1","status":"PUBLISHING"}]}`,
		`{"message":"pong","data":[null]}`,
		// Broken ones.
		`{"message":"connection","data":[{"custom":"x"}]}`, `{"message":"connection","data":[{"custom":{"token":5}}]}`,
		`{"message":"publishStream","data":[]}`, `{"message":"publishStream","data":[7]}`, `{"message":"x","data":null}`,
		`{"message":5}`, `[]`, `{}`, `null`,
	} {
		f.Add([]byte(s))
	}
	check := func(t *testing.T, what string, err error) bool {
		if err == nil {
			return true
		}
		var e *rtm.Error
		if !errors.As(err, &e) || e.Code == "" || len(e.Message) > 200 {
			t.Fatalf("%s error %v: want an *rtm.Error with a code and a short message", what, err)
		}
		return false
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := Decode(frame)
		if !check(t, "Decode", err) {
			return
		}
		if m.Message == "" || len(m.Message) > 64 {
			t.Fatalf("Decode accepted message name %q", m.Message)
		}
		if c, err := DecodeConnection(m); check(t, "DecodeConnection", err) && len(c.Custom.Token) > auth.MaxTokenLen {
			t.Fatalf("DecodeConnection accepted a %d-byte token", len(c.Custom.Token))
		}
		r, err := DecodeStream(m)
		if len(r.MediaSessionID) > rtm.MaxIDLen {
			t.Fatalf("DecodeStream keeps a %d-byte mediaSessionId", len(r.MediaSessionID))
		}
		if check(t, "DecodeStream", err) && (r.MediaSessionID == "" || len(r.SDP) > rtm.MaxSDPLen) {
			t.Fatalf("DecodeStream accepted %+v", r)
		}
	})
}
