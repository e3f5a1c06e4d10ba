package recorder

// assembler rebuilds video frames from in-order RTP packets without a SampleBuilder: a
// frame ends at the marker bit (or when the timestamp changes), and any sequence gap inside
// or before a frame makes it and its successors undecodable until the next keyframe.
type assembler struct {
	codec   Codec
	buf     []byte
	ts      uint32
	active  bool
	broken  bool
	first   bool
	haveSeq bool
	lastSeq uint64
	h264    h264Depack
}

func newAssembler(c Codec) *assembler {
	a := &assembler{codec: c, buf: make([]byte, 0, 8<<10)}
	a.h264.reset()
	return a
}

// push adds a packet. It returns a complete frame (aliasing the assembler's buffer, valid
// until the next push), or lost=true when a frame was found broken or a gap was seen.
func (a *assembler) push(ext uint64, ts uint32, marker bool, payload []byte) (frame []byte, lost bool) {
	gap := a.haveSeq && ext != a.lastSeq+1
	a.haveSeq, a.lastSeq = true, ext
	if a.active && ts != a.ts {
		a.active = false // the previous frame never saw its marker: its end was lost
		lost = true
	}
	if a.active && gap {
		a.broken = true
	}
	if !a.active {
		if gap {
			lost = true // packets between frames were lost: references are broken
		}
		a.active, a.ts, a.broken, a.first = true, ts, false, true
		a.buf = a.buf[:0]
		a.h264.reset()
	}
	var start, ok bool
	switch a.codec {
	case CodecVP8:
		a.buf, start, ok = depackVP8(a.buf, payload)
	case CodecVP9:
		a.buf, start, ok = depackVP9(a.buf, payload)
	case CodecH264:
		a.buf, ok = a.h264.depack(a.buf, payload)
		start = true // H264 has no frame-start flag; gaps are caught by sequence numbers
	}
	if !ok || (a.first && !start) || len(a.buf) > 8<<20 {
		a.broken = true
	}
	a.first = false
	if !marker {
		return nil, lost
	}
	a.active = false
	if a.broken || len(a.buf) == 0 {
		return nil, true
	}
	if a.codec == CodecH264 && a.h264.fuStart >= 0 {
		return nil, true // FU-A without its end fragment
	}
	return a.buf, lost
}

// skip passes over a packet without media (padding): right after the previous packet it
// is no gap; after a gap it leaves the gap to be seen by the next push.
func (a *assembler) skip(ext uint64) {
	if a.haveSeq && ext == a.lastSeq+1 {
		a.lastSeq = ext
	}
}

func (a *assembler) reset() {
	a.active, a.haveSeq = false, false
	a.buf = a.buf[:0]
}
