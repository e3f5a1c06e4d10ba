package antmedia

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/rtmrec/rtmrec/auth"
	"github.com/rtmrec/rtmrec/rtm"
)

// FuzzDecode feeds arbitrary frames to the decoder: it never panics, a
// failure is an *rtm.Error with a code and a short message, and what it
// accepts is bounded and survives a round trip. New crashers land in
// testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		// What the SDK (2.16.2) sends.
		`{"command":"publish","streamId":"s1","subscriberId":"","subscriberCode":"","streamName":"","mainTrack":"","video":true,"audio":true,"metaData":"","role":""}`,
		`{"command":"takeConfiguration","streamId":"s1","type":"offer","sdp":"v=0\r\n"}`,
		`{"command":"takeCandidate","streamId":"s1","label":0,"id":"0","candidate":"candidate:979761287 1 udp 2122194687 192.0.2.2 34226 typ host generation 0"}`,
		`{"command":"play","streamId":"s1","token":"","room":"","trackList":[],"subscriberId":"","subscriberCode":"","viewerInfo":"","role":"","userPublishId":""}`,
		`{"command":"stop","streamId":"s1"}`, `{"command":"ping"}`, `{"command":"getIceServerConfig"}`,
		// The documents' forms, and broken ones.
		`{"command":"takeCandidate","streamId":"s1","label":"1","id":"audio","candidate":"c"}`,
		`{"command":"takeCandidate","label":-1}`, `{"command":"takeCandidate","label":1e3}`, `{"command":"x","label":null}`,
		`{"command":5}`, `[]`, `{}`, `null`, `"publish"`, `{"command":"publish","streamId":{"a":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		c, err := Decode(frame)
		if err != nil {
			var e *rtm.Error
			if !errors.As(err, &e) || e.Code == "" || len(e.Message) > 200 {
				t.Fatalf("Decode error %v: want an *rtm.Error with a code and a short message", err)
			}
			if len(c.StreamID) > rtm.MaxIDLen {
				t.Fatalf("a refusal would echo a %d-byte stream id", len(c.StreamID))
			}
			Definition(e, false)
			return
		}
		if c.Command == "" || len(c.Command) > 64 || len(c.StreamID) > rtm.MaxIDLen || len(c.SDP) > rtm.MaxSDPLen ||
			len(c.Token) > auth.MaxTokenLen || len(c.Candidate) > rtm.MaxCandidateLen {
			t.Fatalf("Decode accepted an unbounded command: %d/%d/%d/%d/%d bytes", len(c.Command), len(c.StreamID), len(c.SDP), len(c.Token), len(c.Candidate))
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("encode %+v: %v", c, err)
		}
		again, err := Decode(b)
		if err != nil || again != c {
			t.Fatalf("round trip: %+v → %s → %+v, %v", c, b, again, err)
		}
	})
}
