// Package reception keeps the reception statistics of one received RTP stream and builds
// the report block a receiver report carries for it (RFC 3550 §6.4.1; the algorithms of
// its appendices A.1, A.3 and A.8).
//
// It exists so that the goroutine that already reads a stream can report on it: pion's
// receiver-report interceptor runs a goroutine of its own in every connection, which at a
// thousand recorded calls is a thousand goroutines that only wake once a second.
package reception

import (
	"sync"

	"github.com/pion/rtcp"
)

const (
	// maxDropout and maxMisorder bound the sequence numbers that belong to the stream
	// (RFC 3550 A.1): up to maxDropout ahead is loss, up to maxMisorder behind is a late
	// or repeated packet; anything farther is a stray, or a restart when the next packet
	// follows it.
	maxDropout  = 3000
	maxMisorder = 100
	maxLost     = 1<<23 - 1 // cumulative loss is a signed 24-bit field
)

// Stream is one stream's statistics. Packet and Report belong to the goroutine that reads
// the stream; SenderReport may come from any other.
type Stream struct {
	ssrc  uint32
	clock float64 // timestamp units per second

	started  bool
	maxSeq   int64 // extended highest sequence number received
	baseSeq  int64
	badSeq   int64 // a stray's successor: if it comes next, the stream restarted
	received int64
	// expectedPrior and receivedPrior are the counts at the last report, for its
	// fraction lost.
	expectedPrior, receivedPrior int64

	lastTS      uint32
	lastArrival int64   // unix ns
	jitter      float64 // timestamp units

	srMu  sync.Mutex
	lsr   uint32 // middle 32 bits of the last Sender Report's NTP time
	lsrAt int64  // when it arrived (unix ns); 0: none yet
}

// New returns the statistics of the stream with the given SSRC and RTP clock rate (Hz).
func New(ssrc, clockRate uint32) *Stream {
	return &Stream{ssrc: ssrc, clock: float64(clockRate), badSeq: -1}
}

// Packet counts a packet with sequence number seq and timestamp ts, received at arrival
// (unix ns).
func (s *Stream) Packet(seq uint16, ts uint32, arrival int64) {
	if !s.started {
		s.restart(seq)
		s.started = true
	} else {
		d := int64(int16(seq - uint16(s.maxSeq)))
		switch {
		case d > 0 && d < maxDropout:
			s.maxSeq += d
			s.updateJitter(ts, arrival)
		case d <= 0 && d > -maxMisorder:
			// late or repeated: counted, as RFC 3550 does
			s.updateJitter(ts, arrival)
		case int64(seq) == s.badSeq:
			// Two packets in a row far from the stream: the sender restarted.
			s.restart(seq)
		default:
			s.badSeq = int64(seq + 1)
			return
		}
	}
	s.received++
	s.lastTS, s.lastArrival = ts, arrival
}

// updateJitter follows the interarrival jitter (A.8): how much the spacing of arrivals
// differs from the spacing of timestamps, smoothed over 16 packets.
func (s *Stream) updateJitter(ts uint32, arrival int64) {
	d := float64(arrival-s.lastArrival)*s.clock/1e9 - float64(int32(ts-s.lastTS))
	if d < 0 {
		d = -d
	}
	s.jitter += (d - s.jitter) / 16
}

func (s *Stream) restart(seq uint16) {
	ext := s.maxSeq&^0xffff + int64(seq)
	if s.started && ext <= s.maxSeq {
		ext += 1 << 16 // keep the extended number going up across a restart
	}
	s.maxSeq, s.baseSeq, s.badSeq = ext, ext, -1
	s.received, s.expectedPrior, s.receivedPrior = 0, 0, 0
}

// SenderReport notes a Sender Report of the stream (its NTP time) received at arrival
// (unix ns), which the next report acknowledges. Safe from any goroutine.
func (s *Stream) SenderReport(ntp uint64, arrival int64) {
	s.srMu.Lock()
	s.lsr, s.lsrAt = uint32(ntp>>16), arrival
	s.srMu.Unlock()
}

// Report builds the stream's report block at now (unix ns) and starts the next interval;
// ok is false before the first packet.
func (s *Stream) Report(now int64) (block rtcp.ReceptionReport, ok bool) {
	if !s.started {
		return block, false
	}
	expected := s.maxSeq - s.baseSeq + 1
	lost := min(max(expected-s.received, 0), maxLost)
	expInterval, recvInterval := expected-s.expectedPrior, s.received-s.receivedPrior
	s.expectedPrior, s.receivedPrior = expected, s.received
	var fraction uint8
	if lostInterval := expInterval - recvInterval; expInterval > 0 && lostInterval > 0 {
		fraction = uint8(min(lostInterval<<8/expInterval, 255))
	}
	block = rtcp.ReceptionReport{
		SSRC:               s.ssrc,
		FractionLost:       fraction,
		TotalLost:          uint32(lost),
		LastSequenceNumber: uint32(s.maxSeq),
		Jitter:             uint32(s.jitter),
	}
	s.srMu.Lock()
	if s.lsrAt != 0 {
		block.LastSenderReport = s.lsr
		block.Delay = uint32(max(now-s.lsrAt, 0) * 65536 / 1e9)
	}
	s.srMu.Unlock()
	return block, true
}
