package recorder

import "encoding/binary"

// opusSampleRate is the rate of Ogg Opus granule positions (RFC 7845 §4).
const opusSampleRate = 48000

// oggPreSkip is 80 ms: RFC 7845 §4.2 recommends at least that much so a decoder started
// mid-stream (the sender's encoder ran before the recording) converges before audio is heard.
// The writer puts 80 ms of TOC-only packets first, so pre-skip costs no real audio.
const oggPreSkip = 3840

// opusSamples returns the duration of an Opus packet in 48 kHz samples from its TOC byte
// (RFC 6716 §3.1), or 0 if the packet is malformed.
func opusSamples(p []byte) int {
	if len(p) == 0 {
		return 0
	}
	toc := p[0]
	cfg := toc >> 3
	var frame int
	switch {
	case cfg < 12: // SILK: 10, 20, 40, 60 ms
		frame = [4]int{480, 960, 1920, 2880}[cfg&3]
	case cfg < 16: // hybrid: 10, 20 ms
		frame = [2]int{480, 960}[cfg&1]
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = [4]int{120, 240, 480, 960}[cfg&3]
	}
	var n int
	switch toc & 3 {
	case 0:
		n = 1
	case 1, 2:
		n = 2
	default:
		if len(p) < 2 {
			return 0
		}
		n = int(p[1] & 0x3f)
	}
	d := n * frame
	if d > 5760 { // 120 ms is the RFC 6716 maximum
		return 0
	}
	return d
}

// Opus TOC-only packets used to fill gaps: CELT fullband frames of zero length, which a
// decoder treats as lost and conceals (RFC 7845 §4.1, RFC 6716 §3.2.1).
const (
	opusTOC20ms  = 31 << 3 // one 20 ms frame (config 31, code 0)
	opusTOC10ms  = 30 << 3 // config 30, code 0
	opusTOC5ms   = 29 << 3
	opusTOC2_5ms = 28 << 3
	opusTOC120ms = 31<<3 | 3 // code 3: frame count follows; 6 x 20 ms of zero length each
)

// opusFiller returns a TOC-only packet of at most gap samples, and its duration.
// gap must be at least 120.
func opusFiller(buf *[2]byte, gap int64) ([]byte, int) {
	switch {
	case gap >= 5760:
		buf[0], buf[1] = opusTOC120ms, 6
		return buf[:2], 5760
	case gap >= 960:
		buf[0] = opusTOC20ms
		return buf[:1], 960
	case gap >= 480:
		buf[0] = opusTOC10ms
		return buf[:1], 480
	case gap >= 240:
		buf[0] = opusTOC5ms
		return buf[:1], 240
	}
	buf[0] = opusTOC2_5ms
	return buf[:1], 120
}

// opusHead builds the identification header (RFC 7845 §5.1), channel mapping family 0.
func opusHead(channels uint16, preSkip uint16) []byte {
	if channels == 0 || channels > 2 {
		channels = 2
	}
	b := make([]byte, 19)
	copy(b, "OpusHead")
	b[8] = 1
	b[9] = byte(channels)
	binary.LittleEndian.PutUint16(b[10:], preSkip)
	binary.LittleEndian.PutUint32(b[12:], opusSampleRate)
	return b
}

// opusTags builds the comment header (RFC 7845 §5.2); the track id is kept as a comment so
// a multi-stream file can be mapped back to the session's tracks.
func opusTags(trackID string) []byte {
	const vendor = "rtmrec"
	comment := "RTMREC_TRACK_ID=" + trackID
	b := make([]byte, 0, 8+4+len(vendor)+4+4+len(comment))
	b = append(b, "OpusTags"...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(vendor)))
	b = append(b, vendor...)
	b = binary.LittleEndian.AppendUint32(b, 1)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(comment)))
	b = append(b, comment...)
	return b
}
