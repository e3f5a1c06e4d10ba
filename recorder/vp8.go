package recorder

import "encoding/binary"

// depackVP8 strips the VP8 payload descriptor (RFC 7741 §4.2) and appends the VP8 data to dst.
// start is true for the first packet of a frame (S=1, partition 0).
func depackVP8(dst, p []byte) (out []byte, start, ok bool) {
	i, start := vp8DescriptorLen(p)
	if i == 0 || i >= len(p) {
		return dst, false, false
	}
	return append(dst, p[i:]...), start, true
}

// vp8Keyframe reports whether a VP8 frame is a keyframe and its size (RFC 6386 §9.1).
func vp8Keyframe(f []byte) (key bool, w, h int) {
	if len(f) < 10 || f[0]&1 != 0 {
		return false, 0, 0
	}
	if f[3] != 0x9d || f[4] != 0x01 || f[5] != 0x2a {
		return false, 0, 0
	}
	w = int(binary.LittleEndian.Uint16(f[6:]) & 0x3fff)
	h = int(binary.LittleEndian.Uint16(f[8:]) & 0x3fff)
	return true, w, h
}
