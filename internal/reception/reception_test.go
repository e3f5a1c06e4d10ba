package reception

import (
	"testing"
)

// pkt is one packet: its sequence number, timestamp and arrival (ms).
type pkt struct {
	seq uint16
	ts  uint32
	at  int64
}

// steady is n 20 ms Opus packets from sequence number first, skipping those for which
// drop is true.
func steady(first uint16, n int, drop func(i int) bool) []pkt {
	var out []pkt
	for i := range n {
		if drop != nil && drop(i) {
			continue
		}
		out = append(out, pkt{seq: first + uint16(i), ts: 1000 + uint32(i)*960, at: int64(i) * 20})
	}
	return out
}

func TestReport(t *testing.T) {
	const ms = int64(1e6)
	tests := []struct {
		name     string
		packets  []pkt
		lost     uint32
		fraction uint8
		lastSeq  uint32
		jitter   uint32
	}{
		{name: "in order", packets: steady(100, 100, nil), lastSeq: 199},
		{name: "every tenth lost", packets: steady(100, 100, func(i int) bool { return i%10 == 5 }), lost: 10, fraction: 25, lastSeq: 199},
		{name: "the last one lost is not known yet", packets: steady(100, 100, func(i int) bool { return i == 99 }), lastSeq: 198},
		{name: "wrapping", packets: steady(65500, 100, nil), lastSeq: 1<<16 | 63},
		// 198 arrives when 197 should, and 197 20 ms later: the transit differences are
		// 960, 1920 and 960 timestamp units, so the jitter goes 60, 176.25, 225.2.
		{name: "reordered", packets: func() []pkt {
			p := steady(100, 100, nil)
			p[97].seq, p[98].seq, p[97].ts, p[98].ts = p[98].seq, p[97].seq, p[98].ts, p[97].ts
			return p
		}(), lastSeq: 199, jitter: 225},
		// Three packets sent again 20, 40 and 60 ms after the last: the first is 89
		// packets late (transit difference 86400 units), the next two keep its spacing,
		// so the jitter goes 5400, 5062.5, 4746.1.
		{name: "repeated packets hide no loss", packets: func() []pkt {
			p := steady(100, 100, func(i int) bool { return i == 30 })
			last := p[len(p)-1].at
			for i, q := range []pkt{p[10], p[11], p[12]} {
				q.at = last + int64(i+1)*20
				p = append(p, q)
			}
			return p
		}(), lastSeq: 199, jitter: 4746},
		{name: "a stray far packet is ignored", packets: func() []pkt {
			p := steady(100, 100, nil)
			return append(append(p[:50:50], pkt{seq: 40000, ts: 1, at: 1000}), p[50:]...)
		}(), lastSeq: 199},
		{name: "a restart starts the counts again", packets: func() []pkt {
			p := steady(100, 50, nil)
			for _, q := range steady(30000, 50, func(i int) bool { return i == 20 }) {
				q.ts += 77777
				q.at += 1000
				p = append(p, q)
			}
			return p
		}(), lost: 1, fraction: 1 << 8 / 50, lastSeq: 30049},
		// Every transit difference is 10 ms (480 units): the jitter closes in on 480.
		{name: "arrivals 10 ms early and late", packets: func() []pkt {
			p := steady(100, 200, nil)
			for i := range p {
				if i%2 == 1 {
					p[i].at += 10
				}
			}
			return p
		}(), lastSeq: 299, jitter: 479},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(42, 48000)
			if _, ok := s.Report(0); ok {
				t.Fatal("a report before any packet")
			}
			for _, p := range tc.packets {
				s.Packet(p.seq, p.ts, 1e18+p.at*ms)
			}
			r, ok := s.Report(1e18 + 5000*ms)
			if !ok {
				t.Fatal("no report")
			}
			if r.SSRC != 42 || r.TotalLost != tc.lost || r.FractionLost != tc.fraction || r.LastSequenceNumber != tc.lastSeq {
				t.Errorf("report: ssrc %d, lost %d (fraction %d/256), last sequence number %d; want lost %d (%d/256), last %d",
					r.SSRC, r.TotalLost, r.FractionLost, r.LastSequenceNumber, tc.lost, tc.fraction, tc.lastSeq)
			}
			if r.Jitter != tc.jitter {
				t.Errorf("jitter %d, want %d", r.Jitter, tc.jitter)
			}
			if r.LastSenderReport != 0 || r.Delay != 0 {
				t.Errorf("LSR %d, DLSR %d without a Sender Report", r.LastSenderReport, r.Delay)
			}
		})
	}
}

// TestReportIntervals: the fraction lost is the loss since the previous report; the
// cumulative loss keeps counting.
func TestReportIntervals(t *testing.T) {
	s := New(1, 48000)
	all := steady(0, 300, func(i int) bool { return i >= 100 && i < 200 && i%4 == 0 })
	report := func(upTo uint16) (lost uint32, fraction uint8) {
		for len(all) > 0 && all[0].seq < upTo {
			s.Packet(all[0].seq, all[0].ts, all[0].at*1e6)
			all = all[1:]
		}
		r, _ := s.Report(0)
		return r.TotalLost, r.FractionLost
	}
	for _, want := range []struct {
		upTo     uint16
		lost     uint32
		fraction uint8
	}{{100, 0, 0}, {200, 25, 64}, {300, 25, 0}} {
		if lost, fraction := report(want.upTo); lost != want.lost || fraction != want.fraction {
			t.Errorf("up to %d: lost %d, fraction %d/256; want %d, %d/256", want.upTo, lost, fraction, want.lost, want.fraction)
		}
	}
}

// TestSenderReportEcho: the report echoes the middle of the last SR's NTP time and how
// long ago it came, in 1/65536 s.
func TestSenderReportEcho(t *testing.T) {
	s := New(1, 90000)
	s.Packet(1, 1, 1e18)
	s.SenderReport(0x1234_5678_9abc_def0, 1e18+100e6)
	r, _ := s.Report(1e18 + 600e6)
	if r.LastSenderReport != 0x5678_9abc || r.Delay != 32768 {
		t.Errorf("LSR %#x, DLSR %d; want 0x56789abc, 32768 (0.5 s)", r.LastSenderReport, r.Delay)
	}
}

// FuzzPacket: any sequence of packets makes a report within the field sizes.
func FuzzPacket(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 255, 255, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		s := New(1, 48000)
		at := int64(1e18)
		for len(b) >= 4 {
			s.Packet(uint16(b[0])<<8|uint16(b[1]), uint32(b[2])<<24|uint32(b[3]), at)
			at += int64(b[2]) * 1e6
			b = b[4:]
		}
		s.SenderReport(uint64(len(b)), at-1e9)
		if r, ok := s.Report(at); ok && (r.TotalLost > maxLost || r.Delay != 65536) {
			t.Errorf("report %+v: want cumulative loss within 24 bits and the SR 1 s ago", r)
		}
	})
}
