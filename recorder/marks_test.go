package recorder

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/at-wat/ebml-go"
)

// probeChapter is one chapter as ffprobe -show_chapters shows it.
type probeChapter struct {
	Start float64
	End   float64
	Title string
}

// ffprobeMarks returns the chapters and the tags (format and streams merged) ffprobe sees.
func ffprobeMarks(t *testing.T, path string) ([]probeChapter, map[string]string) {
	t.Helper()
	bin := requireTool(t, "ffprobe")
	out, err := exec.Command(bin, "-v", "error", "-show_chapters", "-show_format", "-show_streams", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var r struct {
		Chapters []struct {
			StartTime string            `json:"start_time"`
			EndTime   string            `json:"end_time"`
			Tags      map[string]string `json:"tags"`
		} `json:"chapters"`
		Format struct {
			Tags map[string]string `json:"tags"`
		} `json:"format"`
		Streams []struct {
			Tags map[string]string `json:"tags"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatal(err)
	}
	var chapters []probeChapter
	for _, c := range r.Chapters {
		s, _ := strconv.ParseFloat(c.StartTime, 64)
		e, _ := strconv.ParseFloat(c.EndTime, 64)
		chapters = append(chapters, probeChapter{s, e, c.Tags["title"]})
	}
	tags := map[string]string{}
	for _, s := range r.Streams {
		for k, v := range s.Tags {
			tags[k] = v
		}
	}
	for k, v := range r.Format.Tags {
		tags[k] = v
	}
	return chapters, tags
}

// mkvChaptersOf parses the Chapters of a Matroska file in Go.
func mkvChaptersOf(t *testing.T, path string) []mkvChapterAtom {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var doc struct {
		Segment struct {
			Chapters *mkvChapters `ebml:"Chapters"`
		} `ebml:"Segment"`
	}
	if err := ebml.Unmarshal(f, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Segment.Chapters == nil || len(doc.Segment.Chapters.EditionEntry) == 0 {
		return nil
	}
	return doc.Segment.Chapters.EditionEntry[0].ChapterAtom
}

// TestPauseMarks: a 3 s pause shows in the file itself, where players and ffprobe find it.
func TestPauseMarks(t *testing.T) {
	md := loadMedia(t)
	s := time.Second
	for _, tc := range []struct {
		format     Format
		mode       PauseMode
		start, end float64 // the pause on the file timeline, s
		dur        time.Duration
	}{
		{FormatWebM, PauseSilence, 3, 6, 10 * s},
		{FormatWebM, PauseSkip, 3, 3, 7 * s},
		{FormatOgg, PauseSilence, 3, 6, 10 * s},
		{FormatOgg, PauseSkip, 3, 3, 7 * s},
	} {
		t.Run(string(tc.format)+" "+string(tc.mode), func(t *testing.T) {
			ev := opusEvents(md, streamSpec{end: 10 * s, ssrc: 1})
			tracks := []TrackInfo{{ID: "mic", Codec: CodecOpus}}
			streams := 1
			if tc.format == FormatWebM {
				ev = append(ev, videoEvents(md, CodecVP8, streamSpec{track: 1, end: 10 * s, ssrc: 2})...)
				tracks = append(tracks, TrackInfo{ID: "cam", Codec: CodecVP8})
				streams = 2
			}
			_, m := runWithPauses(t, Config{Format: tc.format, PauseMode: tc.mode}, newTestClock(), tracks, ev, [][2]time.Duration{{3 * s, 6 * s}}, 10*s)
			wantSpan := strconv.FormatInt(int64(tc.start*1000), 10) + "-" + strconv.FormatInt(int64(tc.end*1000), 10)

			// Parsed back in Go.
			if tc.format == FormatWebM {
				atoms := mkvChaptersOf(t, m.Path)
				if len(atoms) != 1 || atoms[0].ChapterDisplay[0].ChapString != "paused" ||
					atoms[0].ChapterTimeStart != uint64(tc.start*1e9) || atoms[0].ChapterTimeEnd != uint64(tc.end*1e9)*uint64(btoi(tc.end > tc.start)) {
					t.Errorf("chapters %+v", atoms)
				}
			} else {
				for _, st := range parseOggFile(t, m.Path) {
					if v, _ := tagValue(st.comments, "RTMREC_PAUSE"); v != wantSpan || st.trackID != "mic" {
						t.Errorf("comments %q", st.comments)
					}
				}
			}

			// What ffprobe shows.
			chapters, tags := ffprobeMarks(t, m.Path)
			var paused []probeChapter
			for _, c := range chapters {
				if c.Title == "paused" {
					paused = append(paused, c)
				}
			}
			if len(paused) != 1 || paused[0].Start != tc.start || (tc.end > tc.start && paused[0].End != tc.end) {
				t.Errorf("ffprobe chapters %+v, want one \"paused\" from %v to %v", chapters, tc.start, tc.end)
			}
			if tc.format == FormatOgg {
				if tags["RTMREC_PAUSE"] != wantSpan || tags["RTMREC_TRACK_ID"] != "mic" {
					t.Errorf("ffprobe tags %v", tags)
				}
				if !slices.ContainsFunc(chapters, func(c probeChapter) bool { return c.Title == "recording" && c.Start == tc.end }) {
					t.Errorf("no chapter where recording resumes: %+v", chapters)
				}
			}
			checkFFmpeg(t, m.Path, tc.dur, streams)
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestRepairMarksPauses: a recording cut by a crash gets its pauses marked by Repair,
// including one still open at the crash, which lasts to the end.
func TestRepairMarksPauses(t *testing.T) {
	for _, format := range []Format{FormatOgg, FormatWebM} {
		t.Run(string(format), func(t *testing.T) {
			m := recordFor(t, format)
			full := mustRead(t, m.Path)
			crashed := *m
			crashed.State = StateRecording
			ended := time.Now()
			crashed.Pauses = []PauseSpan{{StartMS: 1000, EndMS: 2000, EndedAt: &ended}, {StartMS: 3000}}
			crashed.Path = filepath.Join(t.TempDir(), m.File)
			if err := os.WriteFile(crashed.Path, full[:len(full)*3/4], 0o600); err != nil {
				t.Fatal(err)
			}
			if err := Repair(&crashed); err != nil {
				t.Fatalf("repair: %v", err)
			}
			got := []*Manifest{&crashed}
			end := got[0].DurationMS
			if format == FormatOgg {
				for _, st := range parseOggFile(t, got[0].Path) {
					marks := marksFromComments(st.comments)
					if len(marks) != 2 || marks[0] != (fileMark{1000, 2000, markPaused}) || marks[1].startMS != 3000 || marks[1].endMS < end-40 {
						t.Errorf("marks %+v (duration %d)", marks, end)
					}
				}
			} else {
				atoms := mkvChaptersOf(t, got[0].Path)
				if len(atoms) != 2 || atoms[0].ChapterTimeStart != 1e9 || atoms[0].ChapterTimeEnd != 2e9 ||
					atoms[1].ChapterTimeStart != 3e9 || atoms[1].ChapterTimeEnd != uint64(end)*1e6 {
					t.Errorf("chapters %+v (duration %d)", atoms, end)
				}
			}
			if out := ffmpegDecode(t, got[0].Path); out != "" {
				t.Errorf("ffmpeg: %s", out)
			}
		})
	}
}
