package recorder

// IsKeyframeStart reports whether an RTP payload is the first packet of a
// keyframe, so that a forwarder can start a viewer's video on one. Audio
// payloads are always a start.
func IsKeyframeStart(c Codec, payload []byte) bool {
	switch c {
	case CodecVP8:
		i, start := vp8DescriptorLen(payload)
		// RFC 6386 §9.1: bit 0 of the frame tag is 0 for a keyframe.
		return start && i < len(payload) && payload[i]&0x01 == 0
	case CodecVP9:
		// RFC 9628 §4.2: B (start of frame) set and P (inter-picture
		// predicted) clear.
		return len(payload) > 0 && payload[0]&0x08 != 0 && payload[0]&0x40 == 0
	case CodecH264:
		return h264StartsKeyframe(payload)
	}
	return true
}

// vp8DescriptorLen is the length of the VP8 payload descriptor (RFC 7741
// §4.2) and whether the packet starts partition 0 of a frame.
func vp8DescriptorLen(p []byte) (n int, start bool) {
	if len(p) < 1 {
		return 0, false
	}
	n = 1
	if p[0]&0x80 != 0 { // X: extension byte
		if len(p) < 2 {
			return len(p), false
		}
		x := p[1]
		n = 2
		if x&0x80 != 0 { // I: PictureID, 7 or 15 bits
			if len(p) <= n {
				return len(p), false
			}
			if p[n]&0x80 != 0 {
				n += 2
			} else {
				n++
			}
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			n++
		}
		if x&0x30 != 0 { // T or K: TID/Y/KEYIDX
			n++
		}
	}
	return n, p[0]&0x10 != 0 && p[0]&0x07 == 0
}

// h264StartsKeyframe: a single SPS or IDR NAL, a STAP-A carrying one, or the
// first fragment of an IDR (RFC 6184 §5).
func h264StartsKeyframe(p []byte) bool {
	if len(p) < 2 {
		return false
	}
	switch t := p[0] & 0x1f; t {
	case 5, 7:
		return true
	case 24: // STAP-A
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			if i+2 < len(p) {
				if nt := p[i+2] & 0x1f; nt == 5 || nt == 7 {
					return true
				}
			}
			i += 2 + size
		}
	case 28: // FU-A
		return p[1]&0x80 != 0 && p[1]&0x1f == 5
	}
	return false
}
