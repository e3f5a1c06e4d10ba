package recorder

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzDepacketize: no parser of network input may panic.
func FuzzDepacketize(f *testing.F) {
	f.Add([]byte{0x90, 0x80, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0x10, 0x00, 0x9d, 0x01, 0x2a})
	f.Add([]byte{0x7c, 0x85, 0x88, 0x84})
	f.Add([]byte{0x18, 0x00, 0x02, 0x67, 0x42})
	f.Add([]byte{0x8a, 0x12, 0xff, 0x01})
	f.Add([]byte{0x90, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xbe, 0xde, 0, 1, 0x30, 0x01, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseRTP(b)
		_, _ = rtpExtension(b, 3)
		_, _, _ = depackVP8(nil, b)
		_, _, _ = depackVP9(nil, b)
		d := h264Depack{}
		d.reset()
		_, _ = d.depack(nil, b)
		_, _, _ = vp8Keyframe(b)
		_, _, _ = vp9Keyframe(b)
		_, _, _, _ = h264Scan(b)
		_, _, _ = h264Size(b)
		_ = opusSamples(b)
		for _, c := range []Codec{CodecVP8, CodecVP9, CodecH264} {
			a := newAssembler(c)
			for i := 0; i+2 < len(b); i += 3 {
				_, _ = a.push(uint64(b[i]), uint32(b[i+1]), b[i+2]&1 == 1, b[i:])
			}
		}
	})
}

// FuzzTrackWriteRTP runs arbitrary packets (length-prefixed in the input) through a real
// recording with every codec, and checks the result still parses.
func FuzzTrackWriteRTP(f *testing.F) {
	vs := &rtpStream{pt: 96, ssrc: 2}
	seed := []byte{}
	for _, pl := range vp8Packets(vp8Frame(true, 64, 48, 2000), 500) {
		p := vs.packet(pl, false)
		seed = binary.BigEndian.AppendUint16(seed, uint16(len(p)))
		seed = append(seed, p...)
	}
	f.Add(seed)
	f.Add([]byte{0, 12, 0x80, 0x60, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		clock := newTestClock()
		rec, err := Start(Config{Dir: dir, RecordingID: "fz", Format: FormatMKV, Now: clock.Now, QueueSize: 4096,
			Tracks: []TrackInfo{{ID: "v", Codec: CodecVP8}}})
		if err != nil {
			t.Fatal(err)
		}
		var tracks []*Track
		for _, c := range []Codec{CodecOpus, CodecVP8, CodecVP9, CodecH264} {
			tr, err := rec.AddTrack(TrackInfo{ID: string(c), Codec: c, OrientationExtID: 3})
			if err != nil {
				t.Fatal(err)
			}
			tracks = append(tracks, tr)
		}
		at := clock.Now()
		for i := 0; len(b) >= 2; i++ {
			n := int(binary.BigEndian.Uint16(b))
			b = b[2:]
			n = min(n, len(b))
			at = at.Add(time.Duration(n) * time.Millisecond)
			tr := tracks[i%len(tracks)]
			if n > 0 && b[0] == 0xff && n >= 13 {
				tr.WriteSenderReport(binary.BigEndian.Uint64(b[1:]), binary.BigEndian.Uint32(b[9:]), at)
			} else {
				tr.WriteRTP(b[:n], at)
			}
			b = b[n:]
		}
		m, err := rec.Stop()
		if err != nil {
			t.Fatal(err)
		}
		parseMKVFile(t, m.Path)
	})
}

// FuzzRepair: Repair of arbitrary bytes never panics, and what it produces parses.
func FuzzRepair(f *testing.F) {
	f.Add([]byte("OggS"), false)
	f.Add([]byte{0x1a, 0x45, 0xdf, 0xa3, 0x80, 0x18, 0x53, 0x80, 0x67, 0xff}, true)
	if b, err := os.ReadFile(filepath.Join("testdata", "tone.ogg")); err == nil {
		f.Add(b[:min(len(b), 4000)], false)
	}
	f.Fuzz(func(t *testing.T, b []byte, mkv bool) {
		dir := t.TempDir()
		format := FormatOgg
		if mkv {
			format = FormatMKV
		}
		m := &Manifest{RecordingID: "x", Format: format, File: "x." + format.Ext(), State: StateRecording}
		m.Path = filepath.Join(dir, m.File)
		if err := os.WriteFile(m.Path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Repair(m); err != nil {
			return
		}
		if mkv {
			parseMKVFile(t, m.Path)
		} else {
			parseOggFile(t, m.Path)
		}
	})
}
