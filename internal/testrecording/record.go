// Package testrecording makes real recordings for tests outside the recorder: the 1 kHz
// Opus tone and the VP8 camera clip of internal/testclient, sent as RTP through a
// recorder.Recording on a simulated clock, so a 10-minute file takes a second to make.
package testrecording

import (
	"bytes"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"

	"github.com/rtmrec/rtmrec/internal/testclient"
	"github.com/rtmrec/rtmrec/recorder"
)

// Options describes the recording to make.
type Options struct {
	ID     string // recording id, default "rec"
	Format recorder.Format
	Length time.Duration
	Video  bool               // add the camera (WebM/Matroska only)
	Pauses [][2]time.Duration // paused spans, from the start
	// SenderClock, when set, makes the sender send RTCP Sender Reports every second
	// with its clock this far from the server's, so the times are the sender's.
	SenderClock time.Duration
	// Audit is kept in the manifest (supervisor visits), times relative to the start.
	Audit []Visit
}

// Visit is a supervisor's visit.
type Visit struct {
	Identity, SessionID string
	Joined, Left        time.Duration
}

// Start is the simulated clock's time at the start of every recording.
var Start = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

type event struct {
	at    time.Duration
	video bool
	pkt   []byte
	sr    bool
	ntp   uint64
	ts    uint32
	do    func()
}

// Record makes the recording in dir and returns its manifest.
func Record(t testing.TB, dir string, o Options) *recorder.Manifest {
	t.Helper()
	now := Start
	cfg := recorder.Config{Dir: dir, RecordingID: o.ID, SessionID: "session-1", ClientID: "agent-7", Identity: "agent7@example.com",
		Format: o.Format, Now: func() time.Time { return now }, QueueSize: 1 << 16}
	if cfg.RecordingID == "" {
		cfg.RecordingID = "rec"
	}
	rec, err := recorder.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mic, err := rec.AddTrack(recorder.TrackInfo{ID: "mic", Codec: recorder.CodecOpus})
	if err != nil {
		t.Fatal(err)
	}
	var cam *recorder.Track
	if o.Video {
		if cam, err = rec.AddTrack(recorder.TrackInfo{ID: "cam", Codec: recorder.CodecVP8}); err != nil {
			t.Fatal(err)
		}
	}
	opus, vp8 := clips(t)
	var ev []event
	a := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 1, Timestamp: 1000}}
	for i := 0; time.Duration(i)*20*time.Millisecond < o.Length; i++ {
		at := time.Duration(i) * 20 * time.Millisecond
		a.Payload = opus[i%len(opus)]
		ev = append(ev, event{at: at + 10*time.Millisecond, pkt: marshal(t, &a)})
		if o.SenderClock != 0 && i%50 == 0 {
			ev = append(ev, event{at: at + 11*time.Millisecond, sr: true, ntp: ntp(Start.Add(at + o.SenderClock)), ts: a.Timestamp})
		}
		a.SequenceNumber++
		a.Timestamp += 960
	}
	if o.Video {
		v := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 2, Timestamp: 5000}}
		pl := &codecs.VP8Payloader{EnablePictureID: true}
		for k := 0; time.Duration(k)*time.Second/30 < o.Length; k++ {
			at := time.Duration(k) * time.Second / 30
			pls := pl.Payload(1100, vp8[k%len(vp8)])
			for j, p := range pls {
				v.Payload, v.Marker = p, j == len(pls)-1
				ev = append(ev, event{at: at + 15*time.Millisecond, video: true, pkt: marshal(t, &v)})
				v.SequenceNumber++
			}
			if o.SenderClock != 0 && k%30 == 0 {
				ev = append(ev, event{at: at + 16*time.Millisecond, video: true, sr: true, ntp: ntp(Start.Add(at + o.SenderClock)), ts: v.Timestamp})
			}
			v.Timestamp += 3000
		}
	}
	for _, p := range o.Pauses {
		ev = append(ev, event{at: p[0], do: func() { rec.Pause() }}, event{at: p[1], do: func() { rec.Resume() }})
	}
	for _, vis := range o.Audit {
		ev = append(ev, event{at: vis.Joined, do: func() {
			rec.AddAuditEvent(recorder.AuditEvent{Time: now, Kind: "supervisor_joined", SessionID: vis.SessionID, Identity: vis.Identity})
		}})
		if vis.Left > 0 {
			ev = append(ev, event{at: vis.Left, do: func() {
				rec.AddAuditEvent(recorder.AuditEvent{Time: now, Kind: "supervisor_left", SessionID: vis.SessionID, Identity: vis.Identity})
			}})
		}
	}
	sort.SliceStable(ev, func(i, j int) bool { return ev[i].at < ev[j].at })
	for _, e := range ev {
		now = Start.Add(e.at)
		tr := mic
		if e.video {
			tr = cam
		}
		switch {
		case e.do != nil:
			e.do()
		case e.sr:
			tr.WriteSenderReport(e.ntp, e.ts, now)
		default:
			tr.WriteRTP(e.pkt, now)
		}
	}
	now = Start.Add(o.Length)
	m, err := rec.Stop()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func marshal(t testing.TB, p *rtp.Packet) []byte {
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ntp(t time.Time) uint64 {
	sec := uint64(t.Unix()) + 2208988800
	return sec<<32 | uint64(t.Nanosecond())<<32/1e9
}

// clips reads the Opus packets of the tone and the frames of the camera clip.
func clips(t testing.TB) (opus, vp8 [][]byte) {
	t.Helper()
	data, err := testclient.Media.ReadFile(string(testclient.Tone))
	if err != nil {
		t.Fatal(err)
	}
	if opus, err = oggPackets(data); err != nil || len(opus) < 100 {
		t.Fatalf("tone clip: %d packets, %v", len(opus), err)
	}
	data, err = testclient.Media.ReadFile(string(testclient.Camera))
	if err != nil {
		t.Fatal(err)
	}
	r, _, err := ivfreader.NewWith(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for {
		f, _, err := r.ParseNextFrame()
		if err != nil {
			break
		}
		vp8 = append(vp8, bytes.Clone(f))
	}
	return opus, vp8
}

// oggPackets splits an Ogg Opus file into packets (RFC 3533 lacing), headers skipped; the
// tone's packets are all 20 ms, so their granules are not needed.
func oggPackets(b []byte) ([][]byte, error) {
	var out [][]byte
	var cur []byte
	for page := 0; len(b) > 0; page++ {
		if len(b) < 27 || string(b[:4]) != "OggS" {
			return nil, errors.New("not an Ogg page")
		}
		n := int(b[26])
		if len(b) < 27+n {
			return nil, errors.New("truncated page")
		}
		lacing := b[27 : 27+n]
		data := b[27+n:]
		size := 0
		for _, l := range lacing {
			size += int(l)
		}
		if len(data) < size {
			return nil, errors.New("truncated page")
		}
		off := 0
		for _, l := range lacing {
			cur = append(cur, data[off:off+int(l)]...)
			off += int(l)
			if l < 255 {
				if page >= 2 {
					out = append(out, cur)
				}
				cur = nil
			}
		}
		b = data[size:]
	}
	return out, nil
}
