package recorder

// Timeline.
//
// Every track maps its RTP timestamps to the local wall clock, and the file time of a
// packet is that local time minus the recording start (minus earlier pauses in PauseSkip
// mode). Timestamps are unwrapped to 64 bits per track. Until the track's first RTCP Sender
// Report the mapping is anchored on the arrival time of the first packet; each SR re-anchors
// it on the sender's NTP clock (RFC 3550 §6.4.1), converted to local time with one offset per
// recording taken at the first SR, so all tracks of a sender share one clock and audio and
// video line up. DTX silence, loss and late starts keep their length because positions come
// from RTP timestamps, not packet counts. A timestamp that jumps backwards or ahead of the
// wall clock by more than two seconds (encoder restart) re-anchors on arrival, and so does a
// new SSRC.

const (
	tsJumpNS        = 2e9 // timestamp jumps beyond this (vs arrival) re-anchor the track
	srMaxSkewNS     = 5e9 // an SR whose sender clock is this far off is from another clock
	reorderSlots    = 64  // packets held to put reordered packets back in order
	reorderMaxWait  = 150e6
	seqResetPackets = 3000 // a sequence jump beyond this is a new stream, not loss
)

type timeline struct {
	clock       int64
	have        bool
	lastTS      uint32
	extTS       int64
	lastArrival int64
	anchorExt   int64
	anchorLocal int64
	fromSR      bool
	// arrivalAnchors counts re-anchorings on arrival time (quality.go measures them).
	arrivalAnchors uint32
}

// local maps an RTP timestamp received at arrival (unix ns) to local time (unix ns).
func (tl *timeline) local(ts uint32, arrival int64) int64 {
	if !tl.have {
		tl.have = true
		tl.lastTS, tl.extTS, tl.lastArrival = ts, 1<<32, arrival
		tl.anchorExt, tl.anchorLocal, tl.fromSR = tl.extTS, arrival, false
		tl.arrivalAnchors++
		return arrival
	}
	d := int64(int32(ts - tl.lastTS))
	ext := tl.extTS + d
	dts := d * 1e9 / tl.clock
	if dts < -tsJumpNS || dts > arrival-tl.lastArrival+tsJumpNS {
		tl.anchorExt, tl.anchorLocal, tl.fromSR = ext, arrival, false
		tl.arrivalAnchors++
	}
	if d > 0 {
		tl.lastTS, tl.extTS, tl.lastArrival = ts, ext, arrival
	}
	return tl.anchorLocal + (ext-tl.anchorExt)*1e9/tl.clock
}

func (tl *timeline) reset() { tl.have = false }

// at maps an RTP timestamp near the last one to local time under the current anchor,
// changing nothing.
func (tl *timeline) at(ts uint32) int64 {
	ext := tl.extTS + int64(int32(ts-tl.lastTS))
	return tl.anchorLocal + (ext-tl.anchorExt)*1e9/tl.clock
}

// senderReport re-anchors the track on an SR; srLocal is the SR's NTP time in local time.
func (tl *timeline) senderReport(rtpTS uint32, srLocal int64) {
	if !tl.have {
		return // no packet yet: the unwrapping has no reference
	}
	tl.anchorExt = tl.extTS + int64(int32(rtpTS-tl.lastTS))
	tl.anchorLocal = srLocal
	tl.fromSR = true
}

// ntpToNS converts a 64-bit NTP timestamp (RFC 3550 §4) to ns since 1900.
func ntpToNS(ntp uint64) int64 {
	sec := int64(ntp >> 32)
	frac := int64(ntp & 0xffffffff)
	return sec*1e9 + frac*1e9>>32
}

// rtpPacket is a received packet waiting in a reorder buffer.
type rtpPacket struct {
	buf     *[]byte
	payload []byte
	ext     uint64
	ts      uint32
	marker  bool
	local   int64
	arrival int64
	epoch   uint64 // of the pause/resume stretch it arrived in
	valid   bool
}

// reorder puts packets back in sequence order within a small window and detects
// duplicates (RTX re-sends keep the sequence number) and loss.
type reorder struct {
	slots     [reorderSlots]rtpPacket
	started   bool
	lastSeq   uint16
	lastExt   uint64
	next      uint64
	count     int
	waitSince int64
}

func (ro *reorder) extend(seq uint16) uint64 {
	if !ro.started {
		ro.started = true
		ro.lastSeq, ro.lastExt = seq, 1<<32|uint64(seq)
		ro.next = ro.lastExt
		return ro.lastExt
	}
	ext := uint64(int64(ro.lastExt) + int64(int16(seq-ro.lastSeq)))
	if ext > ro.lastExt {
		ro.lastSeq, ro.lastExt = seq, ext
	}
	return ext
}
