package recorder

import (
	"testing"
	"time"
)

// BenchmarkStopTenMinutesOfAudio measures what recording_stop waits for
// before the upload starts: finalising a 10-minute Opus recording (the EOS
// page, the manifest, the file's sha256). The ten minutes are fed at full
// speed on a test clock.
func BenchmarkStopTenMinutesOfAudio(b *testing.B) {
	md := loadMedia(b)
	const packets = 10 * 60 * 50 // 20 ms frames
	for b.Loop() {
		b.StopTimer()
		clock := newTestClock()
		base := clock.Now()
		rec, err := Start(Config{Dir: b.TempDir(), RecordingID: "ten", QueueSize: 1 << 15, Now: clock.Now})
		if err != nil {
			b.Fatal(err)
		}
		tr, _ := rec.AddTrack(TrackInfo{ID: "a", Codec: CodecOpus})
		rs := &rtpStream{pt: 111, ssrc: 7}
		for i := range packets {
			at := base.Add(time.Duration(i) * 20 * time.Millisecond)
			tr.WriteRTP(rs.packet(md.opus[i%len(md.opus)], false), at)
			rs.ts += 960
			for rec.queue.len() > rec.queue.limit/2 {
				time.Sleep(50 * time.Microsecond)
			}
		}
		clock.Set(base.Add(10 * time.Minute))
		for rec.queue.len() > 0 {
			time.Sleep(100 * time.Microsecond)
		}
		b.StartTimer()
		m, err := rec.Stop()
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if m.DurationMS < 599_000 || m.DurationMS > 601_000 {
			b.Fatalf("duration %d ms, want 10 minutes", m.DurationMS)
		}
		b.ReportMetric(float64(m.SizeBytes)/1e6, "MB")
		b.StartTimer()
	}
}
