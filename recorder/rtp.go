package recorder

import "encoding/binary"

// rtpHeader is the part of an RTP header (RFC 3550 §5.1) the recorder needs.
type rtpHeader struct {
	seq     uint16
	ts      uint32
	ssrc    uint32
	marker  bool
	payload []byte // aliases the packet
}

// parseRTP parses a packet without allocating; ok is false for anything malformed.
func parseRTP(b []byte) (h rtpHeader, ok bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return h, false
	}
	n := 12 + 4*int(b[0]&0x0f)
	if len(b) < n {
		return h, false
	}
	if b[0]&0x10 != 0 { // header extension (RFC 3550 §5.3.1)
		if len(b) < n+4 {
			return h, false
		}
		n += 4 + 4*int(binary.BigEndian.Uint16(b[n+2:]))
		if len(b) < n {
			return h, false
		}
	}
	end := len(b)
	if b[0]&0x20 != 0 { // padding: last byte counts the padding bytes
		p := int(b[end-1])
		if p == 0 || end-p < n {
			return h, false
		}
		end -= p
	}
	h.marker = b[1]&0x80 != 0
	h.seq = binary.BigEndian.Uint16(b[2:])
	h.ts = binary.BigEndian.Uint32(b[4:])
	h.ssrc = binary.BigEndian.Uint32(b[8:])
	h.payload = b[n:end]
	return h, true
}
