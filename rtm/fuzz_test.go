package rtm

import (
	"errors"
	"testing"
)

// FuzzDecode feeds arbitrary frames through the decoder and every data
// type: it must never panic, and every failure must carry a documented code.
// Seeds are in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"session_start","client_id":"c","session_id":"s","data":{"sdp":{"type":"offer","sdp":"v=0"}}}`,
		`{"type":"candidate","session_id":"s","data":{"candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0","sdpMLineIndex":0}}}`,
		`{"type":"recording_start","session_id":"s","data":{"upload_url":"https://u/x","format":"webm"}}`,
		`{"type":"supervisor_join_session","session_id":"s","data":{"session_id_to_monitor":"m","sdp":{"type":"offer","sdp":"v"}}}`,
		`{"type":"ping"}`, `[]`, `{}`, `{"type":null}`, `{"type":"sdp_update","data":[]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		m, err := Decode(frame)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code == "" {
				t.Fatalf("Decode error without a code: %v", err)
			}
			return
		}
		for _, v := range []interface{ Validate() error }{
			&SessionStart{}, &SupervisorJoin{}, &SDPUpdate{}, &CandidateData{}, &RecordingStart{}, Empty{},
		} {
			if err := DecodeData(m, v); err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Code == "" {
					t.Fatalf("DecodeData error without a code: %v", err)
				}
			}
		}
	})
}
