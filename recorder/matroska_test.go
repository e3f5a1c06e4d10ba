package recorder

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"
)

// checkMKV parses a finished file back and checks structure, per-track monotonic times,
// Duration and Cues pointing at clusters.
func checkMKV(t *testing.T, path string, docType string, codecs []string, wantDur time.Duration) (*mkvFile, []blockInfo) {
	t.Helper()
	f := parseMKVFile(t, path)
	if f.Header.DocType != docType {
		t.Errorf("doctype %q, want %q", f.Header.DocType, docType)
	}
	var got []string
	for _, e := range f.Segment.Tracks.TrackEntry {
		got = append(got, e.CodecID)
		if e.TrackType == 1 && (e.Video == nil || e.Video.PixelWidth < 100) {
			t.Errorf("video track %d without a real size: %+v", e.TrackNumber, e.Video)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(codecs) {
		t.Errorf("codecs %v, want %v", got, codecs)
	}
	within(t, "Duration", time.Duration(f.Segment.Info.Duration*float64(time.Millisecond)), wantDur, 100*time.Millisecond)
	if f.Segment.Cues == nil || len(f.Segment.Cues.CuePoint) == 0 {
		t.Fatal("no Cues")
	}
	seeks := 3 // Info, Tracks, Cues
	if len(mkvChaptersOf(t, path)) > 0 {
		seeks++
	}
	if f.Segment.SeekHead == nil || len(f.Segment.SeekHead.Seek) != seeks {
		t.Errorf("SeekHead %+v", f.Segment.SeekHead)
	}
	blocks := mkvBlocks(f)
	last := map[uint64]int64{}
	for _, b := range blocks {
		if l, ok := last[b.track]; ok && b.ms < l {
			t.Fatalf("track %d goes back: %d after %d", b.track, b.ms, l)
		}
		last[b.track] = b.ms
	}
	// Every video track starts on a keyframe.
	seen := map[uint64]bool{}
	for _, b := range blocks {
		if !seen[b.track] {
			seen[b.track] = true
			e := f.Segment.Tracks.TrackEntry[b.track-1]
			if e.TrackType == 1 && !b.key {
				t.Errorf("video track %d starts without a keyframe", b.track)
			}
		}
	}
	checkCues(t, path, f)
	return f, blocks
}

// checkCues verifies each CueClusterPosition lands on a Cluster whose timecode matches.
func checkCues(t *testing.T, path string, f *mkvFile) {
	t.Helper()
	clusters := clusterOffsets(t, path)
	for _, c := range f.Segment.Cues.CuePoint {
		pos := c.CueTrackPositions[0].CueClusterPosition
		tc, ok := clusters[pos]
		if !ok {
			t.Fatalf("cue at %d ms points at %d, not a cluster", c.CueTime, pos)
		}
		if tc > c.CueTime {
			t.Errorf("cue time %d before its cluster %d", c.CueTime, tc)
		}
	}
}

// clusterOffsets scans the top level of the file: segment-relative offset -> timecode.
func clusterOffsets(t *testing.T, path string) map[uint64]uint64 {
	t.Helper()
	b := mustRead(t, path)
	out := map[uint64]uint64{}
	_, n, _ := readVint(b, true)
	size, m, _ := readVint(b[n:], false)
	i := n + m + int(size)
	_, n, _ = readVint(b[i:], true) // Segment
	_, m, _ = readVint(b[i+n:], false)
	seg := i + n + m
	for i = seg; i < len(b); {
		id, n, ok := readVint(b[i:], true)
		size, m, ok2 := readVint(b[i+n:], false)
		if !ok || !ok2 {
			t.Fatalf("bad element at %d", i)
		}
		if id == idCluster {
			tcid, k, _ := readVint(b[i+n+m:], true)
			if tcid != idTimecode {
				t.Fatalf("cluster without timecode first")
			}
			l, k2, _ := readVint(b[i+n+m+k:], false)
			var tc uint64
			for _, x := range b[i+n+m+k+k2 : i+n+m+k+k2+int(l)] {
				tc = tc<<8 | uint64(x)
			}
			out[uint64(i-seg)] = tc
		}
		i += n + m + int(size)
	}
	return out
}

func TestWebMRecording(t *testing.T) {
	md := loadMedia(t)
	s := time.Second
	tests := []struct {
		name    string
		codec   Codec
		format  Format
		audio   streamSpec
		video   streamSpec
		stop    time.Duration
		pause   [][2]time.Duration
		mode    PauseMode
		wantDur time.Duration
		ffmpeg  bool
		check   func(t *testing.T, m *Manifest, blocks []blockInfo)
	}{
		{name: "vp8 steady", codec: CodecVP8, audio: streamSpec{end: 20 * s, ssrc: 1}, video: streamSpec{track: 1, end: 20 * s, ssrc: 2}, stop: 20 * s, wantDur: 20 * s, ffmpeg: true,
			check: func(t *testing.T, m *Manifest, blocks []blockInfo) {
				if v := m.Tracks[1]; v.Width != 320 || v.Height != 240 || (v.FramesWritten != 600 && v.FramesWritten != 601) {
					t.Errorf("video stats %+v", v)
				}
			}},
		{name: "vp9", codec: CodecVP9, audio: streamSpec{end: 6 * s, ssrc: 1}, video: streamSpec{track: 1, end: 6 * s, ssrc: 2}, stop: 6 * s, wantDur: 6 * s, ffmpeg: true,
			check: func(t *testing.T, m *Manifest, blocks []blockInfo) {
				if v := m.Tracks[1]; v.Width != 320 || v.Height != 240 || v.FramesWritten < 170 {
					t.Errorf("video stats %+v", v)
				}
			}},
		{name: "h264 mkv", codec: CodecH264, format: FormatMKV, audio: streamSpec{end: 6 * s, ssrc: 1}, video: streamSpec{track: 1, end: 6 * s, ssrc: 2}, stop: 6 * s, wantDur: 6 * s, ffmpeg: true,
			check: func(t *testing.T, m *Manifest, blocks []blockInfo) {
				if v := m.Tracks[1]; v.Width != 320 || v.Height != 240 || (v.FramesWritten != 180 && v.FramesWritten != 181) {
					t.Errorf("video stats %+v", v)
				}
			}},
		{name: "video loss waits for keyframe", codec: CodecVP8, audio: streamSpec{end: 10 * s, ssrc: 1}, video: streamSpec{track: 1, end: 10 * s, ssrc: 2, lossEvery: 97, dupEvery: 13, swapEvery: 11}, stop: 10 * s, wantDur: 10 * s, ffmpeg: true,
			check: func(t *testing.T, m *Manifest, blocks []blockInfo) {
				v := m.Tracks[1]
				if v.FramesDropped == 0 || v.FramesWritten == 0 || v.FramesWritten >= 300 || v.Duplicates == 0 {
					t.Errorf("video stats %+v", v)
				}
			}},
		{name: "late video start on keyframe", codec: CodecVP8, audio: streamSpec{end: 10 * s, ssrc: 1}, video: streamSpec{track: 1, start: 3 * s, end: 10 * s, ssrc: 2}, stop: 10 * s, wantDur: 10 * s, ffmpeg: true,
			check: func(t *testing.T, m *Manifest, blocks []blockInfo) {
				for _, b := range blocks {
					if b.track == 2 {
						within(t, "first video block", time.Duration(b.ms)*time.Millisecond, 3*s, 40*time.Millisecond)
						return
					}
				}
				t.Error("no video")
			}},
		{name: "pause silence with video", codec: CodecVP8, audio: streamSpec{end: 12 * s, ssrc: 1}, video: streamSpec{track: 1, end: 12 * s, ssrc: 2}, stop: 12 * s, pause: [][2]time.Duration{{4 * s, 6500 * time.Millisecond}}, wantDur: 12 * s, ffmpeg: true,
			check: func(t *testing.T, m *Manifest, blocks []blockInfo) {
				for _, b := range blocks {
					if b.ms > 4050 && b.ms < 6500 {
						t.Fatalf("block at %d ms inside the pause", b.ms)
					}
				}
			}},
		{name: "pause skip with video", codec: CodecVP8, audio: streamSpec{end: 12 * s, ssrc: 1}, video: streamSpec{track: 1, end: 12 * s, ssrc: 2}, stop: 12 * s, pause: [][2]time.Duration{{4 * s, 6500 * time.Millisecond}}, mode: PauseSkip, wantDur: 9500 * time.Millisecond, ffmpeg: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := append(opusEvents(md, tc.audio), videoEvents(md, tc.codec, tc.video)...)
			tracks := []TrackInfo{{ID: "mic", Kind: KindAudio, Codec: CodecOpus}, {ID: "cam", Kind: KindVideo, Codec: tc.codec}}
			var mu sync.Mutex
			var pli []string
			cfg := Config{Format: tc.format, PauseMode: tc.mode, RequestKeyframe: func(id string) { mu.Lock(); pli = append(pli, id); mu.Unlock() }}
			rec, m := runWithPauses(t, cfg, newTestClock(), tracks, ev, tc.pause, tc.stop)
			docType, codecID := "webm", map[Codec]string{CodecVP8: "V_VP8", CodecVP9: "V_VP9", CodecH264: "V_MPEG4/ISO/AVC"}[tc.codec]
			if rec.Format() == FormatMKV {
				docType = "matroska"
			}
			checkManifest(t, m, StateFinished)
			_, blocks := checkMKV(t, m.Path, docType, []string{"A_OPUS", codecID}, tc.wantDur)
			mu.Lock()
			if len(pli) == 0 {
				t.Error("no keyframe requested")
			}
			mu.Unlock()
			if tc.check != nil {
				tc.check(t, m, blocks)
			}
			if tc.ffmpeg {
				checkFFmpeg(t, m.Path, tc.wantDur, 2)
			}
		})
	}
}

// TestAVSync: video arrives 250 ms later than audio captured at the same instant; Sender
// Reports carry the capture clock, so the file aligns them.
func TestAVSync(t *testing.T) {
	md := loadMedia(t)
	clock := newTestClock()
	ntpBase := clock.Now().Add(-time.Hour) // the sender's clock differs from ours
	a := streamSpec{end: 10 * time.Second, ssrc: 1, delay: 20 * time.Millisecond, srEvery: time.Second, ntpBase: ntpBase, tsBase: 777}
	v := streamSpec{track: 1, end: 10 * time.Second, ssrc: 2, delay: 270 * time.Millisecond, srEvery: time.Second, ntpBase: ntpBase, tsBase: 99999}
	ev := append(opusEvents(md, a), videoEvents(md, CodecVP8, v)...)
	tracks := []TrackInfo{{ID: "mic", Codec: CodecOpus}, {ID: "cam", Codec: CodecVP8}}
	_, m := runEvents(t, Config{}, clock, tracks, ev, 10*time.Second+300*time.Millisecond)
	_, blocks := checkMKV(t, m.Path, "webm", []string{"A_OPUS", "V_VP8"}, 10*time.Second+300*time.Millisecond)
	// Audio packet i was captured at i*20 ms; video frame k at k/30 s. Compare the offset of
	// each track's blocks from its capture time.
	var aOff, vOff []int64
	ai, vi := 0, 0
	for _, b := range blocks {
		if b.track == 1 {
			aOff = append(aOff, b.ms-int64(ai*20))
			ai++
		} else {
			vOff = append(vOff, b.ms-int64(vi*1000/30))
			vi++
		}
	}
	// After the first SR of each track (sent with its first packet) both share one clock.
	da, dv := aOff[len(aOff)/2], vOff[len(vOff)/2]
	if d := dv - da; d > 20 || d < -20 {
		t.Errorf("video is %d ms off audio (audio offset %d, video offset %d)", d, da, dv)
	}
}

// TestResolutionChange: keyframes with a new size keep the file valid; the header keeps
// the first size and every frame is written.
func TestResolutionChange(t *testing.T) {
	clock := newTestClock()
	vs := &rtpStream{pt: 96, ssrc: 5, ts: 1}
	var ev []event
	sizes := [][2]int{{640, 480}, {320, 180}, {1280, 720}}
	for k := 0; k < 90; k++ {
		sz := sizes[k/30]
		f := vp8Frame(k%30 == 0, sz[0], sz[1], 3000)
		pls := vp8Packets(f, 1000)
		for j, pl := range pls {
			ev = append(ev, event{at: time.Duration(k) * time.Second / 30, track: 0, pkt: vs.packet(pl, j == len(pls)-1)})
		}
		vs.ts += 3000
	}
	_, m := runEvents(t, Config{Format: FormatWebM}, clock, []TrackInfo{{ID: "cam", Codec: CodecVP8}}, ev, 3*time.Second)
	f, blocks := checkMKV(t, m.Path, "webm", []string{"V_VP8"}, 3*time.Second)
	if v := f.Segment.Tracks.TrackEntry[0].Video; v.PixelWidth != 640 || v.PixelHeight != 480 {
		t.Errorf("header size %dx%d", v.PixelWidth, v.PixelHeight)
	}
	if len(blocks) != 90 || m.Tracks[0].FramesWritten != 90 {
		t.Errorf("%d blocks", len(blocks))
	}
	keys := 0
	for _, b := range blocks {
		if b.key {
			keys++
		}
	}
	if keys != 3 || len(f.Segment.Cues.CuePoint) != 3 {
		t.Errorf("%d keyframes, %d cues", keys, len(f.Segment.Cues.CuePoint))
	}
}

// TestLateTracks: tracks added during the recording are recorded (Matroska: Tracks rewritten
// in place; Ogg: a chained link).
func TestLateTracks(t *testing.T) {
	md := loadMedia(t)
	for _, format := range []Format{FormatWebM, FormatOgg} {
		t.Run(string(format), func(t *testing.T) {
			clock := newTestClock()
			base := clock.Now()
			hint := []TrackInfo{{ID: "mic", Codec: CodecOpus}}
			if format == FormatWebM {
				hint = append(hint, TrackInfo{ID: "cam", Codec: CodecVP8})
			}
			rec, err := Start(Config{Dir: t.TempDir(), RecordingID: "late", Format: format, Tracks: hint, Now: clock.Now, QueueSize: 1 << 16})
			if err != nil {
				t.Fatal(err)
			}
			mic, err := rec.AddTrack(hint[0])
			if err != nil {
				t.Fatal(err)
			}
			feed := func(tr *Track, ev []event) {
				for _, e := range ev {
					clock.Set(base.Add(e.at))
					tr.WriteRTP(e.pkt, base.Add(e.at))
				}
			}
			feed(mic, opusEvents(md, streamSpec{end: 4 * time.Second, ssrc: 1}))
			late := TrackInfo{ID: "mic2", Codec: CodecOpus}
			if format == FormatWebM {
				late = TrackInfo{ID: "screen", Codec: CodecVP8}
			}
			tr2, err := rec.AddTrack(late)
			if err != nil {
				t.Fatal(err)
			}
			if format == FormatWebM {
				feed(tr2, videoEvents(md, CodecVP8, streamSpec{start: 4 * time.Second, end: 8 * time.Second, ssrc: 3}))
			} else {
				feed(tr2, opusEvents(md, streamSpec{start: 4 * time.Second, end: 8 * time.Second, ssrc: 3}))
			}
			clock.Set(base.Add(8 * time.Second))
			m, err := rec.Stop()
			if err != nil {
				t.Fatal(err)
			}
			if format == FormatWebM {
				_, blocks := checkMKV(t, m.Path, "webm", []string{"A_OPUS", "V_VP8"}, 8*time.Second)
				n := 0
				for _, b := range blocks {
					if b.track == 2 {
						n++
					}
				}
				if n != 120 && n != 121 {
					t.Errorf("%d blocks of the late track", n)
				}
				checkFFmpeg(t, m.Path, 8*time.Second, 2)
			} else {
				streams := parseOggFile(t, m.Path)
				// link 1: mic; link 2: mic + mic2
				if len(streams) != 3 {
					t.Fatalf("%d streams: %+v %+v", len(streams), streams[0], streams[1])
				}
				ids := ""
				for _, s := range streams {
					if !s.eos || !s.granulesOK {
						t.Errorf("stream %+v", s)
					}
					ids += s.trackID + " "
				}
				if ids != "mic mic mic2 " {
					t.Errorf("streams %q", ids)
				}
				within(t, "mic2 end", streams[2].duration(), 8*time.Second, 100*time.Millisecond)
				within(t, "mic end", streams[1].duration(), 8*time.Second, 100*time.Millisecond)
				// ffmpeg does not read a chained link that adds streams (see ogg.go).
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := readFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOggTrackAddedEarly: an audio track negotiated when the recording starts but whose
// first packet comes later joins the first group, which every player reads: its headers
// were written at the start.
func TestOggTrackAddedEarly(t *testing.T) {
	md := loadMedia(t)
	ev := append(opusEvents(md, streamSpec{end: 6 * time.Second, ssrc: 1}),
		opusEvents(md, streamSpec{track: 1, start: 1500 * time.Millisecond, end: 6 * time.Second, ssrc: 2})...)
	clock := newTestClock()
	base := clock.Now()
	rec, err := Start(Config{Dir: t.TempDir(), RecordingID: "early", Now: clock.Now, QueueSize: 1 << 16,
		Tracks: []TrackInfo{{ID: "a", Codec: CodecOpus}, {ID: "b", Codec: CodecOpus}}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := rec.AddTrack(TrackInfo{ID: "a", Codec: CodecOpus})
	var b *Track
	sortEvents(ev)
	for _, e := range ev {
		clock.Set(base.Add(e.at))
		if e.track == 1 {
			if b == nil {
				if b, err = rec.AddTrack(TrackInfo{ID: "b", Codec: CodecOpus}); err != nil {
					t.Fatal(err)
				}
			}
			b.WriteRTP(e.pkt, base.Add(e.at))
		} else {
			a.WriteRTP(e.pkt, base.Add(e.at))
		}
	}
	clock.Set(base.Add(6 * time.Second))
	m, err := rec.Stop()
	if err != nil {
		t.Fatal(err)
	}
	streams := parseOggFile(t, m.Path)
	if len(streams) != 2 || streams[0].trackID != "a" || streams[1].trackID != "b" {
		t.Fatalf("streams %+v", streams)
	}
	for _, s := range streams {
		within(t, "duration", s.duration(), 6*time.Second, 100*time.Millisecond)
	}
	checkFFmpeg(t, m.Path, 6*time.Second, 2)
}

// TestBlockTimestampsStrictlyIncrease: frames whose RTP times fall within
// one millisecond (a sender's burst at the end of a call) still get
// strictly increasing block times, which decoders require.
func TestBlockTimestampsStrictlyIncrease(t *testing.T) {
	clock := newTestClock()
	vs := &rtpStream{pt: 96, ssrc: 9, ts: 1}
	var ev []event
	for k := range 40 {
		pls := vp8Packets(vp8Frame(k == 0, 320, 240, 500), 1200)
		for j, pl := range pls {
			ev = append(ev, event{at: time.Duration(k) * 50 * time.Millisecond, track: 0, pkt: vs.packet(pl, j == len(pls)-1)})
		}
		if k%10 == 5 {
			vs.ts += 45 // the next frame is 0.5 ms later in RTP time
		} else {
			vs.ts += 4500
		}
	}
	_, m := runEvents(t, Config{Format: FormatWebM}, clock, []TrackInfo{{ID: "cam", Codec: CodecVP8}}, ev, 2100*time.Millisecond)
	_, blocks := checkMKV(t, m.Path, "webm", []string{"V_VP8"}, 2100*time.Millisecond)
	if len(blocks) != 40 {
		t.Fatalf("%d blocks, want 40", len(blocks))
	}
	for i := 1; i < len(blocks); i++ {
		if blocks[i].ms <= blocks[i-1].ms {
			t.Fatalf("block %d at %d ms after block at %d ms", i, blocks[i].ms, blocks[i-1].ms)
		}
	}
}

// TestStoppedBeforeAnyMedia: a Matroska recording that received nothing is
// still a file players open (one silent Opus frame) when it has audio, and
// ErrNoMedia when there is nothing playable at all; repair says the same.
func TestStoppedBeforeAnyMedia(t *testing.T) {
	tests := []struct {
		name   string
		tracks []TrackInfo
		empty  bool
	}{
		{"audio and video", []TrackInfo{{ID: "mic", Codec: CodecOpus}, {ID: "cam", Codec: CodecVP8}}, false},
		{"video only", []TrackInfo{{ID: "cam", Codec: CodecVP8}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := Start(Config{Dir: t.TempDir(), RecordingID: "nothing", Tracks: tt.tracks})
			if err != nil {
				t.Fatal(err)
			}
			for _, tr := range tt.tracks {
				if _, err := rec.AddTrack(tr); err != nil {
					t.Fatal(err)
				}
			}
			m, err := rec.Stop()
			if tt.empty {
				if !errors.Is(err, ErrNoMedia) {
					t.Fatalf("Stop = %v, want ErrNoMedia", err)
				}
				m.State = StateRecording
				if err := Repair(m); !errors.Is(err, ErrNoMedia) {
					t.Fatalf("Repair = %v, want ErrNoMedia", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out := ffmpegDecode(t, m.Path); out != "" {
				t.Fatalf("ffmpeg: %s", out)
			}
			m.State = StateRecording
			if err := Repair(m); err != nil {
				t.Fatalf("repair of an empty recording: %v", err)
			}
			if out := ffmpegDecode(t, m.Path); out != "" {
				t.Fatalf("ffmpeg after repair: %s", out)
			}
		})
	}
}

// TestNoisySenderReports: a sender whose Sender Reports map its RTP clock to NTP with tens
// of milliseconds of error (pion under load stamps them from its send time) must not make
// audio frames overlap or a track's timestamps go back: the file decodes cleanly, audio
// stays continuous, and audio and video stay on one clock.
func TestNoisySenderReports(t *testing.T) {
	md := loadMedia(t)
	for _, noise := range []time.Duration{10 * time.Millisecond, 60 * time.Millisecond} {
		t.Run(noise.String(), func(t *testing.T) {
			clock := newTestClock()
			ntpBase := clock.Now().Add(-time.Hour)
			const dur = 30 * time.Second
			a := streamSpec{end: dur, ssrc: 1, delay: 20 * time.Millisecond, jitter: 15 * time.Millisecond, srEvery: time.Second, ntpBase: ntpBase, tsBase: 777, srNoise: noise}
			v := streamSpec{track: 1, end: dur, ssrc: 2, delay: 60 * time.Millisecond, jitter: 15 * time.Millisecond, srEvery: time.Second, ntpBase: ntpBase, tsBase: 99999, srNoise: noise}
			ev := append(opusEvents(md, a), videoEvents(md, CodecVP8, v)...)
			tracks := []TrackInfo{{ID: "mic", Codec: CodecOpus}, {ID: "cam", Codec: CodecVP8}}
			_, m := runEvents(t, Config{}, clock, tracks, ev, dur+100*time.Millisecond)
			_, blocks := checkMKV(t, m.Path, "webm", []string{"A_OPUS", "V_VP8"}, dur)
			checkFFmpeg(t, m.Path, dur, 2)
			var aOff, vOff []int64
			last := map[uint64]int64{1: -1 << 62, 2: -1 << 62}
			overlaps := 0
			for _, b := range blocks {
				if b.ms <= last[b.track] {
					t.Errorf("track %d: block at %d ms after one at %d ms", b.track, b.ms, last[b.track])
				}
				if b.track == 1 {
					if b.ms < last[1]+19 {
						overlaps++
					}
					aOff = append(aOff, b.ms-int64(len(aOff)*20))
				} else {
					vOff = append(vOff, b.ms-int64(len(vOff)*1000/30))
				}
				last[b.track] = b.ms
			}
			if overlaps > 0 {
				t.Errorf("%d audio frames start before the previous 20 ms frame ended", overlaps)
			}
			if len(aOff) < int(dur/(20*time.Millisecond))-5 {
				t.Errorf("%d audio frames written of %d sent", len(aOff), dur/(20*time.Millisecond))
			}
			sort.Slice(aOff, func(i, j int) bool { return aOff[i] < aOff[j] })
			sort.Slice(vOff, func(i, j int) bool { return vOff[i] < vOff[j] })
			// Each track's first SR may be off by up to the noise, and later ones steer it
			// back at srSlewNS per report.
			d := vOff[len(vOff)/2] - aOff[len(aOff)/2]
			if tol := max(40, 3*noise.Milliseconds()/2); d > tol || d < -tol {
				t.Errorf("video is %d ms off audio, want within ±%d", d, tol)
			}
			if m.Tracks[0].Reanchors != 0 || m.Tracks[1].Reanchors != 0 {
				t.Errorf("re-anchors: audio %d, video %d; want none", m.Tracks[0].Reanchors, m.Tracks[1].Reanchors)
			}
			t.Logf("video %d ms off audio", d)
		})
	}
}
