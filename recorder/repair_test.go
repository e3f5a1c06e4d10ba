package recorder

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
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
				if err := os.WriteFile(filepath.Join(dir, m.File), full[:cut], 0o600); err != nil {
					t.Fatal(err)
				}
				if err := writeManifest(filepath.Join(dir, m.RecordingID+".json"), &crashed); err != nil {
					t.Fatal(err)
				}
				// A finished recording beside it must not be touched.
				other := *m
				other.RecordingID, other.File = "done", "done.ogg"
				_ = writeManifest(filepath.Join(dir, "done.json"), &other)

				got, err := Repair(dir, nil)
				minMS := completeBefore(t, format, full, cut)
				if err != nil {
					// Only a cut inside the headers may be unrecoverable.
					if minMS > 0 {
						t.Fatalf("cut %d: repair failed with %d ms complete: %v", cut, minMS, err)
					}
					continue
				}
				if len(got) != 1 || got[0].State != StateRepaired {
					t.Fatalf("cut %d: repaired %+v", cut, got)
				}
				checkManifest(t, got[0], StateRepaired)
				if o, _ := ReadManifest(filepath.Join(dir, "done.json")); o.State != StateFinished {
					t.Fatal("finished manifest touched")
				}
				var dur int64
				if format == FormatOgg {
					streams := parseOggFile(t, got[0].Path)
					for _, s := range streams {
						if !s.eos || !s.granulesOK {
							t.Fatalf("cut %d: stream %+v", cut, s)
						}
						dur = max(dur, s.duration().Milliseconds())
					}
				} else {
					f, _ := checkMKVRepaired(t, got[0].Path)
					dur = int64(f.Segment.Info.Duration)
				}
				if dur < minMS || dur > 6000+100 || got[0].DurationMS != dur {
					t.Fatalf("cut %d: duration %d ms (manifest %d), complete data %d ms", cut, dur, got[0].DurationMS, minMS)
				}
				// Repairing again changes nothing.
				if again, err := Repair(dir, nil); err != nil || len(again) != 0 {
					t.Fatalf("second repair: %v %v", again, err)
				}
			}
			if cuts < 100 {
				t.Fatalf("only %d cuts", cuts)
			}
			// The whole file (crash after the last write) repairs too, and ffmpeg decodes it.
			dir := t.TempDir()
			crashed := *m
			crashed.State = StateRecording
			_ = os.WriteFile(filepath.Join(dir, m.File), full[:len(full)*2/3], 0o600)
			_ = writeManifest(filepath.Join(dir, m.RecordingID+".json"), &crashed)
			got, err := Repair(dir, nil)
			if err != nil || len(got) != 1 {
				t.Fatal(err)
			}
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
		_ = os.WriteFile(filepath.Join(dir, m.File), []byte("not media at all"), 0o600)
		if err := writeManifest(filepath.Join(dir, m.RecordingID+".json"), m); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.WriteFile(filepath.Join(dir, "broken.json"), []byte("{"), 0o600)
	got, err := Repair(dir, nil)
	if err == nil || len(got) != 0 {
		t.Fatalf("garbage repaired: %v %v", got, err)
	}
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		t.Errorf("broken manifest error not reported: %v", err)
	}
}
