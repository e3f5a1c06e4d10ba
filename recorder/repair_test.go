package recorder

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// recordFor makes a finished recording to cut up.
func recordFor(t *testing.T, format Format) *Manifest {
	md := loadMedia(t)
	tracks := []TrackInfo{{ID: "mic", Codec: CodecOpus}}
	ev := opusEvents(md, streamSpec{end: 6 * time.Second, ssrc: 1})
	if format != FormatOgg {
		tracks = append(tracks, TrackInfo{ID: "cam", Codec: CodecVP8})
		ev = append(ev, videoEvents(md, CodecVP8, streamSpec{track: 1, end: 6 * time.Second, ssrc: 2})...)
	}
	_, m := runEvents(t, Config{Format: format}, newTestClock(), tracks, ev, 6*time.Second)
	return m
}

// completeBefore returns the file time (ms) of the data entirely before byte cut.
func completeBefore(t *testing.T, format Format, b []byte, cut int) int64 {
	if format == FormatOgg {
		or := newOggReader(bytesOf(b[:cut]))
		var best int64
		for {
			p, err := or.next()
			if err != nil {
				break
			}
			if p.Flags&oggFlagBOS == 0 && p.Granule > oggPreSkip {
				best = max(best, (p.Granule-oggPreSkip)/48)
			}
		}
		return best
	}
	// Matroska: the latest block that ends before the cut, relative to its cluster.
	var best int64
	walkBlocks(b, func(end int, ms int64) {
		if end <= cut {
			best = max(best, ms)
		}
	})
	return best
}

// walkBlocks calls fn for each SimpleBlock (its end offset and absolute time).
func walkBlocks(b []byte, fn func(end int, ms int64)) {
	_, n, _ := readVint(b, true)
	size, m, _ := readVint(b[n:], false)
	i := n + m + int(size)
	_, n, _ = readVint(b[i:], true)
	_, m, _ = readVint(b[i+n:], false)
	i += n + m
	for i < len(b) {
		id, n, _ := readVint(b[i:], true)
		size, m, _ := readVint(b[i+n:], false)
		if id != idCluster {
			i += n + m + int(size)
			continue
		}
		j, end := i+n+m, i+n+m+int(size)
		var tc int64
		for j < end {
			cid, k, _ := readVint(b[j:], true)
			cs, k2, _ := readVint(b[j+k:], false)
			body := b[j+k+k2 : j+k+k2+int(cs)]
			switch cid {
			case idTimecode:
				tc = 0
				for _, x := range body {
					tc = tc<<8 | int64(x)
				}
			case idSimpleBlock:
				_, l, _ := readVint(body, false)
				rel := int16(uint16(body[l])<<8 | uint16(body[l+1]))
				fn(j+k+k2+int(cs), tc+int64(rel))
			}
			j += k + k2 + int(cs)
		}
		i = end
	}
}

type sliceReader struct {
	b []byte
	i int
}

func (r *sliceReader) Read(p []byte) (int, error) {
	if r.i >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.i:])
	r.i += n
	return n, nil
}

func bytesOf(b []byte) io.Reader { return &sliceReader{b: b} }

func TestRepairTruncated(t *testing.T) {
	for _, format := range []Format{FormatOgg, FormatWebM} {
		t.Run(string(format), func(t *testing.T) {
			m := recordFor(t, format)
			full := mustRead(t, m.Path)
			step := max(len(full)/150, 97)
			cuts := 0
			for cut := 1; cut < len(full); cut += step {
				cuts++
				dir := t.TempDir()
				crashed := *m
				crashed.State = StateRecording
				crashed.SHA256, crashed.SizeBytes, crashed.DurationMS, crashed.StoppedAt = "", 0, 0, nil
				crashed.Path = filepath.Join(dir, m.File)
				if err := os.WriteFile(crashed.Path, full[:cut], 0o600); err != nil {
					t.Fatal(err)
				}
				err := Repair(&crashed)
				minMS := completeBefore(t, format, full, cut)
				if err != nil {
					// Only a cut inside the headers may be unrecoverable.
					if minMS > 0 {
						t.Fatalf("cut %d: repair failed with %d ms complete: %v", cut, minMS, err)
					}
					continue
				}
				got := &crashed
				checkManifest(t, got, StateRepaired)
				var dur int64
				if format == FormatOgg {
					streams := parseOggFile(t, got.Path)
					for _, s := range streams {
						if !s.eos || !s.granulesOK {
							t.Fatalf("cut %d: stream %+v", cut, s)
						}
						dur = max(dur, s.duration().Milliseconds())
					}
				} else {
					f, _ := checkMKVRepaired(t, got.Path)
					dur = int64(f.Segment.Info.Duration)
				}
				if dur < minMS || dur > 6000+100 || got.DurationMS != dur {
					t.Fatalf("cut %d: duration %d ms (manifest %d), complete data %d ms", cut, dur, got.DurationMS, minMS)
				}
				// Repairing the repaired file again (a crash right after the repair) keeps it.
				again := crashed
				if err := Repair(&again); err != nil || again.DurationMS != got.DurationMS {
					t.Fatalf("second repair: %v, duration %d, was %d", err, again.DurationMS, got.DurationMS)
				}
			}
			if cuts < 100 {
				t.Fatalf("only %d cuts", cuts)
			}
			// The whole file (crash after the last write) repairs too, and ffmpeg decodes it.
			dir := t.TempDir()
			crashed := *m
			crashed.State = StateRecording
			crashed.Path = filepath.Join(dir, m.File)
			_ = os.WriteFile(crashed.Path, full[:len(full)*2/3], 0o600)
			if err := Repair(&crashed); err != nil {
				t.Fatal(err)
			}
			got := []*Manifest{&crashed}
			streams := 1
			if format != FormatOgg {
				streams = 2
			}
			if out := ffmpegDecode(t, got[0].Path); out != "" {
				t.Errorf("ffmpeg: %s", out)
			}
			if p := ffprobe(t, got[0].Path); len(p.Streams) != streams || p.Format.Duration == "" {
				t.Errorf("ffprobe %+v", p)
			}
		})
	}
}

func checkMKVRepaired(t *testing.T, path string) (*mkvFile, []blockInfo) {
	t.Helper()
	f := parseMKVFile(t, path)
	if f.Segment.Info.Duration <= 0 && len(f.Segment.Cluster) > 0 {
		t.Fatalf("no Duration")
	}
	blocks := mkvBlocks(f)
	if len(blocks) > 0 && (f.Segment.Cues == nil || len(f.Segment.Cues.CuePoint) == 0) {
		t.Fatalf("no Cues")
	}
	if f.Segment.Cues != nil {
		checkCues(t, path, f)
	}
	last := map[uint64]int64{}
	for _, b := range blocks {
		if b.ms < last[b.track] {
			t.Fatalf("track %d goes back", b.track)
		}
		last[b.track] = b.ms
	}
	return f, blocks
}

func TestRepairGarbage(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []Format{FormatOgg, FormatWebM, FormatMKV} {
		m := &Manifest{RecordingID: "g" + string(f), Format: f, File: "g" + string(f) + "." + f.Ext(), State: StateRecording}
		m.Path = filepath.Join(dir, m.File)
		_ = os.WriteFile(m.Path, []byte("not media at all"), 0o600)
		if err := Repair(m); err == nil || m.State != StateRecording {
			t.Errorf("%s: garbage repaired: %v, state %s", f, err, m.State)
		}
		if b, _ := os.ReadFile(m.Path); string(b) != "not media at all" {
			t.Errorf("%s: the unrepairable file was changed", f)
		}
	}
	missing := &Manifest{RecordingID: "m", Format: FormatOgg, File: "m.ogg", Path: filepath.Join(dir, "m.ogg")}
	if err := Repair(missing); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
}

// TestYoungOggIsRepairable: an Ogg recording killed before its first media
// page already holds the headers of its tracks, so repair finishes it.
func TestYoungOggIsRepairable(t *testing.T) {
	dir := t.TempDir()
	rec, err := Start(Config{Dir: dir, RecordingID: "young", Tracks: []TrackInfo{{ID: "mid0", Codec: CodecOpus}}})
	if err != nil {
		t.Fatal(err)
	}
	// What is on disk now is what a kill -9 would leave.
	snapshot, err := os.ReadFile(rec.Path())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rec.Stop(); err != nil {
		t.Fatal(err)
	}
	m := rec.Manifest()
	m.Path = filepath.Join(t.TempDir(), m.File)
	if err := os.WriteFile(m.Path, snapshot, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Repair(m); err != nil {
		t.Fatalf("a recording killed at once is not repairable: %v", err)
	}
	streams := parseOggFile(t, m.Path)
	if len(streams) != 1 || !streams[0].eos || len(m.Tracks) != 1 || m.Tracks[0].ID != "mid0" {
		t.Fatalf("repaired %+v, tracks %+v", streams, m.Tracks)
	}
}
