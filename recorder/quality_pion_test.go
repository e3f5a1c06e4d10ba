package recorder

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestQualityFromPionSender records what a real pion sender sends over a real
// PeerConnection: its RTCP Sender Reports (pion's report interceptor) carry a clock an
// hour and 123 ms behind ours, 5% of its packets and two whole seconds are lost on the
// way. The manifest must give started_at on the sender's clock within 50 ms, the exact
// loss, and the 2 s gap.
func TestQualityFromPionSender(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 5 s in real time")
	}
	md := loadMedia(t)
	const skew = -time.Hour + 123*time.Millisecond
	senderNow := func() time.Time { return time.Now().Add(skew) }

	rec, err := Start(Config{Dir: t.TempDir(), RecordingID: "pion"})
	if err != nil {
		t.Fatal(err)
	}
	mic, err := rec.AddTrack(TrackInfo{ID: "mic", Codec: CodecOpus})
	if err != nil {
		t.Fatal(err)
	}
	senderStart := senderNow()

	send, recv := pionPair(t, senderNow)
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := send.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	// The receiving side feeds the recording as session/track.go does: RTP from the track,
	// Sender Reports from the receiver's RTCP.
	var wg sync.WaitGroup
	recv.OnTrack(func(tr *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		wg.Add(2)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1500)
			for {
				n, _, err := tr.Read(buf)
				if err != nil {
					return
				}
				mic.WriteRTP(buf[:n], time.Now())
			}
		}()
		go func() {
			defer wg.Done()
			for {
				pkts, _, err := r.ReadRTCP()
				if err != nil {
					return
				}
				for _, p := range pkts {
					if sr, ok := p.(*rtcp.SenderReport); ok {
						mic.WriteSenderReport(sr.NTPTime, sr.RTPTime, time.Now())
					}
				}
			}
		}()
	})
	connectPair(t, send, recv)

	// 5 s of 20 ms packets at real time: every 20th lost, and all of [2 s, 4 s).
	start := time.Now()
	sent, lost := 0, 0
	for i := 0; i < 250; i++ {
		at := start.Add(time.Duration(i) * 20 * time.Millisecond)
		time.Sleep(time.Until(at))
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(1000 + i), Timestamp: uint32(5000 + 960*i)}, Payload: md.opus[i%len(md.opus)]}
		sent++
		if i%20 == 10 || (i >= 100 && i < 200) {
			lost++
			continue
		}
		if err := track.WriteRTP(pkt); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for the last packet (a loaded machine delays it; its loss would not be counted).
	for deadline := time.Now().Add(5 * time.Second); mic.received.Load() < uint64(sent-lost) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	m, err := rec.Stop()
	if err != nil {
		t.Fatal(err)
	}
	_ = send.Close()
	_ = recv.Close()
	wg.Wait()

	a := m.Tracks[0]
	t.Logf("clock %s, started_at %s (sender %s), lost %d (%.2f%%), longest gap %d ms, jitter %.2f ms",
		m.Clock, m.StartedAt.Format(time.RFC3339Nano), senderStart.UTC().Format(time.RFC3339Nano), a.PacketsLost, a.LossPercent, a.LongestGapMS, a.JitterMS)
	if m.Clock != ClockSender {
		t.Fatalf("clock %q: no Sender Report reached the recording", m.Clock)
	}
	within(t, "started_at vs the sender's clock", m.StartedAt.Sub(senderStart), 0, 50*time.Millisecond)
	if a.PacketsLost != uint64(lost) || a.PacketsReceived != uint64(sent-lost) {
		t.Errorf("packets_lost %d received %d; the sender lost %d of %d", a.PacketsLost, a.PacketsReceived, lost, sent)
	}
	if want := 100 * float64(lost) / float64(sent); a.LossPercent < want-0.01 || a.LossPercent > want+0.01 {
		t.Errorf("loss_percent %.2f, want %.2f", a.LossPercent, want)
	}
	// Packets 100..199 and 210 are lost: the longest gap is 100 packets, 2000 ms.
	within(t, "longest_gap_ms", time.Duration(a.LongestGapMS)*time.Millisecond, 2*time.Second, 20*time.Millisecond)
}

// pionPair builds a sending and a receiving PeerConnection on loopback; the sender's RTCP
// Sender Reports use now as their clock.
func pionPair(t *testing.T, now func() time.Time) (send, recv *webrtc.PeerConnection) {
	t.Helper()
	mk := func(opts ...report.SenderOption) *webrtc.PeerConnection {
		me := &webrtc.MediaEngine{}
		if err := me.RegisterDefaultCodecs(); err != nil {
			t.Fatal(err)
		}
		ir := &interceptor.Registry{}
		if opts != nil {
			f, err := report.NewSenderInterceptor(opts...)
			if err != nil {
				t.Fatal(err)
			}
			ir.Add(f)
		}
		se := webrtc.SettingEngine{}
		se.SetIncludeLoopbackCandidate(true)
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
		se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
		pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pc.Close() })
		return pc
	}
	return mk(report.SenderNow(now), report.SenderInterval(500*time.Millisecond)), mk()
}

// connectPair negotiates send → recv and waits until both are connected (DTLS done: an
// RTP packet written before is dropped, and would not count as lost).
func connectPair(t *testing.T, send, recv *webrtc.PeerConnection) {
	t.Helper()
	connected := make(chan struct{}, 2)
	for _, pc := range []*webrtc.PeerConnection{send, recv} {
		pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
			if s == webrtc.PeerConnectionStateConnected {
				connected <- struct{}{}
			}
		})
	}
	offer, err := send.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(send)
	if err := send.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := recv.SetRemoteDescription(*send.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := recv.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered = webrtc.GatheringCompletePromise(recv)
	if err := recv.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := send.SetRemoteDescription(*recv.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case <-connected:
		case <-time.After(10 * time.Second):
			t.Fatal(errors.New("peer connections did not connect"))
		}
	}
}
