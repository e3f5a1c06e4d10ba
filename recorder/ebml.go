package recorder

import "encoding/binary"

// Matroska element IDs (RFC 9559) written by hand on the hot path or at fixed offsets.
const (
	idEBML           = 0x1A45DFA3
	idSegment        = 0x18538067
	idSeekHead       = 0x114D9B74
	idSeek           = 0x4DBB
	idSeekID         = 0x53AB
	idSeekPosition   = 0x53AC
	idInfo           = 0x1549A966
	idTimecodeScale  = 0x2AD7B1
	idMuxingApp      = 0x4D80
	idWritingApp     = 0x5741
	idDuration       = 0x4489
	idDateUTC        = 0x4461
	idTracks         = 0x1654AE6B
	idCluster        = 0x1F43B675
	idTimecode       = 0xE7
	idSimpleBlock    = 0xA3
	idBlockGroup     = 0xA0
	idBlock          = 0xA1
	idCues           = 0x1C53BB6B
	idVoid           = 0xEC
	idTags           = 0x1254C367
	idChapters       = 0x1043A770
	idAttachments    = 0x1941A469
	idPrevSize       = 0xAB
	idPosition       = 0xA7
	idBlockDuration  = 0x9B
	idReferenceBlock = 0xFB

	// sizeUnknown is the 8-byte "unknown size" vint, used for elements still being written.
	sizeUnknown = 0x01FFFFFFFFFFFFFF
)

// appendID appends an element ID (IDs keep their length marker bits).
func appendID(b []byte, id uint32) []byte {
	switch {
	case id >= 1<<24:
		return append(b, byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
	case id >= 1<<16:
		return append(b, byte(id>>16), byte(id>>8), byte(id))
	case id >= 1<<8:
		return append(b, byte(id>>8), byte(id))
	}
	return append(b, byte(id))
}

// appendSize appends a data size as the shortest vint (all-ones values are reserved).
func appendSize(b []byte, n uint64) []byte {
	for l := 1; l <= 8; l++ {
		if n < 1<<(7*l)-1 {
			return appendSizeLen(b, n, l)
		}
	}
	return appendSizeLen(b, n, 8)
}

// appendSizeLen appends a data size as a vint of exactly l bytes, for fields patched later.
func appendSizeLen(b []byte, n uint64, l int) []byte {
	v := n | 1<<(7*l)
	for i := l - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// appendUintElem appends an unsigned integer element with an 8-byte body.
func appendUint8Elem(b []byte, id uint32, v uint64) []byte {
	b = appendID(b, id)
	b = append(b, 0x88)
	return binary.BigEndian.AppendUint64(b, v)
}

// appendVoid appends a Void element occupying exactly n bytes (n == 1 is impossible and
// yields nothing; callers avoid it).
func appendVoid(b []byte, n int) []byte {
	switch {
	case n < 2:
		return b
	case n-2 < 127:
		b = append(b, idVoid, 0x80|byte(n-2))
		n -= 2
	default:
		b = append(b, idVoid)
		b = appendSizeLen(b, uint64(n-9), 8)
		n -= 9
	}
	for range n {
		b = append(b, 0)
	}
	return b
}

// readVint decodes an EBML variable-size integer. marker keeps the length bits (IDs).
// It returns the value, its length, and ok=false if b is too short or invalid.
func readVint(b []byte, marker bool) (uint64, int, bool) {
	if len(b) == 0 || b[0] == 0 {
		return 0, 0, false
	}
	l := 1
	for m := byte(0x80); b[0]&m == 0; m >>= 1 {
		l++
	}
	if len(b) < l {
		return 0, 0, false
	}
	v := uint64(b[0])
	if !marker {
		v &= uint64(0xFF >> l)
	}
	for i := 1; i < l; i++ {
		v = v<<8 | uint64(b[i])
	}
	if !marker && v == 1<<(7*l)-1 {
		return sizeUnknown, l, true
	}
	return v, l, true
}
