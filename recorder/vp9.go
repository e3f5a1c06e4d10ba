package recorder

// depackVP9 strips the VP9 payload descriptor (RFC 9628 §4.2) and appends the data to dst.
// start is the B (beginning of frame) bit.
func depackVP9(dst, p []byte) (out []byte, start, ok bool) {
	if len(p) < 1 {
		return dst, false, false
	}
	d := p[0]
	i := 1
	need := func(n int) bool { return i+n <= len(p) }
	if d&0x80 != 0 { // I: picture ID
		if !need(1) {
			return dst, false, false
		}
		if p[i]&0x80 != 0 {
			i += 2
		} else {
			i++
		}
	}
	flexible := d&0x10 != 0
	if d&0x20 != 0 { // L: layer indices
		i++
		if !flexible {
			i++ // TL0PICIDX
		}
	}
	if flexible && d&0x40 != 0 { // P: reference indices, up to 3
		for n := 0; n < 3; n++ {
			if !need(1) {
				return dst, false, false
			}
			more := p[i]&1 != 0
			i++
			if !more {
				break
			}
		}
	}
	if d&0x02 != 0 { // V: scalability structure
		if !need(1) {
			return dst, false, false
		}
		ss := p[i]
		i++
		ns := int(ss>>5) + 1
		if ss&0x10 != 0 { // Y: resolutions
			i += 4 * ns
		}
		if ss&0x08 != 0 { // G: picture group description
			if !need(1) {
				return dst, false, false
			}
			ng := int(p[i])
			i++
			for range ng {
				if !need(1) {
					return dst, false, false
				}
				i += 1 + int(p[i]>>2&3)
			}
		}
	}
	if i >= len(p) {
		return dst, false, false
	}
	return append(dst, p[i:]...), d&0x08 != 0, true
}

// vp9Keyframe parses the uncompressed header (VP9 bitstream spec §6.2) of a frame.
func vp9Keyframe(f []byte) (key bool, w, h int) {
	r := bitReader{b: f}
	if r.u(2) != 2 {
		return false, 0, 0
	}
	lo := r.u(1)
	profile := r.u(1)<<1 | lo
	if profile == 3 {
		r.u(1)
	}
	if r.u(1) == 1 { // show_existing_frame
		return false, 0, 0
	}
	if r.u(1) != 0 { // frame_type: 0 = KEY_FRAME
		return false, 0, 0
	}
	r.u(2) // show_frame, error_resilient_mode
	if r.u(8) != 0x49 || r.u(8) != 0x83 || r.u(8) != 0x42 {
		return false, 0, 0
	}
	if profile >= 2 {
		r.u(1)
	}
	if cs := r.u(3); cs != 7 { // not CS_RGB
		r.u(1)
		if profile == 1 || profile == 3 {
			r.u(3)
		}
	} else if profile == 1 || profile == 3 {
		r.u(1)
	}
	w = int(r.u(16)) + 1
	h = int(r.u(16)) + 1
	if r.err {
		return true, 0, 0
	}
	return true, w, h
}
