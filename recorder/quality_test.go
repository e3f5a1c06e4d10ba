package recorder

import (
	"testing"
	"time"
)

// TestQualityFigures feeds streams with known impairments and checks the figures the
// manifest reports against what was done to the streams.
func TestQualityFigures(t *testing.T) {
	md := loadMedia(t)
	s := time.Second
	outage := [][2]time.Duration{{8 * s, 10 * s}}
	tests := []struct {
		name     string
		audio    streamSpec
		video    *streamSpec
		lose20th bool // the network loses every 20th packet of each track (5%)
		pauses   [][2]time.Duration
		stop     time.Duration
		check    func(t *testing.T, a TrackStats, v *TrackStats, sent map[int]int, got map[int]int)
	}{
		{
			name:     "5% loss and a 2 s outage",
			audio:    streamSpec{end: 20 * s, ssrc: 1, outages: outage},
			video:    &streamSpec{track: 1, end: 20 * s, ssrc: 2, outages: outage},
			lose20th: true,
			stop:     20 * s,
			check: func(t *testing.T, a TrackStats, v *TrackStats, sent, got map[int]int) {
				for i, tr := range []TrackStats{a, *v} {
					lost := uint64(sent[i] - got[i])
					if tr.PacketsLost != lost {
						t.Errorf("%s: packets_lost %d, the network lost %d", tr.ID, tr.PacketsLost, lost)
					}
					if want := 100 * float64(lost) / float64(sent[i]); tr.LossPercent < want-0.01 || tr.LossPercent > want+0.01 {
						t.Errorf("%s: loss_percent %.2f, want %.2f", tr.ID, tr.LossPercent, want)
					}
					within(t, tr.ID+" longest_gap_ms", time.Duration(tr.LongestGapMS)*time.Millisecond, 2*s, 40*time.Millisecond)
					if tr.PacketsReceived != uint64(got[i]) {
						t.Errorf("%s: packets_received %d, delivered %d", tr.ID, tr.PacketsReceived, got[i])
					}
				}
				if a.SilenceMS != 0 {
					t.Errorf("loss counted as silence: %d ms", a.SilenceMS)
				}
			},
		},
		{
			name:  "DTX is silence, not a gap",
			audio: streamSpec{end: 12 * s, ssrc: 1, gaps: [][2]time.Duration{{3 * s, 6 * s}, {8 * s, 8500 * time.Millisecond}}},
			stop:  12 * s,
			check: func(t *testing.T, a TrackStats, _ *TrackStats, _, _ map[int]int) {
				within(t, "silence_ms", time.Duration(a.SilenceMS)*time.Millisecond, 3500*time.Millisecond, 20*time.Millisecond)
				if a.LongestGapMS != 0 || a.PacketsLost != 0 || a.LossPercent != 0 {
					t.Errorf("DTX counted as loss: %+v", a)
				}
			},
		},
		{
			name:   "a pause is neither a gap nor loss",
			audio:  streamSpec{end: 10 * s, ssrc: 1},
			video:  &streamSpec{track: 1, end: 10 * s, ssrc: 2},
			pauses: [][2]time.Duration{{3 * s, 6 * s}},
			stop:   10 * s,
			check: func(t *testing.T, a TrackStats, v *TrackStats, _, _ map[int]int) {
				for _, tr := range []TrackStats{a, *v} {
					if tr.LongestGapMS != 0 || tr.PacketsLost != 0 || tr.SilenceMS != 0 {
						t.Errorf("%s: %+v", tr.ID, tr)
					}
				}
			},
		},
		{
			name:  "jitter",
			audio: streamSpec{end: 20 * s, ssrc: 1, jitter: 30 * time.Millisecond},
			stop:  20 * s,
			check: func(t *testing.T, a TrackStats, _ *TrackStats, _, _ map[int]int) {
				// Independent delays uniform in [0, 30 ms): E|D| = 10 ms, which the RFC 3550
				// estimator converges to.
				if a.JitterMS < 8 || a.JitterMS > 12 {
					t.Errorf("jitter_ms %.2f, want about 10", a.JitterMS)
				}
				if a.PacketsLost != 0 || a.Duplicates != 0 {
					t.Errorf("reordering counted as loss: %+v", a)
				}
			},
		},
		{
			name:  "no jitter",
			audio: streamSpec{end: 5 * s, ssrc: 1, delay: 40 * time.Millisecond},
			stop:  5 * s,
			check: func(t *testing.T, a TrackStats, _ *TrackStats, _, _ map[int]int) {
				if a.JitterMS != 0 || a.LongestGapMS != 0 || a.SilenceMS != 0 {
					t.Errorf("steady stream: %+v", a)
				}
			},
		},
		{
			name:  "first keyframe of a late camera",
			audio: streamSpec{end: 6 * s, ssrc: 1},
			video: &streamSpec{track: 1, start: 1500 * time.Millisecond, end: 6 * s, ssrc: 2, delay: 30 * time.Millisecond},
			stop:  6 * s,
			check: func(t *testing.T, _ TrackStats, v *TrackStats, _, _ map[int]int) {
				if v.FirstKeyframeMS == nil {
					t.Fatal("no first_keyframe_ms")
				}
				within(t, "first_keyframe_ms", time.Duration(*v.FirstKeyframeMS)*time.Millisecond, 1530*time.Millisecond, 10*time.Millisecond)
				if v.AVOffsetMS != nil {
					t.Errorf("av_offset_ms %d without any Sender Report", *v.AVOffsetMS)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := opusEvents(md, tc.audio)
			tracks := []TrackInfo{{ID: "mic", Codec: CodecOpus}}
			sent := map[int]int{0: countSent(md, tc.audio, CodecOpus)}
			if tc.video != nil {
				ev = append(ev, videoEvents(md, CodecVP8, *tc.video)...)
				tracks = append(tracks, TrackInfo{ID: "cam", Codec: CodecVP8})
				sent[1] = countSent(md, *tc.video, CodecVP8)
			}
			got := map[int]int{}
			for _, e := range ev {
				if !e.sr {
					got[e.track]++
				}
			}
			if tc.lose20th {
				var kept []event
				n := map[int]int{}
				for _, e := range ev {
					if !e.sr {
						n[e.track]++
						if n[e.track]%20 == 10 {
							got[e.track]--
							continue
						}
					}
					kept = append(kept, e)
				}
				ev = kept
			}
			_, m := runWithPauses(t, Config{}, newTestClock(), tracks, ev, tc.pauses, tc.stop)
			var v *TrackStats
			if len(m.Tracks) > 1 {
				v = &m.Tracks[1]
			}
			if m.Clock != ClockServer {
				t.Errorf("clock %q without Sender Reports", m.Clock)
			}
			tc.check(t, m.Tracks[0], v, sent, got)
		})
	}
}

// countSent counts the RTP packets a spec makes before any outage.
func countSent(md *media, s streamSpec, c Codec) int {
	s.outages, s.srEvery = nil, 0
	if c == CodecOpus {
		return len(opusEvents(md, s))
	}
	return len(videoEvents(md, c, s))
}

// TestSenderClock: a sender whose clock is an hour and 123 ms behind ours, reaching us
// 30 ms later, gives started_at/stopped_at on its clock within 50 ms.
func TestSenderClock(t *testing.T) {
	md := loadMedia(t)
	clock := newTestClock()
	base := clock.Now()
	senderStart := base.Add(-time.Hour + 123*time.Millisecond)
	a := streamSpec{end: 8 * time.Second, ssrc: 1, delay: 30 * time.Millisecond, jitter: 5 * time.Millisecond, srEvery: time.Second, srStart: 500 * time.Millisecond, ntpBase: senderStart}
	_, m := runEvents(t, Config{}, clock, []TrackInfo{{ID: "mic", Codec: CodecOpus}}, opusEvents(md, a), 8*time.Second)
	if m.Clock != ClockSender {
		t.Fatalf("clock %q, want sender", m.Clock)
	}
	within(t, "started_at", m.StartedAt.Sub(senderStart), 0, 50*time.Millisecond)
	within(t, "stopped_at", m.StoppedAt.Sub(senderStart), 8*time.Second, 50*time.Millisecond)
	if m.SenderClockOffsetMS == nil {
		t.Fatal("no sender_clock_offset_ms")
	}
	within(t, "sender_clock_offset_ms", time.Duration(*m.SenderClockOffsetMS)*time.Millisecond, -time.Hour+123*time.Millisecond, 50*time.Millisecond)

	// Without Sender Reports the times are the server's.
	a.srEvery = 0
	clock = newTestClock()
	_, m = runEvents(t, Config{}, clock, []TrackInfo{{ID: "mic", Codec: CodecOpus}}, opusEvents(md, a), 8*time.Second)
	if m.Clock != ClockServer || !m.StartedAt.Equal(base) || !m.StoppedAt.Equal(base.Add(8*time.Second)) || m.SenderClockOffsetMS != nil {
		t.Errorf("server clock: %s %v %v %v", m.Clock, m.StartedAt, m.StoppedAt, m.SenderClockOffsetMS)
	}
}

// TestAVOffsetMeasured: video reaches us 250 ms after the audio captured with it. Until
// the first Sender Reports (at 2 s) the file can only place both by arrival, so its first
// two seconds have video 250 ms late; the reported offset must say so and match the file.
// Reports from the first packets on keep the file, and the figure, in sync.
func TestAVOffsetMeasured(t *testing.T) {
	md := loadMedia(t)
	for _, tc := range []struct {
		name    string
		vDelay  time.Duration
		srStart time.Duration
		want    time.Duration
	}{
		{"video late, reports from 2 s", 270 * time.Millisecond, 2 * time.Second, 250 * time.Millisecond},
		{"video late, reports from the start", 270 * time.Millisecond, time.Millisecond, 250 * time.Millisecond},
		{"in sync", 20 * time.Millisecond, 2 * time.Second, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newTestClock()
			ntpBase := clock.Now().Add(-time.Hour)
			a := streamSpec{end: 6 * time.Second, ssrc: 1, delay: 20 * time.Millisecond, srEvery: time.Second, srStart: tc.srStart, ntpBase: ntpBase}
			v := streamSpec{track: 1, end: 6 * time.Second, ssrc: 2, delay: tc.vDelay, srEvery: time.Second, srStart: tc.srStart, ntpBase: ntpBase}
			ev := append(opusEvents(md, a), videoEvents(md, CodecVP8, v)...)
			_, m := runEvents(t, Config{}, clock, []TrackInfo{{ID: "mic", Codec: CodecOpus}, {ID: "cam", Codec: CodecVP8}}, ev, 6500*time.Millisecond)
			if m.Tracks[1].AVOffsetMS == nil {
				t.Fatal("no av_offset_ms")
			}
			got := time.Duration(*m.Tracks[1].AVOffsetMS) * time.Millisecond
			within(t, "av_offset_ms", got, tc.want, 20*time.Millisecond)
			if m.Tracks[0].AVOffsetMS != nil || m.Tracks[0].FirstKeyframeMS != nil {
				t.Error("audio track with video figures")
			}
			// Reality: the largest offset in the file between a video frame and the audio
			// captured with it.
			_, blocks := checkMKV(t, m.Path, "webm", []string{"A_OPUS", "V_VP8"}, 6500*time.Millisecond)
			var audioMS []int64
			for _, b := range blocks {
				if b.track == 1 {
					audioMS = append(audioMS, b.ms)
				}
			}
			var worst int64
			vi := 0
			for _, b := range blocks {
				if b.track != 2 {
					continue
				}
				capture := int64(vi * 1000 / 30)
				vi++
				ai := int(capture / 20)
				if ai >= len(audioMS) {
					break
				}
				if d := (b.ms - capture) - (audioMS[ai] - int64(ai*20)); abs64(d) > abs64(worst) {
					worst = d
				}
			}
			within(t, "largest offset in the file", time.Duration(worst)*time.Millisecond, got, 20*time.Millisecond)
		})
	}
}
