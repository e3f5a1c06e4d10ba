package recorder

// Timeline.
//
// Every track maps its RTP timestamps to the local wall clock, and the file time of a
// packet is that local time minus the recording start (minus earlier pauses in PauseSkip
// mode). Timestamps are unwrapped to 64 bits per track. Until the track's first RTCP Sender
// Report the mapping is anchored on the arrival time of the first packet; the first SR
// re-anchors it on the sender's NTP clock (RFC 3550 §6.4.1), converted to local time with one
// offset per recording taken at the first SR, so all tracks of a sender share one clock and
// audio and video line up. Later SRs steer it gently (see senderReport): their noise must not
// shake the track. DTX silence, loss and late starts keep their length because positions come
// from RTP timestamps, not packet counts.
//
// Old packets must not move the timeline. Senders re-send packets they sent before: RTX
// retransmissions, and bandwidth probes that re-send one packet many times (Firefox re-sends
// one 6-11 times each time it raises its resolution, and was seen re-sending one 9 s old;
// pion hands the unwrapped RTX packet over with its original sequence number and
// timestamp). So packets pass two stages before their timestamps are used:
//
//  1. Sequence numbers (reorder). A packet behind the last one emitted is a re-send or
//     arrived too late: dropped. A packet within seqResetPackets ahead goes into the
//     reorder window, which drops duplicates and puts the rest in order. A packet farther
//     away, either way, may be a sender that restarted its sequence numbers: it is held,
//     and only a run of restartRun distinct packets close to each other, with the current
//     stream quiet meanwhile (no packet of it in the run, none for runQuietNS), restarts
//     the stream. The first packets of a stream form such a run too, so a stray first
//     packet cannot set the stream's origin.
//  2. Timestamps (timeline), in sequence order. A packet whose timestamp jumps backwards,
//     or ahead of the wall clock, by more than tsJumpNS (an encoder restart) is held; the
//     track re-anchors on the first held packet only when restartRun consecutive packets
//     agree on the new timing. A packet that fits the old timing first proves the held
//     ones strays, and they are dropped. Padding-only packets carry no media and keep
//     their place in the sequence without touching the timeline.
//
// A new SSRC is a new stream and re-anchors at once. Re-anchors are counted per track
// (manifest "reanchors") and in the recorder metrics: a browser call should have none.

const (
	tsJumpNS        = 2e9   // timestamp jumps beyond this (vs arrival) are a restart or a stray
	srMaxSkewNS     = 5e9   // an SR whose sender clock is this far off is from another clock
	srSlewNS        = 5e6   // an SR moves an SR-anchored track by at most this...
	srRetimeNS      = 250e6 // ...unless it disagrees by this much: the sender's timing changed
	reorderSlots    = 64    // packets held to put reordered packets back in order
	reorderMaxWait  = 150e6
	seqResetPackets = 3000 // a sequence jump beyond this is a restart or a stray, not loss
	// restartRun packets must agree before a jump (sequence or timestamp) is believed:
	// 100 ms of 20 ms audio, a frame or two of video. One stray packet never is.
	restartRun = 5
	// runQuietNS: a run of far packets restarts the stream only when the current stream
	// has sent nothing for this long (its sender moved on), or the run is long.
	runQuietNS = 100e6
)

// step is what the timeline makes of the next in-order packet.
type step int

const (
	stepFits    step = iota // fits the current timing; any held packets were strays
	stepHold                // jumped: hold it, with the packets already held
	stepNewRun              // jumped, but not like the held packets: drop those, hold this
	stepRestart             // completes a run that agrees: the track re-anchored on its first packet
)

type timeline struct {
	clock       int64
	have        bool
	lastTS      uint32
	extTS       int64
	lastArrival int64
	anchorExt   int64
	anchorLocal int64
	// fromSR says the anchor comes from a Sender Report, not from arrival.
	fromSR bool
	// srHeld: the last SR disagreed with the timing by srRetimeNS or more, by srHeldBy.
	srHeld   bool
	srHeldBy int64
	// arrivalAnchors counts anchorings on arrival time (quality.go measures them).
	arrivalAnchors uint32

	// A run of packets whose timestamps jumped: its first and newest packet, and length.
	runN                  int
	runFirstTS, runLastTS uint32
	runFirstAt, runLastAt int64
	// moved is, at the last restart, how far the old timing placed the run's first
	// packet from its arrival (for the log).
	moved int64
}

// step classifies the timestamp of the next packet in sequence order, received at arrival
// (unix ns), and moves the timeline accordingly.
func (tl *timeline) step(ts uint32, arrival int64) step {
	if !tl.have {
		tl.have = true
		tl.lastTS, tl.extTS, tl.lastArrival = ts, 1<<32, arrival
		tl.anchorExt, tl.anchorLocal, tl.fromSR = tl.extTS, arrival, false
		tl.arrivalAnchors++
		return stepFits
	}
	if !tl.jumped(ts, tl.lastTS, tl.lastArrival, tl.local(ts), arrival) {
		tl.runN = 0
		if d := int64(int32(ts - tl.lastTS)); d > 0 {
			tl.lastTS, tl.extTS, tl.lastArrival = ts, tl.extTS+d, arrival
		}
		return stepFits
	}
	runLocal := tl.runFirstAt + int64(int32(ts-tl.runFirstTS))*1e9/tl.clock
	if tl.runN == 0 || tl.jumped(ts, tl.runLastTS, tl.runLastAt, runLocal, arrival) {
		fresh := tl.runN == 0
		tl.runN = 1
		tl.runFirstTS, tl.runLastTS, tl.runFirstAt, tl.runLastAt = ts, ts, arrival, arrival
		if fresh {
			return stepHold
		}
		return stepNewRun
	}
	tl.runN++
	if int32(ts-tl.runLastTS) > 0 {
		tl.runLastTS, tl.runLastAt = ts, arrival
	}
	if tl.runN < restartRun {
		return stepHold
	}
	// The stream really restarted: anchor on the run's first packet, on arrival time
	// (the next Sender Report puts it back on the sender's clock).
	tl.moved = tl.local(tl.runFirstTS) - tl.runFirstAt
	tl.anchorExt = tl.extTS + int64(int32(tl.runFirstTS-tl.lastTS))
	tl.anchorLocal, tl.fromSR = tl.runFirstAt, false
	tl.arrivalAnchors++
	tl.extTS += int64(int32(tl.runLastTS - tl.lastTS))
	tl.lastTS, tl.lastArrival = tl.runLastTS, tl.runLastAt
	tl.runN = 0
	return stepRestart
}

// jumped reports whether timestamp ts, received at arrival, leaves a timing whose newest
// packet had timestamp ref and arrived at refArrival, and which places ts at local: it goes
// back by more than tsJumpNS, or ahead by more than tsJumpNS of both the time that passed
// since ref arrived and its own arrival. (A sender that froze sends its queued packets
// late and then the first frame captured after the freeze right behind them: that frame's
// timestamp leaps ahead of the arrivals, yet it arrives on time.)
func (tl *timeline) jumped(ts, ref uint32, refArrival, local, arrival int64) bool {
	dts := int64(int32(ts-ref)) * 1e9 / tl.clock
	return dts < -tsJumpNS || dts > arrival-refArrival+tsJumpNS && local > arrival+tsJumpNS
}

// local maps a timestamp that step placed (stepFits or stepRestart) to local time (unix ns).
func (tl *timeline) local(ts uint32) int64 {
	ext := tl.extTS + int64(int32(ts-tl.lastTS))
	return tl.anchorLocal + (ext-tl.anchorExt)*1e9/tl.clock
}

// newStream forgets the timing of the previous stream (a new SSRC); the next packet
// anchors the track again.
func (tl *timeline) newStream() { tl.have, tl.runN = false, 0 }

// senderReport anchors the track on an SR; srLocal is the SR's NTP time in local time.
// The first SR of a timing anchors it outright. Later ones are trusted only as far as
// senders make them: some (pion under load, relays) stamp an SR from when they send it, so
// a sender that stalls reports its media clock tens or hundreds of milliseconds off, and
// following each SR would shake the track back and forth. So a later SR moves the timing
// by at most srSlewNS, which follows any real clock drift. One that disagrees by
// srRetimeNS or more is held: if the next SR agrees with it, the sender's timing really
// changed (a stall of its media clock, a clock step) and the track re-anchors on it,
// returning how far it moved (ns); otherwise it was a stray and is forgotten.
func (tl *timeline) senderReport(rtpTS uint32, srLocal int64) (moved int64) {
	if !tl.have {
		return 0 // no packet yet: the unwrapping has no reference
	}
	ext := tl.extTS + int64(int32(rtpTS-tl.lastTS))
	if tl.fromSR {
		d := srLocal - (tl.anchorLocal + (ext-tl.anchorExt)*1e9/tl.clock)
		if d > -srRetimeNS && d < srRetimeNS {
			tl.srHeld = false
			tl.anchorLocal += min(max(d, -srSlewNS), srSlewNS)
			return 0
		}
		if !tl.srHeld || d-tl.srHeldBy >= srRetimeNS/2 || tl.srHeldBy-d >= srRetimeNS/2 {
			tl.srHeld, tl.srHeldBy = true, d
			return 0
		}
		tl.srHeld, moved = false, d
	}
	tl.anchorExt, tl.anchorLocal, tl.fromSR = ext, srLocal, true
	return moved
}

// ntpToNS converts a 64-bit NTP timestamp (RFC 3550 §4) to ns since 1900.
func ntpToNS(ntp uint64) int64 {
	sec := int64(ntp >> 32)
	frac := int64(ntp & 0xffffffff)
	return sec*1e9 + frac*1e9>>32
}

// rtpPacket is a received packet on its way through the reorder window and the timeline.
type rtpPacket struct {
	buf     *[]byte
	payload []byte
	ext     uint64
	seq     uint16
	ts      uint32
	marker  bool
	arrival int64
	epoch   uint64 // of the pause/resume stretch it arrived in
	valid   bool
}

// admission is what the sequence stage makes of a packet.
type admission int

const (
	admitNew admission = iota // ahead of the last emitted packet, close enough: reorder it
	admitOld                  // behind the last emitted packet: a re-send or far too late
	admitFar                  // far from the stream: a restart or a stray, held as a run
)

// reorder puts packets back in sequence order within a small window, detects duplicates
// (RTX re-sends keep the sequence number) and loss, and holds packets far from the stream
// until enough of them show that the sender restarted.
type reorder struct {
	slots     [reorderSlots]rtpPacket
	started   bool
	next      uint64 // extended sequence number of the next packet to emit
	count     int
	waitSince int64
	run       []rtpPacket // far packets that may start a new stream, in arrival order
	// lastArrival is when the current stream last sent a packet (admitNew).
	lastArrival int64
}

// admit extends p's sequence number (around next, which a stray cannot move) and says
// where the packet goes.
func (ro *reorder) admit(p *rtpPacket) admission {
	if !ro.started {
		return admitFar
	}
	p.ext = uint64(int64(ro.next) + int64(int16(p.seq-uint16(ro.next))))
	switch d := int64(p.ext) - int64(ro.next); {
	case d >= 0 && d < seqResetPackets:
		return admitNew
	case d < 0 && d >= -seqResetPackets:
		return admitOld
	}
	return admitFar
}
