package session

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	dto "github.com/prometheus/client_model/go"
)

// TestForwarderDropsWhenItsQueueIsFull: a supervisor whose forwarder
// falls behind loses packets from its own bounded queue (counted), while
// the media path never waits; once it catches up it forwards again.
func TestForwarderDropsWhenItsQueueIsFull(t *testing.T) {
	m := NewMetrics(nil)
	sup := &Session{srv: &Server{metrics: m}}
	local, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "a", "s")
	if err != nil {
		t.Fatal(err)
	}
	src := &trackSink{}
	f := &forwarder{src: src, sup: sup, local: local, queue: make(chan *sharedPacket, forwardQueue), done: make(chan struct{})}
	pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SSRC: 1}, Payload: []byte{0xf8, 0xff, 0xfe}}).Marshal()

	// The forwarder is stalled (not running): the queue fills, then drops.
	const sent = forwardQueue + 44
	start := time.Now()
	for range sent {
		src.distribute([]*forwarder{f}, pkt)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("distributing to a stalled supervisor took %v", d)
	}
	if got := counterValue(t, m.forwardDropped); got != sent-forwardQueue {
		t.Fatalf("dropped %v packets, want %d", got, sent-forwardQueue)
	}
	if len(f.queue) != forwardQueue {
		t.Fatalf("queue holds %d, want it full (%d)", len(f.queue), forwardQueue)
	}
	// It catches up: the queue drains and new packets are forwarded.
	done := make(chan struct{})
	go func() { f.run(); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(f.queue) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	src.distribute([]*forwarder{f}, pkt)
	for len(f.queue) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(f.done)
	<-done
	if len(f.queue) != 0 || counterValue(t, m.forwardDropped) != sent-forwardQueue {
		t.Fatalf("after catching up: %d queued, %v dropped", len(f.queue), counterValue(t, m.forwardDropped))
	}
}

func counterValue(t *testing.T, c interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
