package recorder

import (
	"encoding/binary"
)

// h264Depack converts RTP H264 payloads (RFC 6184; single NAL, STAP-A, FU-A) into the
// length-prefixed (4-byte) AVC form Matroska stores (ISO/IEC 14496-15).
type h264Depack struct {
	fuStart int // offset of the length field of the FU-A NAL being assembled, -1 if none
}

func (d *h264Depack) reset() { d.fuStart = -1 }

func (d *h264Depack) depack(dst, p []byte) (out []byte, ok bool) {
	if len(p) < 1 {
		return dst, false
	}
	switch t := p[0] & 0x1f; {
	case t >= 1 && t <= 23:
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(p)))
		return append(dst, p...), true
	case t == 24: // STAP-A
		for i := 1; i < len(p); {
			if i+2 > len(p) {
				return dst, false
			}
			n := int(binary.BigEndian.Uint16(p[i:]))
			i += 2
			if n == 0 || i+n > len(p) {
				return dst, false
			}
			dst = binary.BigEndian.AppendUint32(dst, uint32(n))
			dst = append(dst, p[i:i+n]...)
			i += n
		}
		return dst, true
	case t == 28: // FU-A
		if len(p) < 2 {
			return dst, false
		}
		fu := p[1]
		if fu&0x80 != 0 {
			d.fuStart = len(dst)
			dst = append(dst, 0, 0, 0, 0, p[0]&0xe0|fu&0x1f)
		} else if d.fuStart < 0 {
			return dst, false
		}
		dst = append(dst, p[2:]...)
		if fu&0x40 != 0 {
			binary.BigEndian.PutUint32(dst[d.fuStart:], uint32(len(dst)-d.fuStart-4))
			d.fuStart = -1
		}
		return dst, true
	}
	return dst, false
}

// h264Scan walks an AVC frame: key if it holds an IDR slice; sps/pps alias the frame.
func h264Scan(f []byte) (key bool, sps, pps []byte, ok bool) {
	for i := 0; i < len(f); {
		if i+4 > len(f) {
			return key, sps, pps, false
		}
		n := int(binary.BigEndian.Uint32(f[i:]))
		i += 4
		if n == 0 || n > len(f)-i {
			return key, sps, pps, false
		}
		nal := f[i : i+n]
		switch nal[0] & 0x1f {
		case 5:
			key = true
		case 7:
			sps = nal
		case 8:
			pps = nal
		}
		i += n
	}
	return key, sps, pps, true
}

// avcC builds the AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.2.4.1) Matroska
// needs as CodecPrivate for V_MPEG4/ISO/AVC.
func avcC(sps, pps []byte) []byte {
	if len(sps) < 4 || len(pps) == 0 {
		return nil
	}
	b := []byte{1, sps[1], sps[2], sps[3], 0xff, 0xe1}
	b = binary.BigEndian.AppendUint16(b, uint16(len(sps)))
	b = append(b, sps...)
	b = append(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(len(pps)))
	return append(b, pps...)
}

// h264Size parses the picture size from an SPS (H.264 §7.3.2.1.1).
func h264Size(sps []byte) (w, h int, ok bool) {
	if len(sps) < 4 {
		return 0, 0, false
	}
	// Remove emulation prevention bytes (00 00 03).
	rbsp := make([]byte, 0, len(sps))
	zeros := 0
	for _, c := range sps[1:] {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
		rbsp = append(rbsp, c)
	}
	r := bitReader{b: rbsp}
	profile := r.u(8)
	r.u(16) // constraints, level
	r.ue()  // seq_parameter_set_id
	chroma := uint32(1)
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma = r.ue()
		if chroma == 3 {
			r.u(1)
		}
		r.ue()
		r.ue()
		r.u(1)
		if r.u(1) == 1 { // seq_scaling_matrix_present_flag
			lists := 8
			if chroma == 3 {
				lists = 12
			}
			for i := range lists {
				if r.u(1) == 0 {
					continue
				}
				size := 16
				if i >= 6 {
					size = 64
				}
				last, next := int32(8), int32(8)
				for range size {
					if next != 0 {
						next = (last + r.se() + 256) % 256
					}
					if next != 0 {
						last = next
					}
					if r.err {
						return 0, 0, false
					}
				}
			}
		}
	}
	r.ue() // log2_max_frame_num_minus4
	switch r.ue() {
	case 0:
		r.ue()
	case 1:
		r.u(1)
		r.se()
		r.se()
		n := r.ue()
		if n > 255 {
			return 0, 0, false
		}
		for range n {
			r.se()
		}
	}
	r.ue()
	r.u(1)
	wmb := int(r.ue()) + 1
	hmap := int(r.ue()) + 1
	frameMbsOnly := int(r.u(1))
	if frameMbsOnly == 0 {
		r.u(1)
	}
	r.u(1)
	w, h = wmb*16, (2-frameMbsOnly)*hmap*16
	if r.u(1) == 1 { // frame_cropping_flag
		l, rr, t, b := int(r.ue()), int(r.ue()), int(r.ue()), int(r.ue())
		cx, cy := 2, 2*(2-frameMbsOnly)
		if chroma == 0 || chroma == 3 {
			cx, cy = 1, 2-frameMbsOnly
		}
		if chroma == 2 {
			cy = 2 - frameMbsOnly
		}
		w -= cx * (l + rr)
		h -= cy * (t + b)
	}
	if r.err || w <= 0 || h <= 0 || w > 16384 || h > 16384 {
		return 0, 0, false
	}
	return w, h, true
}
