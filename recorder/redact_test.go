package recorder

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// toneRecording records the 1 kHz tone (and the camera clip for WebM) for dur, with the
// given pauses, and returns its manifest.
func toneRecording(t testing.TB, format Format, dur time.Duration, pauses [][2]time.Duration) *Manifest {
	t.Helper()
	md := loadMedia(t)
	ev := opusEvents(md, streamSpec{end: dur, ssrc: 1})
	tracks := []TrackInfo{{ID: "mic", Codec: CodecOpus}}
	if format != FormatOgg {
		ev = append(ev, videoEvents(md, CodecVP8, streamSpec{track: 1, end: dur, ssrc: 2})...)
		tracks = append(tracks, TrackInfo{ID: "cam", Codec: CodecVP8})
	}
	for _, p := range pauses {
		ev = append(ev, event{at: p[0], track: -1}, event{at: p[1], track: -2})
	}
	_, m := runEvents(t, Config{Format: format}, newTestClock(), tracks, ev, dur)
	return m
}

// pcmWindows decodes the first audio stream to 48 kHz mono and returns, per 100 ms
// window, its RMS level (dBFS) and the frequency its zero crossings give.
func pcmWindows(t *testing.T, path string) (level, freq []float64) {
	t.Helper()
	bin := requireTool(t, "ffmpeg")
	out, err := exec.Command(bin, "-v", "error", "-i", path, "-map", "0:a:0", "-f", "s16le", "-ac", "1", "-ar", "48000", "-").Output()
	if err != nil {
		t.Fatalf("ffmpeg decode %s: %v", path, err)
	}
	const win = 4800
	for i := 0; i+2*win <= len(out); i += 2 * win {
		var sum float64
		crossings := 0
		prev := int16(binary.LittleEndian.Uint16(out[i:]))
		for j := 0; j < win; j++ {
			v := int16(binary.LittleEndian.Uint16(out[i+2*j:]))
			sum += float64(v) * float64(v)
			if (v >= 0) != (prev >= 0) {
				crossings++
			}
			prev = v
		}
		level = append(level, 10*math.Log10(sum/win/(32768*32768)+1e-20))
		freq = append(freq, float64(crossings)/2/0.1)
	}
	return level, freq
}

// TestRedact: the tone recording redacted over 2 s decodes cleanly, has no tone (digital
// silence) inside the span and the tone outside, keeps its duration, has no video frame
// in the span (and resumes on a keyframe), seeks, and shows the span as a chapter.
func TestRedact(t *testing.T) {
	s := time.Second
	from, to := 4*s, 6*s
	for _, format := range []Format{FormatOgg, FormatWebM} {
		t.Run(string(format), func(t *testing.T) {
			m := toneRecording(t, format, 10*s, [][2]time.Duration{{8 * s, 8500 * time.Millisecond}})
			dst := filepath.Join(t.TempDir(), "redacted."+format.Ext())
			res, err := Redact(m.Path, dst, from, to)
			if err != nil {
				t.Fatal(err)
			}
			if res.Format != format || res.AudioPackets < 100 || res.Duration.Round(100*time.Millisecond) != 10*s || res.SilencedFrom > from || res.SilencedFrom < from-20*time.Millisecond ||
				res.SilencedTo < to || res.SilencedTo > to+20*time.Millisecond {
				t.Errorf("result %+v", res)
			}
			streams := 1
			if format == FormatWebM {
				streams = 2
			}
			checkFFmpeg(t, dst, 10*s, streams)
			if a, b := ffprobe(t, m.Path).Format.Duration, ffprobe(t, dst).Format.Duration; a != b {
				t.Errorf("duration %s, was %s", b, a)
			}

			level, freq := pcmWindows(t, dst)
			before, _ := pcmWindows(t, m.Path)
			for i := range level {
				at := time.Duration(i) * 100 * time.Millisecond
				switch {
				case at >= from+20*time.Millisecond && at+100*time.Millisecond <= to:
					if level[i] > -90 {
						t.Errorf("%v: %.1f dBFS inside the redacted span (%.1f before)", at, level[i], before[i])
					}
					if before[i] < -30 {
						t.Fatalf("%v: the original has no tone there (%.1f dBFS)", at, before[i])
					}
				case at >= 500*time.Millisecond && at+100*time.Millisecond <= from-100*time.Millisecond,
					at >= to+200*time.Millisecond && at+100*time.Millisecond <= 8*s:
					if level[i] < -30 || freq[i] < 980 || freq[i] > 1020 {
						t.Errorf("%v: %.1f dBFS at %.0f Hz outside the span, want the 1 kHz tone", at, level[i], freq[i])
					}
				}
			}

			chapters, tags := ffprobeMarks(t, dst)
			var titles []string
			for _, c := range chapters {
				titles = append(titles, c.Title+"@"+strconv.FormatFloat(c.Start, 'f', 1, 64))
			}
			if got := strings.Join(titles, " "); !strings.Contains(got, "redacted@4.0") || !strings.Contains(got, "paused@8.0") {
				t.Errorf("chapters %s", got)
			}
			if format == FormatOgg {
				if tags["RTMREC_REDACTED"] != "4000-6000" || tags["RTMREC_PAUSE"] != "8000-8500" || tags["RTMREC_TRACK_ID"] != "mic" {
					t.Errorf("tags %v", tags)
				}
				return
			}
			_, blocks := checkMKV(t, dst, "webm", []string{"A_OPUS", "V_VP8"}, 10*s)
			resumed := false
			for _, b := range blocks {
				if b.track != 2 {
					continue
				}
				if b.ms >= from.Milliseconds() && b.ms < to.Milliseconds() {
					t.Fatalf("a video frame at %d ms, inside the span", b.ms)
				}
				if b.ms >= to.Milliseconds() && !resumed {
					resumed = true
					if !b.key || b.ms > 7000 {
						t.Errorf("video resumes at %d ms, keyframe %v", b.ms, b.key)
					}
				}
			}
			if !resumed || res.VideoFrames < 60 {
				t.Errorf("video resumed %v, %d frames dropped", resumed, res.VideoFrames)
			}
			// Seeking into and past the span decodes cleanly.
			for _, ss := range []string{"4.5", "6.5", "9"} {
				out, _ := exec.Command("ffmpeg", "-v", "error", "-xerror", "-ss", ss, "-i", dst, "-t", "1", "-enc_time_base", "-1", "-f", "null", "-").CombinedOutput()
				if len(out) > 0 {
					t.Errorf("seek to %s: %s", ss, out)
				}
			}
		})
	}
}

// TestRedactTwice: a second redaction keeps the first one's mark.
func TestRedactTwice(t *testing.T) {
	m := toneRecording(t, FormatOgg, 6*time.Second, nil)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.ogg"), filepath.Join(dir, "b.ogg")
	if _, err := Redact(m.Path, a, time.Second, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := Redact(a, b, 3*time.Second, 4*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, st := range parseOggFile(t, b) {
		marks := marksFromComments(st.comments)
		if len(marks) != 2 || marks[0] != (fileMark{1000, 2000, markRedacted}) || marks[1] != (fileMark{3000, 4000, markRedacted}) {
			t.Errorf("marks %+v", marks)
		}
	}
}

func TestRedactRefuses(t *testing.T) {
	m := toneRecording(t, FormatWebM, 3*time.Second, nil)
	dir := t.TempDir()
	full := mustRead(t, m.Path)
	cut := filepath.Join(dir, "cut.webm")
	if err := os.WriteFile(cut, full[:len(full)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.ogg")
	if err := os.WriteFile(garbage, []byte("OggS but not really a page"), 0o600); err != nil {
		t.Fatal(err)
	}
	exists := filepath.Join(dir, "exists.webm")
	if err := os.WriteFile(exists, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, src, dst string
		from, to       time.Duration
		want           string
	}{
		{"empty span", m.Path, filepath.Join(dir, "o1.webm"), time.Second, time.Second, "empty"},
		{"negative span", m.Path, filepath.Join(dir, "o2.webm"), -time.Second, time.Second, "negative"},
		{"truncated file", cut, filepath.Join(dir, "o3.webm"), 0, time.Second, "damaged"},
		{"not media", garbage, filepath.Join(dir, "o4.ogg"), 0, time.Second, "ogg page 0"},
		{"output exists", m.Path, exists, 0, time.Second, "already exists"},
		{"no input", filepath.Join(dir, "nope.webm"), filepath.Join(dir, "o5.webm"), 0, time.Second, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Redact(tc.src, tc.dst, tc.from, tc.to)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if tc.dst != exists {
				if _, err := os.Stat(tc.dst); err == nil {
					t.Error("output left behind")
				}
			}
		})
	}
	if names, _ := filepath.Glob(filepath.Join(dir, ".*")); len(names) != 0 {
		t.Errorf("temporary files left: %v", names)
	}
}

// FuzzRedact: Redact of arbitrary bytes never panics, and what it produces parses.
func FuzzRedact(f *testing.F) {
	f.Add([]byte("OggS"), uint16(0), uint16(1000))
	f.Add([]byte{0x1a, 0x45, 0xdf, 0xa3, 0x80, 0x18, 0x53, 0x80, 0x67, 0xff}, uint16(0), uint16(10))
	for _, name := range []string{"tone.ogg"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b[:min(len(b), 6000)], uint16(100), uint16(300))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, fromMS, lenMS uint16) {
		dir := t.TempDir()
		src, dst := filepath.Join(dir, "in"), filepath.Join(dir, "out")
		if err := os.WriteFile(src, b, 0o600); err != nil {
			t.Fatal(err)
		}
		res, err := Redact(src, dst, time.Duration(fromMS)*time.Millisecond, time.Duration(int(fromMS)+int(lenMS)+1)*time.Millisecond)
		if err != nil {
			return
		}
		if res.Format == FormatOgg {
			parseOggFile(t, dst)
		} else {
			parseMKVFile(t, dst)
		}
	})
}

// FuzzMediaReaders drives the readers Redact and Repair use, in memory (FuzzRedact runs
// them end to end, but file I/O makes it slow): the Matroska scan, Ogg pages and their
// packets, comment headers and marks, and the silence that replaces a packet, which must
// last exactly as long and survive a page rebuild.
func FuzzMediaReaders(f *testing.F) {
	for _, name := range []string{"tone.ogg"} {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b[:min(len(b), 4000)])
		}
	}
	f.Add([]byte{0x1a, 0x45, 0xdf, 0xa3, 0x84, 0x42, 0x82, 0x81, 'w', 0x18, 0x53, 0x80, 0x67, 0xff})
	f.Add([]byte("OpusTags\x06\x00\x00\x00rtmrec\x01\x00\x00\x00\x10\x00\x00\x00RTMREC_PAUSE=1-2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = scanMKV(bytes.NewReader(b), func(_ *mkvScan, body []byte) error {
			_, err := parseTracks(body)
			return err
		}, func(_ int64, blk []byte) error {
			_, _, _ = readVint(blk, false)
			return nil
		})
		_ = chapterMarks(b)
		if comments, ok := parseOpusTags(b); ok {
			_ = withMarks(comments, fileMark{0, 1, markRedacted})
		}
		or := newOggReader(bytes.NewReader(b))
		for {
			p, err := or.next()
			if err != nil {
				break
			}
			packets := splitPackets(p.Lacing, p.Data, nil)
			for i, pk := range packets {
				if s, ok := opusSilence(nil, pk); ok {
					if opusSamples(s) != opusSamples(pk) {
						t.Fatalf("silence of %d samples for a packet of %d", opusSamples(s), opusSamples(pk))
					}
					packets[i] = s
				}
			}
			page := rebuildPage(or.crc, p.Raw, packets)
			if _, err := newOggReader(bytes.NewReader(page)).next(); err != nil && len(packets) > 0 {
				t.Fatalf("rebuilt page does not read back: %v", err)
			}
		}
	})
}
