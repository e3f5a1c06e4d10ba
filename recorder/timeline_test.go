package recorder

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"
)

// TestTimelineStep feeds the timestamp stage packets in sequence order: 20 ms audio
// packets (48 kHz) arriving in real time, with the packets listed in jumps carrying other
// timestamps. Only a run of restartRun agreeing packets re-anchors.
func TestTimelineStep(t *testing.T) {
	const n = 40
	type jump struct {
		from, count int   // packets from..from+count-1
		by          int64 // their timestamps are shifted by this (48 kHz ticks)
	}
	nine := int64(-9 * 48000) // 9 s back: Firefox's re-sent probe packet
	tests := []struct {
		name    string
		jumps   []jump
		want    map[int]step // steps other than stepFits, by packet index
		restart int          // index of the packet whose run re-anchors (-1: none)
	}{
		{name: "steady", restart: -1},
		{name: "one packet 9 s back", jumps: []jump{{10, 1, nine}}, want: map[int]step{10: stepHold}, restart: -1},
		{name: "four packets 9 s back", jumps: []jump{{10, 4, nine}}, want: map[int]step{10: stepHold, 11: stepHold, 12: stepHold, 13: stepHold}, restart: -1},
		{name: "strays that disagree", jumps: []jump{{10, 1, nine}, {11, 1, 48000 * 600}, {12, 1, nine}},
			want: map[int]step{10: stepHold, 11: stepNewRun, 12: stepNewRun}, restart: -1},
		{name: "encoder restart +30 min", jumps: []jump{{20, n - 20, 48000 * 1800}},
			want: map[int]step{20: stepHold, 21: stepHold, 22: stepHold, 23: stepHold, 24: stepRestart}, restart: 20},
		{name: "encoder restart 60 s back", jumps: []jump{{20, n - 20, -48000 * 60}},
			want: map[int]step{20: stepHold, 21: stepHold, 22: stepHold, 23: stepHold, 24: stepRestart}, restart: 20},
		{name: "1 s late is no jump", jumps: []jump{{10, 1, -48000}}, restart: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tl := timeline{clock: 48000}
			const base = int64(1e12)
			var held []int
			restarted := false
			for i := range n {
				ts := uint32(1000 + 960*i)
				arrival := base + int64(i)*20e6
				wantAt := arrival
				for _, j := range tc.jumps {
					if i >= j.from && i < j.from+j.count {
						ts = uint32(int64(ts) + j.by)
						wantAt += j.by * 1e9 / 48000
					}
				}
				got := tl.step(ts, arrival)
				if want := tc.want[i]; got != want {
					t.Fatalf("packet %d: step %d, want %d", i, got, want)
				}
				switch got {
				case stepFits:
					held = held[:0]
				case stepNewRun:
					held = append(held[:0], i)
					continue
				case stepHold:
					held = append(held, i)
					continue
				case stepRestart:
					restarted = true
					if held[0] != tc.restart {
						t.Fatalf("re-anchored on packet %d, want %d", held[0], tc.restart)
					}
					// The run's first packet is placed at its own arrival.
					first := uint32(int64(1000+960*held[0]) + tc.jumps[0].by)
					if l := tl.local(first); l != base+int64(held[0])*20e6 {
						t.Fatalf("run's first packet at %d, want its arrival", l-base)
					}
				}
				// Every placed packet is where its timestamp puts it on the original
				// timing, whatever was held before; after a restart, at its arrival.
				if restarted {
					wantAt = arrival
				}
				if l := tl.local(ts); l != wantAt {
					t.Fatalf("packet %d placed at %.3f s, want %.3f s", i, float64(l-base)/1e9, float64(wantAt-base)/1e9)
				}
			}
		})
	}
}

// firefoxCall is 20 s of a Firefox call as rtmrec receives it: Opus audio, and VP8 video
// whose sender raises its resolution at 9.5 s and 19 s. At each step Firefox probes the
// bandwidth by re-sending one old packet (captured probeAge earlier) probeCount times over
// RTX; pion unwraps RTX, so the recorder sees the original sequence number, timestamp and
// payload again. With seqBack set the re-sent packet also carries a sequence number that
// far behind (a high-bitrate sender's 9 s).
func firefoxCall(t *testing.T, md *media, probeAge time.Duration, probeCount int, seqBack uint16, burst int) (ev []event, frames int) {
	t.Helper()
	const end = 20 * time.Second
	audio := opusEvents(md, streamSpec{end: end, ssrc: 1, tsBase: 5555})
	video := videoEvents(md, CodecVP8, streamSpec{track: 1, end: end, ssrc: 2, tsBase: 777777})
	ev = append(audio, video...)
	for _, step := range []time.Duration{9500 * time.Millisecond, 19 * time.Second} {
		// The first video packet captured probeAge before the step.
		var old []byte
		for _, e := range video {
			if !e.sr && e.at >= step-probeAge {
				old = e.pkt
				break
			}
		}
		var p rtp.Packet
		if err := p.Unmarshal(old); err != nil {
			t.Fatal(err)
		}
		for k := range probeCount {
			for b := range max(burst, 1) {
				q := p
				q.Payload = bytes.Clone(p.Payload)
				q.SequenceNumber = p.SequenceNumber - seqBack + uint16(b)
				pkt, err := q.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				ev = append(ev, event{at: step + time.Duration(k)*7*time.Millisecond + time.Duration(b)*100*time.Microsecond, track: 1, pkt: pkt})
			}
		}
	}
	frame := time.Second / 30
	return ev, int((end + frame - 1) / frame)
}

// TestFirefoxProbesLeaveTimeline: the sequence observed with Firefox 153 (issue 17). Before
// the fix, the re-sent packet's timestamp re-anchored the video track and every later frame
// moved 9 s forward (a 10 s call became a 19 s file).
func TestFirefoxProbesLeaveTimeline(t *testing.T) {
	md := loadMedia(t)
	tests := []struct {
		name     string
		age      time.Duration
		count    int
		seqBack  uint16
		burst    int
		wantDups uint64
	}{
		{name: "one packet 9 s old re-sent 10 times", age: 9 * time.Second, count: 10, wantDups: 20},
		{name: "re-sent 6 times", age: 9 * time.Second, count: 6, wantDups: 12},
		{name: "9 s old and 4000 sequence numbers back", age: 9 * time.Second, count: 11, seqBack: 4000, wantDups: 22},
		// Eight consecutive old packets back to back: a run, but the current stream is not quiet.
		{name: "a burst of 8 old packets 4000 back", age: 9 * time.Second, count: 2, seqBack: 4000, burst: 8, wantDups: 32},
		{name: "one packet 1.5 s old", age: 1500 * time.Millisecond, count: 10, wantDups: 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev, frames := firefoxCall(t, md, tc.age, tc.count, tc.seqBack, tc.burst)
			tracks := []TrackInfo{{ID: "mic", Kind: KindAudio, Codec: CodecOpus}, {ID: "cam", Kind: KindVideo, Codec: CodecVP8}}
			reg := prometheus.NewRegistry()
			_, m := runEvents(t, Config{Metrics: NewMetrics(reg)}, newTestClock(), tracks, ev, 20*time.Second)
			checkManifest(t, m, StateFinished)
			_, blocks := checkMKV(t, m.Path, "webm", []string{"A_OPUS", "V_VP8"}, 20*time.Second)
			v := m.Tracks[1]
			if v.Reanchors != 0 || m.Tracks[0].Reanchors != 0 || reanchorMetric(t, reg, "timestamp") != 0 {
				t.Errorf("re-anchors: audio %d, video %d; want 0", m.Tracks[0].Reanchors, v.Reanchors)
			}
			if v.Duplicates != tc.wantDups || v.FramesDropped != 0 || int(v.FramesWritten) != frames || v.PacketsLost != 0 {
				t.Errorf("video: %d duplicates (want %d), %d frames written (want %d), %d dropped, %d lost",
					v.Duplicates, tc.wantDups, v.FramesWritten, frames, v.FramesDropped, v.PacketsLost)
			}
			// Every video frame stays at its capture time.
			k := 0
			for _, b := range blocks {
				if b.track != 2 {
					continue
				}
				if want := int64(k) * 1000 / 30; b.ms < want-2 || b.ms > want+2 {
					t.Fatalf("video frame %d at %d ms, want %d", k, b.ms, want)
				}
				k++
			}
			checkFFmpeg(t, m.Path, 20*time.Second, 2)
		})
	}
}

// TestStreamRestartsReanchor: a sender that really restarts is followed: a timestamp jump
// that every later packet shares, new sequence numbers and timestamps on the same SSRC,
// or a new SSRC. The file keeps its length and plays.
func TestStreamRestartsReanchor(t *testing.T) {
	md := loadMedia(t)
	s := time.Second
	tests := []struct {
		name  string
		audio streamSpec
		video streamSpec
		cause string
	}{
		{name: "timestamps jump 30 min", audio: streamSpec{tsJumpAt: 8 * s}, video: streamSpec{tsJumpAt: 8 * s}, cause: "timestamp"},
		{name: "sequence numbers and timestamps restart", audio: streamSpec{restartAt: 8 * s}, video: streamSpec{restartAt: 8 * s}, cause: "timestamp"},
		{name: "new ssrc", audio: streamSpec{ssrcAt: 8 * s}, video: streamSpec{ssrcAt: 8 * s}, cause: "ssrc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, v := tc.audio, tc.video
			a.end, a.ssrc = 16*s, 1
			v.track, v.end, v.ssrc, v.tsBase = 1, 16*s, 10, 4242
			ev := append(opusEvents(md, a), videoEvents(md, CodecVP8, v)...)
			tracks := []TrackInfo{{ID: "mic", Kind: KindAudio, Codec: CodecOpus}, {ID: "cam", Kind: KindVideo, Codec: CodecVP8}}
			reg := prometheus.NewRegistry()
			_, m := runEvents(t, Config{Metrics: NewMetrics(reg)}, newTestClock(), tracks, ev, 16*s)
			_, blocks := checkMKV(t, m.Path, "webm", []string{"A_OPUS", "V_VP8"}, 16*s)
			for _, tr := range m.Tracks {
				if tr.Reanchors != 1 {
					t.Errorf("track %s: %d re-anchors, want 1", tr.ID, tr.Reanchors)
				}
			}
			if got := reanchorMetric(t, reg, tc.cause); got != 2 {
				t.Errorf("metric reanchors{cause=%q} = %v, want 2", tc.cause, got)
			}
			// Both tracks go on right after the restart, at the time they were sent.
			var after []int64
			for _, b := range blocks {
				if b.ms >= 8000 && b.ms < 9200 && !slices.Contains(after, int64(b.track)) {
					after = append(after, int64(b.track))
				}
			}
			if len(after) != 2 {
				t.Errorf("tracks with blocks in the second after the restart: %v", after)
			}
			checkFFmpeg(t, m.Path, 16*s, 2)
		})
	}
}

// reanchorMetric reads rtmrec_recorder_timeline_reanchors_total{cause} from a registry.
func reanchorMetric(t *testing.T, reg *prometheus.Registry, cause string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "rtmrec_recorder_timeline_reanchors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "cause" && l.GetValue() == cause {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
