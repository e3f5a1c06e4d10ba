package recorder

import "math"

// Quality figures (the per-track evidence of docs/recordings.md). Everything here runs on the
// writer goroutine, on fields of trackState, with no allocation per packet.
//
//   - Jitter is the interarrival jitter of RFC 3550 §6.4.1, J += (|D| - J)/16, computed on
//     the packets in arrival order (duplicates excluded); the figure reported is its mean
//     over the recording, so one burst does not dominate it as the final value would.
//   - A gap is media the sender sent but the recorder never got: the span, on the sender's
//     RTP clock, between the end of the last packet before a sequence-number gap and the
//     start of the first packet after it. Packets end at their timestamp plus their Opus
//     duration (audio) or the track's usual frame interval (video).
//   - Silence is audio the sender chose not to send (DTX: the timestamp advances with no
//     sequence gap) or sent as packets of at most two bytes (a TOC-only or DTX frame).
//     Lost media is a gap, not silence, and pauses are reported as pauses.
//   - The audio/video offset comes from RTCP Sender Reports. Until a track's first report
//     (and after a timestamp jump or a new SSRC) the file places its media by arrival time;
//     the next report tells how far off that placement was (where the file put the
//     report's RTP timestamp, minus the report's NTP time). A track anchored on reports is
//     on the sender's clock (error 0). A video track's offset at any moment is its error
//     minus the first audio track's; the figure kept is the largest in magnitude, and
//     there is none when a report never came to measure it.

const (
	jitterResetNS = 10e9 // a transit change beyond this is a new stream, not jitter
	silentPayload = 2    // Opus packets this short carry no audio (RFC 6716 §3.2.1, DTX)
)

type qualityMeter struct {
	// Jitter, in arrival order.
	haveTransit bool
	lastArrival int64
	lastTS      uint32
	jitter      int64 // ns
	jitterSum   int64 // ns, summed over jitterN packets
	jitterN     int64

	// Gaps and silence, in sequence order.
	haveLast       bool
	lastExt        uint64
	lastSeqTS      uint32
	lastSeqArrival int64
	lastDur        int64 // RTP ticks the last audio packet covers
	frameTicks     int64 // video: the last frame interval seen without loss
	longestGap     int64 // RTP ticks
	silence        int64 // RTP ticks

	firstKey     int64 // file time (ns) of the first keyframe written, -1 before
	firstArrival int64 // of the first packet, 0 before
	spans        [maxArrivalSpans]arrivalSpan
	nspans       int
}

// maxArrivalSpans bounds what is kept of a track's arrival-anchored stretches: one at the
// start, one per timestamp jump or SSRC change; more than this is a broken sender, and the
// oldest are forgotten.
const maxArrivalSpans = 8

// arrivalSpan is a stretch (arrival times, ns) during which a track was placed by arrival
// time, and the placement error a later Sender Report measured for it.
type arrivalSpan struct {
	start, end int64 // end 0 while open
	err        int64
	known      bool
}

func newQualityMeter() qualityMeter { return qualityMeter{firstKey: -1} }

// arrived updates the jitter with a packet accepted in arrival order. clock is in Hz.
func (q *qualityMeter) arrived(ts uint32, arrival, clock int64) {
	if q.haveTransit {
		d := (arrival - q.lastArrival) - int64(int32(ts-q.lastTS))*1e9/clock
		if d < 0 {
			d = -d
		}
		if d > jitterResetNS {
			q.haveTransit = false
		} else {
			q.jitter += (d - q.jitter) / 16
			q.jitterSum += q.jitter
			q.jitterN++
		}
	}
	q.haveTransit, q.lastArrival, q.lastTS = true, arrival, ts
}

// inOrder updates gaps and silence with the next packet in sequence order. dur is the RTP
// ticks the packet covers (audio), or -1 for video, whose packets share a frame's timestamp.
func (q *qualityMeter) inOrder(ext uint64, ts uint32, dur int64, payloadLen int, arrival, clock int64) {
	if dur >= 0 && payloadLen <= silentPayload {
		q.silence += dur
	}
	if !q.haveLast {
		q.haveLast, q.lastExt, q.lastSeqTS, q.lastSeqArrival, q.lastDur = true, ext, ts, arrival, max(dur, 0)
		return
	}
	dts := int64(int32(ts - q.lastSeqTS))
	lost := ext != q.lastExt+1
	// A timestamp jump the wall clock does not show is an encoder restart (the timeline
	// re-anchors on it), not a gap.
	plausible := dts >= 0 && dts*1e9/clock <= arrival-q.lastSeqArrival+tsJumpNS
	span := dts - q.lastDur
	if dur < 0 { // video: a frame lasts until the next one
		if dts > 0 && !lost && plausible {
			q.frameTicks = dts
		}
		span = dts - q.frameTicks
	}
	if plausible && span > 0 {
		if lost {
			q.longestGap = max(q.longestGap, span)
		} else if dur >= 0 {
			q.silence += span
		}
	}
	q.lastExt, q.lastSeqTS, q.lastSeqArrival, q.lastDur = ext, ts, arrival, max(dur, 0)
}

// arrivalAnchored notes that the timeline re-anchored on arrival at time at (ns).
func (q *qualityMeter) arrivalAnchored(at int64) {
	if q.firstArrival == 0 {
		q.firstArrival = at
	}
	if q.nspans > 0 && q.spans[(q.nspans-1)%maxArrivalSpans].end == 0 {
		q.spans[(q.nspans-1)%maxArrivalSpans].end = at // closed by a jump: error unknown
	}
	q.spans[q.nspans%maxArrivalSpans] = arrivalSpan{start: at}
	q.nspans++
}

// senderReport closes the open arrival span with the placement error the report measured.
func (q *qualityMeter) senderReport(err, at int64) {
	if q.nspans == 0 {
		return
	}
	s := &q.spans[(q.nspans-1)%maxArrivalSpans]
	if s.end == 0 {
		s.end, s.err, s.known = at, err, true
	}
}

// errAt is the track's placement error at arrival time t, and whether it is known.
func (q *qualityMeter) errAt(t int64) (int64, bool) {
	if q.firstArrival == 0 || t < q.firstArrival {
		return 0, false
	}
	for i := max(q.nspans-maxArrivalSpans, 0); i < q.nspans; i++ {
		s := q.spans[i%maxArrivalSpans]
		if t >= s.start && (s.end == 0 || t < s.end) {
			return s.err, s.known
		}
	}
	return 0, true // anchored on Sender Reports: on the sender's clock
}

// avOffset is the largest offset (ns) of video track v against audio track a, measured at
// the start and end of every arrival span of either; ok is false if none was measurable.
func avOffset(v, a *qualityMeter) (off int64, ok bool) {
	try := func(t int64) {
		ev, okv := v.errAt(t)
		ea, oka := a.errAt(t)
		if !okv || !oka {
			return
		}
		if d := ev - ea; !ok || abs64(d) > abs64(off) {
			off, ok = d, true
		}
	}
	for _, q := range []*qualityMeter{v, a} {
		for i := max(q.nspans-maxArrivalSpans, 0); i < q.nspans; i++ {
			s := q.spans[i%maxArrivalSpans]
			try(s.start)
			if s.end > s.start {
				try(s.end - 1)
			}
		}
	}
	return off, ok
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// restart forgets the stream's history (new SSRC): no gap is measured across it.
func (q *qualityMeter) restart() {
	q.haveTransit, q.haveLast = false, false
}

// jitterMS is the mean RFC 3550 jitter in ms, rounded to 0.01 ms.
func (q *qualityMeter) jitterMS() float64 {
	if q.jitterN == 0 {
		return 0
	}
	return round2(float64(q.jitterSum) / float64(q.jitterN) / 1e6)
}

func ticksToMS(ticks, clock int64) int64 {
	if clock <= 0 {
		return 0
	}
	return ticks * 1000 / clock
}

// lossPercent is lost / (lost + received) in percent, rounded to 0.01.
func lossPercent(lost, received uint64) float64 {
	if lost+received == 0 {
		return 0
	}
	return round2(float64(lost) * 100 / float64(lost+received))
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }
