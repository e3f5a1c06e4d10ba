package recorder

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// withCVO adds the CVO extension (id) to the last packet of every frame, as WebRTC
// senders do, with the rotation code the frame's time gives.
func withCVO(t *testing.T, ev []event, id uint8, rotation func(at time.Duration) byte, twoByte bool) []event {
	t.Helper()
	for i, e := range ev {
		if e.pkt == nil {
			continue
		}
		var p rtp.Packet
		if err := p.Unmarshal(e.pkt); err != nil {
			t.Fatal(err)
		}
		if !p.Marker {
			continue
		}
		if twoByte {
			p.Header.Extension, p.Header.ExtensionProfile = true, rtp.ExtensionProfileTwoByte
			if err := p.Header.SetExtension(9, []byte{0xAA, 0xBB}); err != nil { // another extension first
				t.Fatal(err)
			}
		}
		if err := p.Header.SetExtension(id, []byte{rotation(e.at)}); err != nil {
			t.Fatal(err)
		}
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		ev[i].pkt = b
	}
	return ev
}

// probeRotation is the display rotation ffprobe reads from the file's first video stream
// (counter-clockwise degrees, from the Display Matrix side data), or 0.
func probeRotation(t *testing.T, path string) float64 {
	t.Helper()
	bin := requireTool(t, "ffprobe")
	out, err := exec.Command(bin, "-v", "error", "-select_streams", "v:0", "-show_streams", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var r struct {
		Streams []struct {
			SideData []struct {
				Type     string  `json:"side_data_type"`
				Rotation float64 `json:"rotation"`
			} `json:"side_data_list"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &r); err != nil || len(r.Streams) != 1 {
		t.Fatalf("ffprobe json %s: %v", out, err)
	}
	for _, sd := range r.Streams[0].SideData {
		if sd.Type == "Display Matrix" {
			return sd.Rotation
		}
	}
	return 0
}

// TestOrientation: a sender's CVO at its first keyframe becomes the file's rotation, which
// ffprobe reports and ffmpeg decodes through; a later turn of the phone is listed in the
// manifest; a repaired file keeps the rotation.
func TestOrientation(t *testing.T) {
	md := loadMedia(t)
	const id = 3
	s := time.Second
	tests := []struct {
		name      string
		code      byte // CVO R1R0 at the start
		twoByte   bool
		wantRot   int
		wantProbe float64
	}{
		{"90 clockwise", 1, false, 90, -90},
		{"180", 2, false, 180, 180},
		{"270 clockwise, two-byte form", 3, true, 270, 90},
		{"upright", 0, false, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rot := func(at time.Duration) byte {
				if at >= 4*s {
					return (tc.code + 1) % 4 // the phone turns
				}
				return tc.code
			}
			ev := append(opusEvents(md, streamSpec{end: 6 * s, ssrc: 1}),
				withCVO(t, videoEvents(md, CodecVP8, streamSpec{track: 1, end: 6 * s, ssrc: 2}), id, rot, tc.twoByte)...)
			tracks := []TrackInfo{{ID: "mic", Codec: CodecOpus}, {ID: "cam", Codec: CodecVP8, OrientationExtID: id}}
			_, m := runWithPauses(t, Config{}, newTestClock(), tracks, ev, nil, 6*s)
			v := m.Tracks[1]
			if v.Rotation != tc.wantRot || len(v.RotationChanges) != 1 || v.RotationChanges[0].Rotation != int(rot(5*s))*90 {
				t.Fatalf("rotation %d, changes %+v; want %d then one turn to %d", v.Rotation, v.RotationChanges, tc.wantRot, int(rot(5*s))*90)
			}
			within(t, "turn", time.Duration(v.RotationChanges[0].AtMS)*time.Millisecond, 4*s, 100*time.Millisecond)
			if got := probeRotation(t, m.Path); !sameTurn(got, tc.wantProbe) {
				t.Fatalf("ffprobe rotation %v, want %v", got, tc.wantProbe)
			}
			checkFFmpeg(t, m.Path, 6*s, 2)

			// A crash before the end: the repaired file keeps the rotation.
			full := mustRead(t, m.Path)
			crashed := *m
			crashed.State, crashed.Path = StateRecording, filepath.Join(t.TempDir(), m.File)
			if err := os.WriteFile(crashed.Path, full[:len(full)*2/3], 0o600); err != nil {
				t.Fatal(err)
			}
			if err := Repair(&crashed); err != nil {
				t.Fatal(err)
			}
			if got := probeRotation(t, crashed.Path); !sameTurn(got, tc.wantProbe) {
				t.Fatalf("repaired file: ffprobe rotation %v, want %v", got, tc.wantProbe)
			}
			if r := crashed.Tracks[1].Rotation; r != tc.wantRot {
				t.Fatalf("repaired manifest: rotation %d, want %d", r, tc.wantRot)
			}
		})
	}
}

// sameTurn compares rotations in degrees, 180 and -180 being the same.
func sameTurn(a, b float64) bool { return math.Mod(a-b+720, 360) == 0 }

func TestRTPExtension(t *testing.T) {
	oneByte := rtp.Packet{Header: rtp.Header{Version: 2, Extension: true, ExtensionProfile: rtp.ExtensionProfileOneByte}, Payload: []byte{1, 2}}
	_ = oneByte.Header.SetExtension(1, []byte{0x10, 0x20})
	_ = oneByte.Header.SetExtension(3, []byte{0x01})
	twoByte := rtp.Packet{Header: rtp.Header{Version: 2, Extension: true, ExtensionProfile: rtp.ExtensionProfileTwoByte, CSRC: []uint32{7}}, Payload: []byte{1}}
	_ = twoByte.Header.SetExtension(20, make([]byte, 20))
	_ = twoByte.Header.SetExtension(3, []byte{0x03})
	plain := rtp.Packet{Header: rtp.Header{Version: 2}, Payload: []byte{1}}
	for _, tt := range []struct {
		name string
		pkt  rtp.Packet
		want []byte
	}{
		{"one-byte", oneByte, []byte{0x01}},
		{"two-byte after a CSRC and a long extension", twoByte, []byte{0x03}},
		{"no extension", plain, nil},
	} {
		b, err := tt.pkt.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, ok := rtpExtension(b, 3)
		if ok != (tt.want != nil) || string(got) != string(tt.want) {
			t.Errorf("%s: %x, %v; want %x", tt.name, got, ok, tt.want)
		}
		if _, ok := rtpExtension(b, 4); ok {
			t.Errorf("%s: found an id that is not there", tt.name)
		}
		for cut := range b {
			rtpExtension(b[:cut], 3) // truncated: no panic
		}
	}
}
