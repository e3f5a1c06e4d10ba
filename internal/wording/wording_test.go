package wording

import "testing"

func TestCheck(t *testing.T) {
	tests := []struct {
		text string
		ok   bool
	}{
		{"upload_refused: HTTP 403 Forbidden", true},
		{"upload_unreachable: connection refused after 10 attempts over 2m10s", true},
		{"upload_url: https://uploads.example.com/rec/a.webm: userinfo not allowed: invalid url", true},
		{"cannot resolve host nowhere.example: the lookup timed out", true},
		{"the tenant has all the sessions it may have at once (tenant_sessions)", true},
		{"the SDP cannot be parsed (syntax error at byte 75)", true},
		{"session \"x\" already exists", true},
		{"webhook_url is outside the prefixes this token allows", true},

		{"gave up after 10 attempts: Put http://h/p: netguard: dial 127.0.0.1: dial tcp 127.0.0.1:9: connect: connection refused", false},
		{"netguard: https://h/p: userinfo not allowed", false},
		{"recorder: unknown format \"mp4\"", false},
		{"cannot apply offer: sdp: syntax error at pos 1", false},
		{"failed to unmarshal SDP: EOF", false},
		{"cannot resolve host h: lookup h on 127.0.0.53:53: no such host", false},
		{"upload_refused: https://bucket.example.com/k?X-Amz-Signature=deadbeef", false},
		{"see s3://bucket/key?versionId=3", false},
		{"read tcp 10.0.0.1:443->10.0.0.2:5000: i/o timeout", false},
		{"Post \"https://hooks.example.com/x\": context deadline exceeded", false},
		{"limits: free space in /var/lib/rtmrec: permission denied", false},
	}
	for _, tt := range tests {
		err := Check(tt.text)
		if (err == nil) != tt.ok {
			t.Errorf("Check(%q) = %v, want ok=%v", tt.text, err, tt.ok)
		}
	}
}
