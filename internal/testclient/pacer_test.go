package testclient

import (
	"context"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestPacerReportsItsLag: a track whose samples are overdue (as when the
// pacer was starved of CPU) shows in MaxLag by how much; once it has
// caught up, ResetLag starts afresh (well under the second, however
// loaded the machine running the test).
func TestPacerReportsItsLag(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const tick = 10 * time.Millisecond
	p := NewPacer(ctx, 1, tick)
	defer p.Wait()
	defer cancel()
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "pacer-test")
	if err != nil {
		t.Fatal(err)
	}
	st := &sendTrack{src: Tone, track: track}
	clip, err := p.clip(Tone)
	if err != nil {
		t.Fatal(err)
	}
	// The track should have started a second ago: its backlog is due now.
	c, err := st.cursor(time.Now().Add(-time.Second), clip)
	if err != nil {
		t.Fatal(err)
	}
	sh := p.shard()
	sh.mu.Lock()
	sh.cursors[c] = struct{}{}
	sh.mu.Unlock()

	deadline := time.Now().Add(5 * time.Second)
	for p.MaxLag() < time.Second && time.Now().Before(deadline) {
		time.Sleep(tick)
	}
	if got := p.MaxLag(); got < time.Second {
		t.Fatalf("MaxLag = %v with a second of samples overdue", got)
	}
	time.Sleep(5 * tick) // caught up
	p.ResetLag()
	time.Sleep(10 * tick)
	if got := p.MaxLag(); got <= 0 || got >= 500*time.Millisecond {
		t.Fatalf("MaxLag = %v once caught up, want more than 0 and well under the second it was", got)
	}
	if st.sent.Load() < 50 {
		t.Fatalf("%d samples sent, want the second of backlog (50) and more", st.sent.Load())
	}
}
