package recorder

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkRecordingMemory reports the heap one running audio+video
// recording holds (queue, buffers, muxer state), with 50 recordings open at
// once, each fed five seconds of real Opus and VP8.
func BenchmarkRecordingMemory(b *testing.B) {
	md := loadMedia(b)
	const n = 50
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		dir := b.TempDir()
		recs := make([]*Recording, n)
		for i := range recs {
			rec, err := Start(Config{Dir: dir, RecordingID: fmt.Sprintf("m%d", i), Format: FormatWebM})
			if err != nil {
				b.Fatal(err)
			}
			recs[i] = rec
			a, _ := rec.AddTrack(TrackInfo{ID: "a", Codec: CodecOpus})
			v, _ := rec.AddTrack(TrackInfo{ID: "v", Kind: KindVideo, Codec: CodecVP8})
			as, vs := &rtpStream{pt: 111, ssrc: 1}, &rtpStream{pt: 96, ssrc: 2}
			base := time.Now()
			for k := range 250 { // 5 s of audio, 150 video frames
				a.WriteRTP(as.packet(md.opus[k%len(md.opus)], false), base.Add(time.Duration(k)*20*time.Millisecond))
				as.ts += 960
				if k%5 < 3 {
					frame := md.vp8[(k*3/5)%len(md.vp8)]
					for _, p := range vp8Packets(frame, 1200) {
						v.WriteRTP(vs.packet(p, false), base.Add(time.Duration(k)*20*time.Millisecond))
					}
					vs.ts += 3000
				}
				for rec.queue.len() > rec.queue.limit/2 {
					time.Sleep(50 * time.Microsecond)
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
		runtime.GC()
		var during runtime.MemStats
		runtime.ReadMemStats(&during)
		for _, r := range recs {
			if _, err := r.Stop(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(during.HeapInuse-before.HeapInuse)/n/1024, "heapKiB/recording")
		b.StartTimer()
	}
}
