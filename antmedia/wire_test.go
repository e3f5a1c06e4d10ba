package antmedia

import (
	"errors"
	"strings"
	"testing"

	"github.com/rtmrec/rtmrec/rtm"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  Command
		code  rtm.Code
	}{
		{"sdk publish", `{"command":"publish","streamId":"s1","subscriberId":"","video":true,"audio":true,"metaData":"","role":"","token":"t"}`, Command{Command: "publish", StreamID: "s1", Token: "t"}, ""},
		{"label as the sdk sends it", `{"command":"takeCandidate","streamId":"s1","label":2,"id":"1","candidate":"c"}`, Command{Command: "takeCandidate", StreamID: "s1", Label: Label{Index: 2, Set: true}, ID: "1", Candidate: "c"}, ""},
		{"label as the documents show it", `{"command":"takeCandidate","streamId":"s1","label":"1","candidate":"c"}`, Command{Command: "takeCandidate", StreamID: "s1", Label: Label{Index: 1, Set: true}, Candidate: "c"}, ""},
		{"no label", `{"command":"takeCandidate","streamId":"s1","label":null,"candidate":"c"}`, Command{Command: "takeCandidate", StreamID: "s1", Candidate: "c"}, ""},
		{"fields of other types are not read", `{"command":"play","streamId":"s","trackList":[1],"video":"true"}`, Command{Command: "play", StreamID: "s"}, ""},
		{"negative label", `{"command":"takeCandidate","label":-1}`, Command{}, rtm.CodeInvalidMessage},
		{"fractional label", `{"command":"takeCandidate","label":0.5}`, Command{}, rtm.CodeInvalidMessage},
		{"not json", `{"command"`, Command{}, rtm.CodeInvalidMessage},
		{"not an object", `["publish"]`, Command{}, rtm.CodeInvalidMessage},
		{"no command", `{"streamId":"s"}`, Command{StreamID: "s"}, rtm.CodeInvalidMessage},
		{"mistyped command", `{"command":["publish"]}`, Command{}, rtm.CodeInvalidMessage},
		{"long stream id", `{"command":"publish","streamId":"` + strings.Repeat("x", 200) + `"}`, Command{Command: "publish", StreamID: strings.Repeat("x", rtm.MaxIDLen)}, rtm.CodeInvalidMessage},
		{"huge sdp", `{"command":"takeConfiguration","streamId":"s","type":"offer","sdp":"` + strings.Repeat("a", rtm.MaxSDPLen+1) + `"}`, Command{StreamID: "s"}, rtm.CodeInvalidSDP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.frame))
			if tt.code == "" {
				if err != nil || got != tt.want {
					t.Fatalf("Decode = %+v, %v; want %+v", got, err, tt.want)
				}
				return
			}
			var e *rtm.Error
			if !errors.As(err, &e) || e.Code != tt.code {
				t.Fatalf("Decode error = %v, want code %s", err, tt.code)
			}
			if got.StreamID != tt.want.StreamID {
				t.Fatalf("refused command names stream %q, want %q", got.StreamID, tt.want.StreamID)
			}
		})
	}
}

func TestErrorsDoNotEchoInput(t *testing.T) {
	_, err := Decode([]byte(`{"command":"publish","streamId":"s","token":{"secret":"eyJhbGciOi.secret"}}`))
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("error %v echoes the input", err)
	}
}
