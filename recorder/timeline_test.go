package recorder

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rtmrec/rtmrec/internal/testlog"
)

// TestTimelineStep feeds the timestamp stage 20 ms audio packets (48 kHz) in sequence
// order. Each case says when packet i was captured and when it arrived (ms); only a run of
// restartRun packets that agree on new timing re-anchors, and every packet is placed at
// its capture time on the timing in force.
func TestTimelineStep(t *testing.T) {
	const n = 40
	steady := func(i int) (int64, int64) { return int64(20 * i), int64(20 * i) }
	shifted := func(from, count int, by int64) func(int) (int64, int64) {
		return func(i int) (int64, int64) {
			c, a := steady(i)
			if i >= from && i < from+count {
				c += by
			}
			return c, a
		}
	}
	holds := func(from, count int, last step) map[int]step {
		m := map[int]step{}
		for i := from; i < from+count; i++ {
			m[i] = stepHold
		}
		if last != stepHold {
			m[from+count-1] = last
		}
		return m
	}
	tests := []struct {
		name    string
		packet  func(i int) (captured, arrived int64)
		want    map[int]step // steps other than stepFits, by packet index
		restart int          // the run's first packet, where the track re-anchors (-1: none)
	}{
		{name: "steady", packet: steady, restart: -1},
		// Firefox's probe: an old packet re-sent (a new sequence number here, to test
		// this stage alone; the sequence stage drops true re-sends before).
		{name: "one packet 9 s back", packet: shifted(10, 1, -9000), want: holds(10, 1, stepHold), restart: -1},
		{name: "four packets 9 s back", packet: shifted(10, 4, -9000), want: holds(10, 4, stepHold), restart: -1},
		{name: "strays that disagree", packet: func(i int) (int64, int64) {
			c, a := steady(i)
			return c + map[int]int64{10: -9000, 11: 600000, 12: -9000}[i], a
		}, want: map[int]step{10: stepHold, 11: stepNewRun, 12: stepNewRun}, restart: -1},
		{name: "1 s late is no jump", packet: shifted(10, 1, -1000), restart: -1},
		{name: "encoder restart +30 min", packet: shifted(20, n, 1800000), want: holds(20, restartRun, stepRestart), restart: 20},
		{name: "encoder restart 60 s back", packet: shifted(20, n, -60000), want: holds(20, restartRun, stepRestart), restart: 20},
		// The sender froze for 8 s: packets 10-14, captured before, arrive after the
		// freeze, right before packet 15, the first captured after it.
		{name: "sender froze 8 s", packet: func(i int) (int64, int64) {
			switch {
			case i >= 15:
				return int64(20*i + 8000), int64(20*i + 8000)
			case i >= 10:
				return int64(20 * i), int64(8290 + i)
			}
			return steady(i)
		}, restart: -1},
		// DTX: no packets for 10 s of silence, then timestamps and arrivals go on together.
		{name: "10 s of silence", packet: func(i int) (int64, int64) {
			if i >= 10 {
				return int64(20*i + 10000), int64(20*i + 10000)
			}
			return steady(i)
		}, restart: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tl := timeline{clock: 48000}
			const base, ts0 = int64(1e12), uint32(4_000_000_000) // timestamps wrap on the way
			var held []int
			var offset int64 // the timing in force: arrival - capture of the packet it is anchored on
			for i := range n {
				c, a := tc.packet(i)
				ts, arrival := ts0+uint32(c*48), base+a*1e6
				got := tl.step(ts, arrival)
				if want := tc.want[i]; got != want {
					t.Fatalf("packet %d: step %d, want %d", i, got, want)
				}
				switch got {
				case stepNewRun:
					held = append(held[:0], i)
					continue
				case stepHold:
					held = append(held, i)
					continue
				case stepFits:
					held = held[:0]
				case stepRestart:
					if held[0] != tc.restart {
						t.Fatalf("re-anchored on packet %d, want %d", held[0], tc.restart)
					}
					c0, a0 := tc.packet(held[0])
					offset = a0 - c0
				}
				if i == 0 {
					offset = a - c
				}
				if l, want := tl.local(ts), base+(c+offset)*1e6; l != want {
					t.Fatalf("packet %d placed at %.3f s, want %.3f s", i, float64(l-base)/1e9, float64(want-base)/1e9)
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

// TestSenderReportSteering: the first Sender Report anchors a track outright; later ones
// steer it by at most srSlewNS each, so their noise cannot shake it, while a drift is
// followed, a real change of timing (srRetimeNS or more, in two SRs in a row) re-anchors,
// and a lone stray SR moves nothing.
func TestSenderReportSteering(t *testing.T) {
	const ms = int64(1e6)
	tests := []struct {
		name string
		// srOff[k] is how far SR k (sent 1 s after the previous, with the packet captured
		// then) places that packet from its true capture time, ms.
		srOff []int64
		// want[k] is how far the track then places that packet, ms; moved[k] what SR k
		// reports as a re-anchor.
		want  []int64
		moved []int64
	}{
		{name: "exact", srOff: []int64{0, 0, 0}, want: []int64{0, 0, 0}, moved: []int64{0, 0, 0}},
		{name: "first SR anchors outright", srOff: []int64{40, 40, 40}, want: []int64{40, 40, 40}, moved: []int64{0, 0, 0}},
		{name: "noise is slewed", srOff: []int64{0, 60, -60, 30, -2}, want: []int64{0, 5, 0, 5, 0}, moved: []int64{0, 0, 0, 0, 0}},
		{name: "drift is followed", srOff: []int64{0, 1, 2, 3, 4}, want: []int64{0, 1, 2, 3, 4}, moved: []int64{0, 0, 0, 0, 0}},
		{name: "a slow change is followed at the slew", srOff: []int64{0, 100, 100, 100}, want: []int64{0, 5, 10, 15}, moved: []int64{0, 0, 0, 0}},
		{name: "a stall re-anchors on the second SR", srOff: []int64{0, 0, 800, 800, 800}, want: []int64{0, 0, 0, 800, 800}, moved: []int64{0, 0, 0, 800, 0}},
		{name: "a clock step back re-anchors on the second SR", srOff: []int64{0, -300, -320, -320}, want: []int64{0, 0, -320, -320}, moved: []int64{0, 0, -320, 0}},
		{name: "one stray SR is ignored", srOff: []int64{0, -320, 0, 0}, want: []int64{0, 0, 0, 0}, moved: []int64{0, 0, 0, 0}},
		{name: "strays that disagree are ignored", srOff: []int64{0, 400, -400, 400, 2}, want: []int64{0, 0, 0, 0, 2}, moved: []int64{0, 0, 0, 0, 0}},
		{name: "a stray between slews", srOff: []int64{0, 20, 900, 20}, want: []int64{0, 5, 5, 10}, moved: []int64{0, 0, 0, 0}},
		{name: "just under the re-anchor is slewed", srOff: []int64{0, 249}, want: []int64{0, 5}, moved: []int64{0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const base = int64(1_700_000_000) * 1e9
			tl := timeline{clock: 48000}
			tl.step(1000, base+20*ms) // arrival-anchored, 20 ms after capture
			for k, off := range tc.srOff {
				ts := uint32(1000 + 48000*k)
				capture := base + int64(k)*1000*ms
				if k > 0 {
					tl.step(ts, capture+20*ms)
				}
				if got := tl.senderReport(ts, capture+off*ms); got != tc.moved[k]*ms {
					t.Errorf("SR %d: moved %d ms, want %d", k, got/ms, tc.moved[k])
				}
				if got := (tl.local(ts) - capture) / ms; got != tc.want[k] {
					t.Errorf("SR %d: packet placed %d ms from its capture, want %d", k, got, tc.want[k])
				}
			}
		})
	}
}

// TestReanchorLinesAreRateLimited: a sender whose clock keeps moving (its Sender Reports
// seconds off, as an overloaded sender's are) re-anchors its track again and again. The
// manifest counts every re-anchor; the log says so once, then at most once a minute, with
// how many it did not log in between.
func TestReanchorLinesAreRateLimited(t *testing.T) {
	md := loadMedia(t)
	clock := newTestClock()
	const dur = 200 * time.Second
	a := streamSpec{end: dur, ssrc: 1, delay: 20 * time.Millisecond, srEvery: time.Second, ntpBase: clock.Now().Add(-time.Hour), srNoise: 2 * time.Second}
	var logs testlog.Buffer
	cfg := Config{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}
	_, m := runEvents(t, cfg, clock, []TrackInfo{{ID: "mic", Kind: KindAudio, Codec: CodecOpus}}, opusEvents(md, a), dur)
	reanchors := m.Tracks[0].Reanchors
	var lines, accounted uint64
	for _, line := range strings.Split(logs.String(), "\n") {
		var rec struct {
			Msg       string `json:"msg"`
			NotLogged uint64 `json:"reanchors_not_logged"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || !strings.HasPrefix(rec.Msg, "track timeline re-anchored") {
			continue
		}
		lines++
		accounted += 1 + rec.NotLogged
	}
	// 200 s of recording: the first line, then one a minute at most.
	if reanchors < 10 || lines == 0 || lines > 4 || accounted > reanchors {
		t.Fatalf("%d re-anchors, %d lines accounting for %d; want many re-anchors, 1 to 4 lines, none counted twice", reanchors, lines, accounted)
	}
	if streams := parseOggFile(t, m.Path); len(streams) != 1 || !streams[0].granulesOK {
		t.Fatalf("the file does not parse back as one Ogg stream with sound granules")
	}
}
