package recorder

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
)

// media is a set of real encoded frames used to build RTP streams.
type media struct {
	opus []([]byte)
	vp8  [][]byte
	vp9  [][]byte
	h264 [][][]byte // access units as NAL lists
}

func loadMedia(t testing.TB) *media {
	t.Helper()
	m := &media{opus: oggPackets(t), vp8: ivfFrames(t)}
	f, err := os.Open(filepath.Join("testdata", "clip-vp9.ivf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	for {
		fr, _, err := r.ParseNextFrame()
		if err != nil {
			break
		}
		m.vp9 = append(m.vp9, bytes.Clone(fr))
	}
	hf, err := os.Open(filepath.Join("testdata", "clip.h264"))
	if err != nil {
		t.Fatal(err)
	}
	defer hf.Close()
	hr, err := h264reader.NewReader(hf)
	if err != nil {
		t.Fatal(err)
	}
	var au [][]byte
	for {
		nal, err := hr.NextNAL()
		if err != nil {
			break
		}
		au = append(au, bytes.Clone(nal.Data))
		if nal.UnitType == h264reader.NalUnitTypeCodedSliceIdr || nal.UnitType == h264reader.NalUnitTypeCodedSliceNonIdr {
			m.h264 = append(m.h264, au)
			au = nil
		}
	}
	if len(m.opus) < 100 || len(m.vp8) < 100 || len(m.vp9) < 60 || len(m.h264) < 60 {
		t.Fatalf("test media too short: %d %d %d %d", len(m.opus), len(m.vp8), len(m.vp9), len(m.h264))
	}
	return m
}

// audioSpec describes a synthetic audio stream: 20 ms packets from start to end, with
// optional gaps (DTX: no packets, timestamps advance) and impairments.
type streamSpec struct {
	track     int
	start     time.Duration // first capture time (relative to recording start)
	end       time.Duration
	delay     time.Duration // network delay added to arrival
	tsBase    uint32
	ssrc      uint32
	gaps      [][2]time.Duration // capture spans with nothing sent
	lossEvery int                // drop every Nth packet
	dupEvery  int                // duplicate every Nth packet (RTX-like re-send, late)
	swapEvery int                // swap every Nth packet with the next
	ssrcAt    time.Duration      // switch SSRC/timestamp base at this time (0: never)
	tsJumpAt  time.Duration      // jump timestamps by +30 min at this time (0: never)
	restartAt time.Duration      // same SSRC, new sequence numbers and timestamps (0: never)
	srEvery   time.Duration      // send SRs (sender NTP = capture time) this often (0: never)
	srStart   time.Duration      // the first SR follows the packet captured at this time
	ntpBase   time.Time
	outages   [][2]time.Duration // capture spans whose packets are sent but lost
	jitter    time.Duration      // extra delay, pseudo-random in [0, jitter), per packet
	// srNoise: each SR's NTP time is off the capture clock by a pseudo-random amount in
	// (-srNoise, srNoise), like a sender that stamps SRs from its send time under load.
	srNoise time.Duration
}

// srNTP is the NTP time an SR sent with the packet captured at c carries.
func (s streamSpec) srNTP(c time.Duration, rnd *uint64) uint64 {
	if s.srNoise > 0 {
		*rnd = *rnd*6364136223846793005 + 1442695040888963407
		c += time.Duration(*rnd>>33)%(2*s.srNoise) - s.srNoise
	}
	return ntpOf(s.ntpBase.Add(c))
}

// deliver times a packet captured at c (or drops it in an outage); rnd is the stream's
// deterministic jitter source.
func (s streamSpec) deliver(c time.Duration, rnd *uint64) (time.Duration, bool) {
	if inGaps(c, s.outages) {
		return 0, false
	}
	at := c + s.delay
	if s.jitter > 0 {
		*rnd = *rnd*6364136223846793005 + 1442695040888963407
		at += time.Duration(*rnd>>33) % s.jitter
	}
	return at, true
}

// sendSR reports whether an SR goes out with the packet captured at c.
func (s streamSpec) sendSR(c, last time.Duration) bool {
	return s.srEvery > 0 && c >= s.srStart && c-last >= s.srEvery
}

func inGaps(t time.Duration, gaps [][2]time.Duration) bool {
	for _, g := range gaps {
		if t >= g[0] && t < g[1] {
			return true
		}
	}
	return false
}

func ntpOf(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	sec := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return sec<<32 | frac
}

// impair applies loss, duplicates and swaps to a packet list (events already timed).
func impair(ev []event, s streamSpec) []event {
	var out []event
	for i := 0; i < len(ev); i++ {
		if s.lossEvery > 0 && i%s.lossEvery == s.lossEvery-1 {
			continue
		}
		if s.swapEvery > 0 && i%s.swapEvery == 0 && i+1 < len(ev) {
			a, b := ev[i], ev[i+1]
			a.at, b.at = b.at, a.at
			out = append(out, b, a)
			i++
			continue
		}
		out = append(out, ev[i])
		if s.dupEvery > 0 && i%s.dupEvery == 0 {
			d := ev[i]
			d.at += 30 * time.Millisecond
			out = append(out, d)
		}
	}
	return out
}

// jumps applies the spec's stream changes due at capture time c, for packets step apart.
func (rs *rtpStream) jumps(c, step time.Duration, s streamSpec, clock uint32) {
	at := func(t time.Duration) bool { return t > 0 && c >= t && c-t < step }
	if at(s.ssrcAt) {
		rs.ssrc++
		rs.ts += 0x12345678
		rs.seq += 10000
	}
	if at(s.tsJumpAt) {
		rs.ts += clock * 1800
	}
	if at(s.restartAt) {
		rs.ts += 0x7654321
		rs.seq += 20000
	}
}

func opusEvents(m *media, s streamSpec) []event {
	rs := &rtpStream{pt: 111, ssrc: s.ssrc, ts: s.tsBase}
	var ev []event
	var lastSR time.Duration = -time.Hour
	i := 0
	rnd := uint64(s.ssrc)
	srRnd := rnd ^ 0x5eed
	for c := s.start; c < s.end; c += 20 * time.Millisecond {
		rs.jumps(c, 20*time.Millisecond, s, 48000)
		if s.sendSR(c, lastSR) && s.srStart == 0 {
			lastSR = c
			ev = append(ev, event{at: c + s.delay, track: s.track, sr: true, ntp: s.srNTP(c, &srRnd), srTS: rs.ts})
		}
		if !inGaps(c, s.gaps) {
			p := m.opus[i%len(m.opus)]
			i++
			pkt := rs.packet(p, false)
			if at, ok := s.deliver(c, &rnd); ok {
				ev = append(ev, event{at: at, track: s.track, pkt: pkt})
			}
		}
		if s.sendSR(c, lastSR) && s.srStart > 0 {
			lastSR = c
			ev = append(ev, event{at: c + s.delay + time.Millisecond, track: s.track, sr: true, ntp: s.srNTP(c, &srRnd), srTS: rs.ts})
		}
		rs.ts += 960
	}
	return impair(ev, s)
}

// videoEvents sends frames at 30 fps; frame k of the clip at capture time start+k/30.
// Frames of clip index from first; codec decides the payloader.
func videoEvents(m *media, codec Codec, s streamSpec) []event {
	rs := &rtpStream{pt: 96, ssrc: s.ssrc, ts: s.tsBase}
	var ev []event
	var lastSR time.Duration = -time.Hour
	k := 0
	rnd := uint64(s.ssrc)
	srRnd := rnd ^ 0x5eed
	var vp9 codecs.VP9Payloader
	vp9.InitialPictureIDFn = func() uint16 { return 0 }
	h264 := &codecs.H264Payloader{}
	for c := s.start; c < s.end; c += time.Second / 30 {
		rs.jumps(c, time.Second/30, s, 90000)
		if s.sendSR(c, lastSR) && s.srStart == 0 {
			lastSR = c
			ev = append(ev, event{at: c + s.delay, track: s.track, sr: true, ntp: s.srNTP(c, &srRnd), srTS: rs.ts})
		}
		if !inGaps(c, s.gaps) {
			var pls [][]byte
			switch codec {
			case CodecVP8:
				pls = vp8Packets(m.vp8[k%len(m.vp8)], 1100)
			case CodecVP9:
				pls = vp9.Payload(1100, m.vp9[k%len(m.vp9)])
			case CodecH264:
				for _, nal := range m.h264[k%len(m.h264)] {
					annexb := append([]byte{0, 0, 0, 1}, nal...)
					pls = append(pls, h264.Payload(1100, annexb)...)
				}
			}
			for j, pl := range pls {
				pkt := rs.packet(pl, j == len(pls)-1)
				if at, ok := s.deliver(c, &rnd); ok {
					ev = append(ev, event{at: at + time.Duration(j)*100*time.Microsecond, track: s.track, pkt: pkt})
				}
			}
			k++
		}
		if s.sendSR(c, lastSR) && s.srStart > 0 {
			lastSR = c
			ev = append(ev, event{at: c + s.delay + time.Millisecond, track: s.track, sr: true, ntp: s.srNTP(c, &srRnd), srTS: rs.ts})
		}
		rs.ts += 3000
	}
	return impair(ev, s)
}
