package recorder

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkOpusToOgg measures audio packets per second through WriteRTP, the queue, the
// writer goroutine and the Ogg writer. The queue is large so no packet is dropped.
func BenchmarkOpusToOgg(b *testing.B) {
	md := loadMedia(b)
	rs := &rtpStream{pt: 111, ssrc: 1}
	pkts := make([][]byte, 3000)
	for i := range pkts {
		pkts[i] = rs.packet(md.opus[i%len(md.opus)], false)
		rs.ts += 960
	}
	rec, err := Start(Config{Dir: b.TempDir(), RecordingID: "bench", QueueSize: 1 << 14, SyncInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	tr, _ := rec.AddTrack(TrackInfo{ID: "a", Codec: CodecOpus})
	base := time.Now()
	// Packets are re-stamped so the timeline keeps advancing across loops.
	seq, ts := uint16(0), uint32(0)
	buf := make([]byte, 0, 1500)
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		p := pkts[n%len(pkts)]
		buf = append(buf[:0], p...)
		buf[2], buf[3] = byte(seq>>8), byte(seq)
		buf[4], buf[5], buf[6], buf[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
		tr.WriteRTP(buf, base.Add(time.Duration(n)*20*time.Millisecond))
		seq++
		ts += 960
		n++
		for rec.queue.len() > rec.queue.limit/2 {
			// Let the writer keep up: the benchmark measures throughput, not drops.
			time.Sleep(50 * time.Microsecond)
		}
	}
	m, err := rec.Stop()
	if err != nil {
		b.Fatal(err)
	}
	if m.Tracks[0].PacketsDropped != 0 || m.Tracks[0].FramesWritten != uint64(n) {
		b.Fatalf("dropped %d written %d of %d", m.Tracks[0].PacketsDropped, m.Tracks[0].FramesWritten, n)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "packets/s")
}

// BenchmarkOpusVP8ToWebM feeds one audio packet and, every other audio packet, one VP8
// packet (frames of ~3 packets) per op.
func BenchmarkOpusVP8ToWebM(b *testing.B) {
	md := loadMedia(b)
	as := &rtpStream{pt: 111, ssrc: 1}
	vs := &rtpStream{pt: 96, ssrc: 2}
	var apkts, vpkts [][]byte
	var vts []uint32
	for i := 0; i < 3000; i++ {
		apkts = append(apkts, as.packet(md.opus[i%len(md.opus)], false))
	}
	for k := 0; k < 150; k++ {
		pls := vp8Packets(md.vp8[k], 1100)
		for j, pl := range pls {
			vpkts = append(vpkts, vs.packet(pl, j == len(pls)-1))
			vts = append(vts, uint32(k*3000))
		}
	}
	rec, err := Start(Config{Dir: b.TempDir(), RecordingID: "bench", Format: FormatWebM, QueueSize: 1 << 14, SyncInterval: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ta, _ := rec.AddTrack(TrackInfo{ID: "a", Codec: CodecOpus})
	tv, _ := rec.AddTrack(TrackInfo{ID: "v", Codec: CodecVP8})
	base := time.Now()
	abuf := make([]byte, 0, 1500)
	vbuf := make([]byte, 0, 1500)
	n, vi := 0, 0
	var aseq, vseq uint16
	b.ReportAllocs()
	for b.Loop() {
		abuf = append(abuf[:0], apkts[n%len(apkts)]...)
		abuf[2], abuf[3] = byte(aseq>>8), byte(aseq)
		ts := uint32(n * 960)
		abuf[4], abuf[5], abuf[6], abuf[7] = byte(ts>>24), byte(ts>>16), byte(ts>>8), byte(ts)
		aseq++
		at := base.Add(time.Duration(n) * 20 * time.Millisecond)
		ta.WriteRTP(abuf, at)
		if n%2 == 0 {
			i := vi % len(vpkts)
			loop := uint32(vi / len(vpkts))
			vbuf = append(vbuf[:0], vpkts[i]...)
			vbuf[2], vbuf[3] = byte(vseq>>8), byte(vseq)
			vt := vts[i] + loop*150*3000
			vbuf[4], vbuf[5], vbuf[6], vbuf[7] = byte(vt>>24), byte(vt>>16), byte(vt>>8), byte(vt)
			vseq++
			vi++
			tv.WriteRTP(vbuf, at)
		}
		n++
		for rec.queue.len() > rec.queue.limit/2 {
			time.Sleep(50 * time.Microsecond)
		}
	}
	m, err := rec.Stop()
	if err != nil {
		b.Fatal(err)
	}
	if m.Tracks[0].FramesWritten != uint64(n) || m.Tracks[1].FramesWritten == 0 {
		b.Fatalf("written %+v of %d", m.Tracks, n)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "audio-packets/s")
}

// BenchmarkRedact10Min redacts one minute out of a 10-minute recording (audio + VP8 video
// in WebM, audio in Ogg) and reports seconds of media processed per second.
func BenchmarkRedact10Min(b *testing.B) {
	for _, format := range []Format{FormatWebM, FormatOgg} {
		b.Run(string(format), func(b *testing.B) {
			const length = 10 * time.Minute
			m := toneRecording(b, format, length, nil)
			dir := b.TempDir()
			n := 0
			for b.Loop() {
				dst := filepath.Join(dir, fmt.Sprintf("r%d.%s", n, format.Ext()))
				res, err := Redact(m.Path, dst, 4*time.Minute, 5*time.Minute)
				if err != nil || res.AudioPackets < 3000 {
					b.Fatalf("%+v %v", res, err)
				}
				_ = os.Remove(dst)
				n++
			}
			b.ReportMetric(float64(n)*length.Seconds()/b.Elapsed().Seconds(), "media-s/s")
			b.ReportMetric(float64(m.SizeBytes)/1e6, "MB/file")
		})
	}
}
