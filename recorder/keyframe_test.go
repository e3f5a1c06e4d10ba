package recorder

import "testing"

func TestIsKeyframeStart(t *testing.T) {
	tests := []struct {
		name    string
		codec   Codec
		payload []byte
		want    bool
	}{
		{"vp8 keyframe, short descriptor", CodecVP8, []byte{0x10, 0x50, 0x01, 0x00, 0x9d, 0x01, 0x2a}, true},
		{"vp8 interframe", CodecVP8, []byte{0x10, 0x51, 0x01, 0x00}, false},
		{"vp8 keyframe, continuation packet", CodecVP8, []byte{0x00, 0x50}, false},
		{"vp8 keyframe, 15-bit picture id", CodecVP8, []byte{0x90, 0x80, 0x81, 0x23, 0x50, 0x01}, true},
		{"vp8 empty", CodecVP8, nil, false},
		{"vp9 start of a keyframe", CodecVP9, []byte{0x08, 0x00}, true},
		{"vp9 inter frame", CodecVP9, []byte{0x48, 0x00}, false},
		{"h264 IDR", CodecH264, []byte{0x65, 0x88}, true},
		{"h264 SPS", CodecH264, []byte{0x67, 0x42}, true},
		{"h264 STAP-A with SPS", CodecH264, []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true},
		{"h264 FU-A IDR start", CodecH264, []byte{0x7c, 0x85}, true},
		{"h264 FU-A IDR middle", CodecH264, []byte{0x7c, 0x05}, false},
		{"h264 P slice", CodecH264, []byte{0x41, 0x9a}, false},
		{"opus", CodecOpus, []byte{0x78}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsKeyframeStart(tt.codec, tt.payload); got != tt.want {
				t.Fatalf("IsKeyframeStart = %v, want %v", got, tt.want)
			}
		})
	}
}
