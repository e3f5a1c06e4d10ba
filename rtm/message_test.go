package rtm

import (
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		code  Code // empty: valid
	}{
		{"session_start", `{"type":"session_start","client_id":"c","session_id":"s","data":{"sdp":{"type":"offer","sdp":"v=0"}}}`, ""},
		{"ping without ids", `{"type":"ping"}`, ""},
		{"unknown fields ignored", `{"type":"ping","extra":{"a":1}}`, ""},
		{"not json", `{"type":`, CodeInvalidMessage},
		{"array", `[]`, CodeInvalidMessage},
		{"string", `"ping"`, CodeInvalidMessage},
		{"no type", `{"client_id":"c"}`, CodeInvalidMessage},
		{"type is a number", `{"type":3}`, CodeInvalidMessage},
		{"session_id is an object", `{"type":"ping","session_id":{}}`, CodeInvalidMessage},
		{"id too long", `{"type":"ping","session_id":"` + strings.Repeat("x", MaxIDLen+1) + `"}`, CodeInvalidMessage},
		{"control character in id", `{"type":"ping","session_id":"a\nb"}`, CodeInvalidMessage},
		{"unknown type", `{"type":"reboot"}`, CodeUnknownType},
		{"server-only type", `{"type":"session_state"}`, CodeUnknownType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.frame))
			if tt.code == "" {
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code {
				t.Fatalf("Decode error = %v, want code %s", err, tt.code)
			}
		})
	}
}

func TestDecodeData(t *testing.T) {
	tests := []struct {
		name string
		typ  Type
		data string
		v    interface{ Validate() error }
		code Code
	}{
		{"start ok", TypeSessionStart, `{"sdp":{"type":"offer","sdp":"v=0"},"webhook_url":"https://h"}`, &SessionStart{}, ""},
		{"start without data", TypeSessionStart, ``, &SessionStart{}, CodeInvalidMessage},
		{"start with null data", TypeSessionStart, `null`, &SessionStart{}, CodeInvalidMessage},
		{"start with an answer", TypeSessionStart, `{"sdp":{"type":"answer","sdp":"v=0"}}`, &SessionStart{}, CodeInvalidSDP},
		{"start with pranswer", TypeSessionStart, `{"sdp":{"type":"pranswer","sdp":"v=0"}}`, &SessionStart{}, CodeInvalidSDP},
		{"start with empty sdp", TypeSessionStart, `{"sdp":{"type":"offer","sdp":" "}}`, &SessionStart{}, CodeInvalidMessage},
		{"start with sdp as string", TypeSessionStart, `{"sdp":"v=0"}`, &SessionStart{}, CodeInvalidMessage},
		{"supervisor without target", TypeSupervisorJoinSession, `{"sdp":{"type":"offer","sdp":"v=0"}}`, &SupervisorJoin{}, CodeInvalidMessage},
		{"supervisor without offer", TypeSupervisorJoinSession, `{"session_id_to_monitor":"m"}`, &SupervisorJoin{}, ""},
		{"supervisor with an answer", TypeSupervisorJoinSession, `{"session_id_to_monitor":"m","sdp":{"type":"answer","sdp":"v=0"}}`, &SupervisorJoin{}, CodeInvalidSDP},
		{"supervisor with an empty sdp", TypeSupervisorJoinSession, `{"session_id_to_monitor":"m","sdp":{}}`, &SupervisorJoin{}, CodeInvalidMessage},
		{"candidate missing", TypeCandidate, `{}`, &CandidateData{}, CodeInvalidMessage},
		{"end of candidates", TypeCandidate, `{"candidate":{"candidate":""}}`, &CandidateData{}, ""},
		{"candidate index mistyped", TypeCandidate, `{"candidate":{"candidate":"x","sdpMLineIndex":"0"}}`, &CandidateData{}, CodeInvalidMessage},
		{"recording without url", TypeRecordingStart, `{}`, &RecordingStart{}, CodeInvalidMessage},
		{"recording with bad format", TypeRecordingStart, `{"upload_url":"https://u","format":"mp4"}`, &RecordingStart{}, CodeInvalidMessage},
		{"recording with bad pause mode", TypeRecordingStart, `{"upload_url":"https://u","pause_mode":"cut"}`, &RecordingStart{}, CodeInvalidMessage},
		{"recording with huge url", TypeRecordingStart, `{"upload_url":"https://u/` + strings.Repeat("a", MaxURLLen) + `"}`, &RecordingStart{}, CodeInvalidURL},
		{"recording ok", TypeRecordingStart, `{"upload_url":"s3://b/k","format":"mkv","pause_mode":"skip"}`, &RecordingStart{}, ""},
		{"token refresh ok", TypeTokenRefresh, `{"token":"a.b.c"}`, &TokenRefresh{}, ""},
		{"token refresh without token", TypeTokenRefresh, `{}`, &TokenRefresh{}, CodeInvalidMessage},
		{"token refresh with a number", TypeTokenRefresh, `{"token":7}`, &TokenRefresh{}, CodeInvalidMessage},
		{"token refresh with a huge token", TypeTokenRefresh, `{"token":"` + strings.Repeat("a", MaxTokenLen+1) + `"}`, &TokenRefresh{}, CodeUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := DecodeData(Message{Type: tt.typ, Data: []byte(tt.data)}, tt.v)
			if tt.code == "" {
				if err != nil {
					t.Fatalf("DecodeData: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code {
				t.Fatalf("DecodeData error = %v, want code %s", err, tt.code)
			}
		})
	}
}

func TestErrorsDoNotEchoInput(t *testing.T) {
	secret := "https://bucket.example.com/k?X-Amz-Signature=deadbeef"
	err := DecodeData(Message{Type: TypeRecordingStart, Data: []byte(`{"upload_url":7,"webhook_url":"` + secret + `"}`)}, &RecordingStart{})
	if err == nil || strings.Contains(err.Error(), "deadbeef") {
		t.Fatalf("error %v echoes the input", err)
	}
}
