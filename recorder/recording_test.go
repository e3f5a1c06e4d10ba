package recorder

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestResolveFormat(t *testing.T) {
	a := TrackInfo{ID: "a", Kind: KindAudio, Codec: CodecOpus}
	v8 := TrackInfo{ID: "v", Kind: KindVideo, Codec: CodecVP8}
	h := TrackInfo{ID: "h", Kind: KindVideo, Codec: CodecH264}
	tests := []struct {
		name    string
		f       Format
		tracks  []TrackInfo
		want    Format
		wantErr bool
	}{
		{"auto audio", FormatAuto, []TrackInfo{a}, FormatOgg, false},
		{"auto empty", "", nil, FormatOgg, false},
		{"auto vp8", FormatAuto, []TrackInfo{a, v8}, FormatWebM, false},
		{"auto h264", FormatAuto, []TrackInfo{a, v8, h}, FormatMKV, false},
		{"ogg video", FormatOgg, []TrackInfo{a, v8}, "", true},
		{"webm h264", FormatWebM, []TrackInfo{h}, "", true},
		{"webm audio", FormatWebM, []TrackInfo{a}, FormatWebM, false},
		{"mkv anything", FormatMKV, []TrackInfo{a, v8, h}, FormatMKV, false},
		{"bogus", "avi", nil, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveFormat(tc.f, tc.tracks)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("ResolveFormat = %q, %v; want %q, err %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	for in, want := range map[string]Format{"": FormatAuto, "AUTO": FormatAuto, "ogg": FormatOgg, "WebM": FormatWebM, "mkv": FormatMKV} {
		if got, err := ParseFormat(in); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseFormat("mp4"); err == nil {
		t.Error("ParseFormat(mp4) accepted")
	}
	for in, want := range map[string]Codec{"audio/opus": CodecOpus, "video/VP8": CodecVP8, "VIDEO/vp9": CodecVP9, "video/H264": CodecH264} {
		if got, ok := CodecFromMime(in); !ok || got != want {
			t.Errorf("CodecFromMime(%q) = %q, %v", in, got, ok)
		}
	}
	if _, ok := CodecFromMime("video/AV1"); ok {
		t.Error("AV1 accepted")
	}
	if ContentType(FormatOgg) != "audio/ogg" || ContentType(FormatWebM) != "video/webm" || ContentType(FormatMKV) != "video/x-matroska" {
		t.Error("content types")
	}
}

func within(t *testing.T, what string, got, want, tol time.Duration) {
	t.Helper()
	if d := got - want; d > tol || d < -tol {
		t.Errorf("%s = %v, want %v ±%v", what, got, want, tol)
	}
}

func checkManifest(t *testing.T, m *Manifest, state string) {
	t.Helper()
	if m.State != state {
		t.Errorf("state %q, want %q", m.State, state)
	}
	b, err := os.ReadFile(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if m.SHA256 != hex.EncodeToString(sum[:]) || m.SizeBytes != int64(len(b)) {
		t.Errorf("manifest size/sha256 %d %s do not match the file (%d bytes)", m.SizeBytes, m.SHA256, len(b))
	}
}

func TestOggTimeline(t *testing.T) {
	md := loadMedia(t)
	s60 := 60 * time.Second
	tests := []struct {
		name    string
		specs   []streamSpec
		stop    time.Duration
		pause   [][2]time.Duration
		mode    PauseMode
		wantDur time.Duration
		check   func(t *testing.T, m *Manifest)
	}{
		{name: "steady 60s", specs: []streamSpec{{end: s60, ssrc: 1, tsBase: 1234}}, stop: s60, wantDur: s60},
		{name: "dtx and loss keep length", specs: []streamSpec{{end: s60, ssrc: 1, gaps: [][2]time.Duration{{10 * time.Second, 25 * time.Second}}, lossEvery: 10}}, stop: s60, wantDur: s60,
			check: func(t *testing.T, m *Manifest) {
				if m.Tracks[0].PacketsLost == 0 {
					t.Error("loss not counted")
				}
			}},
		{name: "reorder and duplicates", specs: []streamSpec{{end: 20 * time.Second, ssrc: 1, swapEvery: 7, dupEvery: 5}}, stop: 20 * time.Second, wantDur: 20 * time.Second,
			check: func(t *testing.T, m *Manifest) {
				if m.Tracks[0].Duplicates == 0 || m.Tracks[0].PacketsLost != 0 {
					t.Errorf("duplicates %d lost %d", m.Tracks[0].Duplicates, m.Tracks[0].PacketsLost)
				}
			}},
		{name: "timestamp wrap", specs: []streamSpec{{end: 20 * time.Second, ssrc: 1, tsBase: math.MaxUint32 - 48000*5}}, stop: 20 * time.Second, wantDur: 20 * time.Second},
		{name: "ssrc change", specs: []streamSpec{{end: 20 * time.Second, ssrc: 1, ssrcAt: 8 * time.Second}}, stop: 20 * time.Second, wantDur: 20 * time.Second},
		{name: "timestamp jump", specs: []streamSpec{{end: 20 * time.Second, ssrc: 1, tsJumpAt: 8 * time.Second}}, stop: 20 * time.Second, wantDur: 20 * time.Second},
		{name: "late start", specs: []streamSpec{{start: 3 * time.Second, end: 10 * time.Second, ssrc: 1}}, stop: 10 * time.Second, wantDur: 10 * time.Second},
		{name: "pause silence", specs: []streamSpec{{end: 20 * time.Second, ssrc: 1}}, stop: 20 * time.Second, pause: [][2]time.Duration{{5 * time.Second, 9 * time.Second}}, wantDur: 20 * time.Second,
			check: func(t *testing.T, m *Manifest) {
				if len(m.Pauses) != 1 || m.Pauses[0].StartMS != 5000 || m.Pauses[0].EndMS != 9000 || m.Pauses[0].EndedAt == nil {
					t.Errorf("pauses %+v", m.Pauses)
				}
			}},
		{name: "pause skip", specs: []streamSpec{{end: 20 * time.Second, ssrc: 1}}, stop: 20 * time.Second, pause: [][2]time.Duration{{5 * time.Second, 9 * time.Second}}, mode: PauseSkip, wantDur: 16 * time.Second,
			check: func(t *testing.T, m *Manifest) {
				if len(m.Pauses) != 1 || m.Pauses[0].StartMS != 5000 || m.Pauses[0].EndMS != 5000 {
					t.Errorf("pauses %+v", m.Pauses)
				}
			}},
		{name: "two audio tracks", specs: []streamSpec{{end: 15 * time.Second, ssrc: 1}, {track: 1, start: 2 * time.Second, end: 15 * time.Second, ssrc: 2, delay: 40 * time.Millisecond}}, stop: 15 * time.Second, wantDur: 15 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ev []event
			var tracks []TrackInfo
			for _, s := range tc.specs {
				ev = append(ev, opusEvents(md, s)...)
				tracks = append(tracks, TrackInfo{ID: "mic" + strconv.Itoa(s.track), Kind: KindAudio, Codec: CodecOpus})
			}
			clock := newTestClock()
			rec, m := runWithPauses(t, Config{PauseMode: tc.mode}, clock, tracks, ev, tc.pause, tc.stop)
			if rec.Format() != FormatOgg {
				t.Fatalf("format %s", rec.Format())
			}
			checkManifest(t, m, StateFinished)
			within(t, "manifest duration", time.Duration(m.DurationMS)*time.Millisecond, tc.wantDur, 100*time.Millisecond)
			streams := parseOggFile(t, m.Path)
			if len(streams) != len(tracks) {
				t.Fatalf("%d streams, want %d", len(streams), len(tracks))
			}
			for i, s := range streams {
				if !s.eos || !s.granulesOK || s.preSkip != oggPreSkip {
					t.Errorf("stream %d: eos %v granules monotonic %v preskip %d", i, s.eos, s.granulesOK, s.preSkip)
				}
				if s.trackID != tracks[i].ID {
					t.Errorf("stream %d track id %q", i, s.trackID)
				}
				within(t, "stream duration", s.duration(), tc.wantDur, 100*time.Millisecond)
				// Granules must agree with the packets actually in the stream.
				within(t, "packet durations", time.Duration(s.samples)*time.Second/48000, s.duration()+oggPreSkip*time.Second/48000, 3*time.Millisecond)
			}
			if tc.check != nil {
				tc.check(t, m)
			}
			if _, err := os.Stat(m.Path); err == nil && tc.name == "steady 60s" {
				checkFFmpeg(t, m.Path, tc.wantDur, 1)
			}
		})
	}
}

// runWithPauses feeds events and pauses/resumes at the given wall-clock offsets.
func runWithPauses(t *testing.T, cfg Config, clock *testClock, tracks []TrackInfo, ev []event, pauses [][2]time.Duration, stop time.Duration) (*Recording, *Manifest) {
	t.Helper()
	for _, p := range pauses {
		ev = append(ev, event{at: p[0], track: -1}, event{at: p[1], track: -2})
	}
	return runEvents(t, cfg, clock, tracks, ev, stop)
}

func checkFFmpeg(t *testing.T, path string, wantDur time.Duration, streams int) {
	t.Helper()
	if out := ffmpegDecode(t, path); out != "" {
		t.Errorf("ffmpeg decode of %s reported:\n%s", path, out)
	}
	p := ffprobe(t, path)
	if len(p.Streams) != streams {
		t.Errorf("ffprobe: %d streams, want %d", len(p.Streams), streams)
	}
	d, err := strconv.ParseFloat(p.Format.Duration, 64)
	if err != nil {
		t.Fatalf("ffprobe duration %q", p.Format.Duration)
	}
	within(t, "ffprobe duration", time.Duration(d*float64(time.Second)), wantDur, 150*time.Millisecond)
}

func TestManifestJSON(t *testing.T) {
	md := loadMedia(t)
	clock := newTestClock()
	dir := t.TempDir()
	cfg := Config{Dir: dir, RecordingID: "r-42", SessionID: "s1", ClientID: "c1", Identity: "alice", Now: clock.Now,
		Tracks: []TrackInfo{{ID: "a", Codec: CodecOpus}}}
	rec, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m0 := rec.Manifest()
	if m0.State != StateRecording || m0.File != "r-42.ogg" || len(m0.Tracks) != 1 || m0.Tracks[0].ID != "a" {
		t.Fatalf("initial manifest %+v", m0)
	}
	tr, err := rec.AddTrack(TrackInfo{ID: "a", Codec: CodecOpus})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.AddTrack(TrackInfo{ID: "v", Codec: CodecVP8}); err == nil {
		t.Error("video track accepted by an ogg recording")
	}
	for _, e := range opusEvents(md, streamSpec{end: 2 * time.Second, ssrc: 9}) {
		tr.WriteRTP(e.pkt, clock.Now().Add(e.at))
	}
	rec.AddAuditEvent(AuditEvent{Time: clock.Now(), Kind: "supervisor_joined", SessionID: "s1", Identity: "boss"})
	first, err1 := rec.Pause()
	again, err2 := rec.Pause()
	if !first || again || err1 != nil || err2 != nil || !rec.Paused() || !rec.Resume() || rec.Resume() {
		t.Error("pause/resume return values")
	}
	clock.Set(clock.Now().Add(2 * time.Second))
	m, err := rec.Stop()
	if err != nil {
		t.Fatal(err)
	}
	m2, err2 := rec.Stop()
	if m2 != m || err2 != nil {
		t.Error("Stop is not idempotent")
	}
	tr.WriteRTP([]byte{0x80, 0, 0, 1}, clock.Now()) // after Stop: ignored, no panic
	if _, err := rec.AddTrack(TrackInfo{ID: "b", Codec: CodecOpus}); err == nil {
		t.Error("AddTrack after Stop accepted")
	}
	checkManifest(t, m, StateFinished)
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"recording_id", "session_id", "client_id", "identity", "format", "content_type", "file", "state", "started_at", "stopped_at", "duration_ms", "size_bytes", "sha256", "tracks", "pauses", "audit"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("manifest lacks %q", k)
		}
	}
	if len(m.Pauses) != 1 || len(m.Audit) != 1 || m.Tracks[0].PacketsReceived != 100 || m.Tracks[0].FramesWritten != 100 {
		t.Errorf("manifest %+v", m)
	}
}
